//! What can go wrong talking to a registry, and how a failure of the HTTP client is told
//! apart: the registry's answer decides, not the library's wording.

use store::Digest;

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The registry has no such repository, tag, manifest or blob.
    #[error("{0}")]
    NotFound(String),
    /// The request itself is malformed (a reference, a platform).
    #[error("{0}")]
    InvalidArgument(String),
    /// The registry refused the credential, or wanted one and got none.
    #[error("{0}")]
    Unauthenticated(String),
    /// The credential was accepted but the operation refused.
    #[error("{0}")]
    Denied(String),
    /// The index has no manifest for the platform asked for.
    #[error("{0}")]
    NoPlatform(String),
    /// The registry sent something other than what it promised.
    #[error("{0}")]
    BadRemote(String),
    /// The registry could not be reached or kept failing.
    #[error("{message}")]
    Unavailable { message: String, retry: Retry },
    #[error(transparent)]
    Store(#[from] store::Error),
}

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether the same request, made again, may succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// A transient failure (a reset, a stall, a 503): retried.
    Worthwhile,
    /// It would fail the same way (a redirect refused).
    Futile,
}

impl Error {
    pub(super) fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable {
                retry: Retry::Worthwhile,
                ..
            }
        )
    }

    pub(super) fn unavailable(message: String) -> Self {
        Error::Unavailable {
            message,
            retry: Retry::Worthwhile,
        }
    }

    /// A failure of an HTTP request to `host`, for `what` the request was about.
    pub(super) fn http(host: &str, what: &str, e: &reqwest::Error) -> Self {
        let cause = chain(e);
        if e.is_redirect() {
            return Error::Unavailable {
                message: format!("{what} at {host}: {cause}"),
                retry: Retry::Futile,
            };
        }
        if e.is_timeout() {
            return Error::unavailable(format!("{what} at {host}: the registry stalled ({cause})"));
        }
        if let Some(status) = e.status() {
            return Self::status(host, what, status.as_u16(), &cause);
        }
        Error::unavailable(format!("{what} at {host}: {cause}"))
    }

    /// A document from a registry that the store's checks refuse, in `context` ("manifest X
    /// from host"): the check's own words, not a store error's "invalid archive:" (no archive
    /// came).
    pub(super) fn bad_document(context: &str, e: store::Error) -> Self {
        match e {
            store::Error::InvalidArchive(why) => Error::BadRemote(format!("{context}: {why}")),
            e => Error::BadRemote(format!("{context}: {e}")),
        }
    }

    /// This error from a host hyperd sends no credential, `why` not: a refusal for want of one
    /// says so, rather than advising a login that would change nothing.
    pub(super) fn withheld(self, host: &str, why: Option<&str>) -> Self {
        match (self, why) {
            (Error::Unauthenticated(_), Some(why)) => Error::Unauthenticated(format!(
                "{host} asks for a credential, and gets none: {why}"
            )),
            (e, _) => e,
        }
    }

    /// A registry's answer with an error status.
    pub(super) fn status(host: &str, what: &str, code: u16, detail: &str) -> Self {
        let message = format!("{what} at {host}: {code} {detail}");
        match code {
            401 => Error::Unauthenticated(format!(
                "{what}: {host} refused the credential, or needs one (hyperctl login {host})"
            )),
            403 => Error::Denied(message),
            404 => Error::NotFound(message),
            408 | 429 | 500..=599 => Error::unavailable(message),
            _ => Error::BadRemote(message),
        }
    }
}

/// A blob write's failure as the registry's fault, where its body was not what its digest says.
pub(super) fn from_write(host: &str, digest: &Digest, e: store::Error) -> Error {
    match e {
        e @ store::Error::DigestMismatch { .. } => Error::BadRemote(format!(
            "blob {digest} from {host} is not what its digest says: {e}"
        )),
        e => e.into(),
    }
}

/// A failure reading a blob body from `host`.
pub(super) fn read_error(host: &str, digest: &Digest, e: &std::io::Error) -> Error {
    // The body's own failure, told apart as a request's is: a stall then says so.
    if let Some(e) = e.get_ref().and_then(|i| i.downcast_ref::<reqwest::Error>()) {
        return Error::http(host, &format!("blob {digest}"), e);
    }
    Error::unavailable(format!("blob {digest} from {host}: {}", chain(e)))
}

/// An error and its causes on one line: reqwest's own message leaves out why a request failed.
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
