use std::io;

use crate::digest::Digest;

/// Everything the store can refuse or fail at, named for what a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No image, tag or blob by that name.
    #[error("{0}")]
    NotFound(String),
    /// A name that is not a valid image reference.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text as given.
        reference: String,
        /// Why it was refused.
        reason: String,
    },
    /// A platform that is not `os/architecture[/variant]`.
    #[error("invalid platform {0:?}: want os/architecture[/variant]")]
    InvalidPlatform(String),
    /// The archive is malformed, hostile, or does not hold what it claims.
    #[error("invalid archive: {0}")]
    InvalidArchive(String),
    /// Bytes whose sha256 is not the one their name or descriptor promised.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Which entry or blob.
        what: String,
        /// The digest that was promised.
        expected: String,
        /// The digest of the bytes that came.
        actual: String,
    },
    /// The store's own data is damaged: a record a tag points at is missing, or a stored blob
    /// no longer parses, no longer matches its digest, or disagrees with what references it.
    #[error("damaged store: {0}")]
    Corrupt(String),
    /// The request conflicts with the store's state (e.g. removing an image that other tags still use).
    #[error("{0}")]
    Conflict(String),
    /// A load left out the body of this blob as one the store holds, but the store does not
    /// hold it (removed since the client asked): the client may send the whole archive instead.
    #[error(
        "blob {0} was left out of the archive as stored, but the store does not hold it \
         (removed since?); send the whole archive"
    )]
    LeftOutBlobGone(Digest),
    /// A request the content API refuses as malformed (a digest, a ref, bytes past a write's
    /// total, a media type), named in the message.
    #[error("{0}")]
    InvalidArgument(String),
    /// An offset outside a blob, or not the one a write is at.
    #[error("{0}")]
    OutOfRange(String),
    /// A bound on open writes, leases or a lease's blobs was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The caller (an owner, a uid to hyperd) reached its own quota of leases or open writes;
    /// others are unaffected.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The write was aborted or expired while a client was writing it.
    #[error("{0}")]
    Aborted(String),
    /// A handed-over file a save could not write (a seal, a full or read-only file system, an
    /// I/O error on the client's side): the client's file is at fault, not the store.
    #[error("cannot write the handed-over file: {0}")]
    FileUnwritable(String),
    /// The caller stopped the job (it hung up, or hyperd is stopping) before it was done.
    #[error("stopped before it was done")]
    Cancelled,
    /// Another process holds the store root.
    #[error("store root {0} is in use by another hyperd")]
    Locked(String),
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Database(String),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArchive(msg.into())
    }
}

/// Attaches what was being done to an I/O error.
/// Whether a read failed because its input ended before the reader was done: the tar crate says
/// so in its own words ("unexpected EOF during skip", "failed to read entire block" of a header
/// cut short) as often as by the error's kind.
pub(crate) fn ended_early(e: &io::Error) -> bool {
    let text = e.to_string();
    e.kind() == io::ErrorKind::UnexpectedEof
        || text.contains("unexpected EOF")
        || text.contains("failed to read entire block")
}

pub(crate) trait IoContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

macro_rules! db_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Database(e.to_string())
            }
        }
    )*};
}
db_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
