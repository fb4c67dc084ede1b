//! [`Content`]: blobs by digest (sizes, ranged reads) and writes in pieces. A written blob is
//! kept from collection by a lease ([`super::Leases`]) until an image uses it.

use tokio::io::AsyncSeekExt;

use super::Store;
use super::write::{Began, ContentWrite, WriteOutcome, WriteStart, Written};
use crate::content::{Owner, WriteStatus, rules};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

/// The store's blobs by digest, from [`Store::content`].
#[derive(Clone, Copy)]
pub struct Content<'a>(pub(super) &'a Store);

/// A blob opened for reading.
#[derive(Debug)]
pub struct BlobRead {
    /// Positioned at the offset asked for; stays readable if collection unlinks the blob.
    pub file: tokio::fs::File,
    /// How many bytes to read from there.
    pub len: u64,
}

pub(super) fn now() -> i64 {
    now_ms().div_euclid(1000)
}

/// Writes are timed in milliseconds, so that a short write expiry is not a second early.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Content<'_> {
    /// The size of each blob the store holds, `None` for the others, in the order asked.
    pub async fn blob_sizes(self, digests: Vec<Digest>) -> Result<Vec<Option<u64>>> {
        // Up to one stat per digest, 10,000 for one Info: off the async threads.
        let blobs = self.0.inner.blobs.clone();
        tokio::task::spawn_blocking(move || digests.iter().map(|d| blobs.size(d)).collect())
            .await
            .expect("blob size thread panicked")
    }

    /// A stored JSON document (manifest, index, config) read whole, at most
    /// [`crate::limits::MAX_JSON`] bytes, and checked against its digest: [`Error::Corrupt`]
    /// when it is over that, missing, or no longer what its digest names.
    pub async fn read_json(self, digest: &Digest) -> Result<Vec<u8>> {
        self.0.inner.blobs.read_json(digest).await
    }

    /// The blob `digest`, positioned at `offset`, and how many bytes from there to read
    /// (`length` 0: to the end).
    pub async fn read_blob(self, digest: &Digest, offset: u64, length: u64) -> Result<BlobRead> {
        let path = self.0.inner.blobs.path(digest);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::NotFound(format!("blob {digest} is not stored"))
                }
                _ => Error::Io {
                    context: format!("opening {}", path.display()),
                    source: e,
                },
            })?;
        let size = file
            .metadata()
            .await
            .context(|| format!("looking at {}", path.display()))?
            .len();
        let len = rules::read_len(digest, size, offset, length)?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .context(|| format!("seeking in {}", path.display()))?;
        Ok(BlobRead { file, len })
    }

    /// Starts, restarts or resumes one of hyperd's own writes (a pull's) as its first message
    /// asks; see [`Content::begin_write_as`].
    pub async fn begin_write(self, start: WriteStart) -> Result<Began> {
        self.begin(None, start).await
    }

    /// Starts, restarts or resumes a write of the client `owner` (a uid) as its first message
    /// asks. Refs are per owner: another's write under the same ref is absent to this one. The
    /// lease named must be one `owner` made. A blob the store holds already is answered at once
    /// (and added to the lease); a write left open under the ref is dropped, but never one
    /// another stream is writing. At most [`crate::limits::MAX_OPEN_WRITES_PER_OWNER`] writes
    /// of one owner are open at once.
    pub async fn begin_write_as(self, owner: u32, start: WriteStart) -> Result<Began> {
        self.begin(Some(owner), start).await
    }

    async fn begin(self, owner: Owner, start: WriteStart) -> Result<Began> {
        let (store, inner) = (self.0, &self.0.inner);
        rules::check_ref(&start.reference)?;
        rules::check_total(start.total)?;
        if let Some(id) = &start.lease {
            store.leases().check(id, owner)?;
        }
        {
            let _guard = inner.commit.lock().await;
            if let Some(size) = inner.blobs.size(&start.expected)? {
                if size != start.total {
                    return Err(Error::InvalidArgument(format!(
                        "{} is stored with {size} bytes, not {}",
                        start.expected, start.total
                    )));
                }
                store
                    .leases()
                    .hold(start.lease.as_deref(), &start.expected)?;
                inner.writes.drop_idle(owner, &start.reference);
                return Ok(Began::Done(Written {
                    digest: start.expected,
                    offset: size,
                    outcome: WriteOutcome::AlreadyStored,
                }));
            }
        }
        let checkout = inner.writes.checkout(
            owner,
            &start.reference,
            &start.expected,
            start.total,
            start.offset,
            now_ms(),
        )?;
        // The janitor may be asleep until later than this write could expire.
        inner.expiries.wake();
        let mut write = ContentWrite {
            store: store.clone(),
            checkout: Some(checkout),
            lease: start.lease,
            expected: start.expected,
        };
        if write.checkout().is_complete() {
            return write.commit().await.map(Began::Done);
        }
        Ok(Began::Open(Box::new(write)))
    }

    /// Where the client `owner`'s write under `reference` stands; another's is absent.
    pub fn write_status_as(self, owner: u32, reference: &str) -> Result<WriteStatus> {
        self.0
            .inner
            .writes
            .status(Some(owner), reference)
            .ok_or_else(|| Error::NotFound(format!("no write under ref {reference:?}")))
    }

    /// Drops hyperd's own write under `reference` (a pull's); a stream writing it ends with
    /// ABORTED.
    pub fn abort_write(self, reference: &str) -> Result<()> {
        self.abort(None, reference)
    }

    /// Drops the client `owner`'s write under `reference`; another's is absent.
    pub fn abort_write_as(self, owner: u32, reference: &str) -> Result<()> {
        self.abort(Some(owner), reference)
    }

    fn abort(self, owner: Owner, reference: &str) -> Result<()> {
        if !self.0.inner.writes.abort(owner, reference) {
            return Err(Error::NotFound(format!("no write under ref {reference:?}")));
        }
        tracing::info!(reference, "write aborted");
        Ok(())
    }
}
