//! The one place hyperd's failures become gRPC statuses: a code, the English message, and the
//! reason (`hyperd.v1.ErrorReason`, as `google.rpc.ErrorInfo` in the details) that clients
//! decide on. One constructor per reason; store and registry errors map by variant.

use std::collections::HashMap;

use hyperd_proto::v1::ErrorReason as R;
use hyperd_proto::{status_with_metadata, status_with_reason};
use tonic::{Code, Status};

/// hyperd is stopping: every call in flight ends with this.
pub(crate) fn shutting_down() -> Status {
    status_with_reason(
        Code::Unavailable,
        "hyperd is shutting down",
        R::ShuttingDown,
    )
}

/// A content Write held a slot and the client sent nothing for `idle_secs`.
pub(crate) fn write_idle(idle_secs: u64) -> Status {
    let message = format!(
        "the client sent nothing for {idle_secs}s while holding a write slot; the write stays \
         open to resume"
    );
    status_with_reason(Code::DeadlineExceeded, message, R::SlotIdle)
}

/// A Load held a slot and the client sent nothing for the idle timeout: the store's error
/// (about the archive stream ending) keeps its code and message, and gets the reason.
pub(crate) fn load_idle(e: store::Error) -> Status {
    let s = to_status(e);
    status_with_reason(s.code(), s.message(), R::SlotIdle)
}

/// The caller's uid reached its own quota of something all callers share.
pub(crate) fn quota_reached(message: impl Into<String>) -> Status {
    status_with_reason(Code::ResourceExhausted, message, R::QuotaReached)
}

/// An event subscriber read so slowly that `lost` events meant for it were dropped.
pub(crate) fn events_lost(lost: u64) -> Status {
    let message = format!(
        "{lost} events were dropped because the subscriber read too slowly; subscribe again \
         with --since the last event's time"
    );
    status_with_reason(Code::ResourceExhausted, message, R::EventsLost)
}

/// A malformed request.
pub(crate) fn invalid_request(message: impl Into<String>) -> Status {
    status_with_reason(Code::InvalidArgument, message, R::InvalidRequest)
}

/// hyperd failed on its own.
pub(crate) fn internal(message: impl Into<String>) -> Status {
    status_with_reason(Code::Internal, message, R::InternalFailure)
}

/// A content write aborted or expired while its stream was open.
pub(crate) fn write_aborted() -> Status {
    status_with_reason(
        Code::Aborted,
        "the write was aborted or expired",
        R::WriteAborted,
    )
}

/// A handed-over file a save could not write: the client's file is at fault (a seal, its file
/// system full or read-only), and the message names the errno.
fn file_unwritable(message: String) -> Status {
    status_with_reason(Code::FailedPrecondition, message, R::HandedFileUnwritable)
}

/// A file hand-over asked for by a caller whose credentials hyperd could not read.
pub(crate) fn no_peer_credentials() -> Status {
    status_with_reason(
        Code::PermissionDenied,
        "a handed-over file needs the caller's credentials",
        R::NoPeerCredentials,
    )
}

/// An fd token never given, already used, or expired.
pub(crate) fn fd_token_unknown() -> Status {
    status_with_reason(
        Code::FailedPrecondition,
        "unknown fd token: a token serves one call, within 30 s of handing the file over",
        R::FdTokenUnknown,
    )
}

/// An fd token given to another uid.
pub(crate) fn fd_token_other_user() -> Status {
    status_with_reason(
        Code::PermissionDenied,
        "that fd token was given to another user",
        R::FdTokenOtherUser,
    )
}

/// A List without `page_size` whose one answer would be larger than default clients receive;
/// `next_page_token` (the first page's) lets the client list the rest page by page.
pub(crate) fn listing_too_large(next_page_token: String) -> Status {
    let message = format!(
        "the listing is over {} MiB, too large for one answer: list it in pages (page_size, and \
         page_token from next_page_token in this error's ErrorInfo metadata) or call ListStream",
        super::listing::WHOLE_ANSWER_MAX >> 20
    );
    let metadata = HashMap::from([("next_page_token".to_owned(), next_page_token)]);
    status_with_metadata(
        Code::FailedPrecondition,
        message,
        R::ListingTooLarge,
        metadata,
    )
}

pub(crate) fn to_status(e: store::Error) -> Status {
    use store::Error as E;
    let message = e.to_string();
    let (code, reason) = match e {
        E::NotFound(_) => (Code::NotFound, R::NotFound),
        E::InvalidReference { .. } => (Code::InvalidArgument, R::InvalidReference),
        E::InvalidPlatform(_) => (Code::InvalidArgument, R::InvalidPlatform),
        E::InvalidArchive(_) => (Code::InvalidArgument, R::InvalidArchive),
        // Bytes a client sent that are not what it promised: its mistake, logged where the
        // request is refused.
        E::DigestMismatch { .. } => (Code::DataLoss, R::DigestMismatch),
        E::Corrupt(_) => {
            tracing::error!(error = %message, "damaged data");
            (Code::DataLoss, R::StoreDamaged)
        }
        E::InvalidArgument(_) => (Code::InvalidArgument, R::InvalidRequest),
        E::OutOfRange(_) => (Code::OutOfRange, R::OutOfRange),
        E::ResourceExhausted(_) => (Code::ResourceExhausted, R::LimitReached),
        E::QuotaExceeded(_) => (Code::ResourceExhausted, R::QuotaReached),
        E::Aborted(_) => (Code::Aborted, R::WriteAborted),
        E::Conflict(_) => (Code::FailedPrecondition, R::Conflict),
        E::LeftOutBlobGone(_) => (Code::FailedPrecondition, R::LeftOutBlobGone),
        E::Locked(_) => (Code::FailedPrecondition, R::StoreLocked),
        E::FileUnwritable(_) => return file_unwritable(message),
        // A job is stopped because its client hung up (who hears nothing) or hyperd is stopping.
        E::Cancelled => return shutting_down(),
        E::Database(_) | E::Io { .. } => {
            tracing::error!(error = %message, "store failure");
            let message = format!("hyperd store failure: {message}");
            return status_with_reason(Code::Internal, message, R::StoreFailure);
        }
    };
    status_with_reason(code, message, reason)
}

/// A registry transfer's failure; the store's own errors map as above.
pub(crate) fn registry_status(e: crate::registry::Error) -> Status {
    use crate::registry::Error as E;
    // A registry's words are in it; they may carry terminal escapes.
    let message = hyperd_proto::escape_controls(&e.to_string()).into_owned();
    let (code, reason) = match e {
        E::NotFound(_) => (Code::NotFound, R::RegistryNotFound),
        E::InvalidArgument(_) => (Code::InvalidArgument, R::InvalidRequest),
        E::Unauthenticated(_) => (Code::Unauthenticated, R::RegistryUnauthenticated),
        E::Denied(_) => (Code::PermissionDenied, R::RegistryDenied),
        E::NoPlatform(_) => (Code::FailedPrecondition, R::NoMatchingPlatform),
        E::BadRemote(_) => (Code::DataLoss, R::RegistryBadAnswer),
        E::Unavailable { .. } => (Code::Unavailable, R::RegistryUnavailable),
        E::Store(e) => return to_status(e),
    };
    status_with_reason(code, message, reason)
}

#[cfg(test)]
mod tests {
    use hyperd_proto::reason_of;

    use super::*;

    #[test]
    fn store_errors_keep_their_code_and_message_and_gain_a_reason() {
        let gone =
            store::Error::LeftOutBlobGone(format!("sha256:{}", "ab".repeat(32)).parse().unwrap());
        let text = gone.to_string();
        let s = to_status(gone);
        assert_eq!(
            (s.code(), s.message()),
            (Code::FailedPrecondition, text.as_str())
        );
        assert_eq!(reason_of(&s), Some(R::LeftOutBlobGone));
        let s = to_status(store::Error::Database("disk on fire".into()));
        assert_eq!(s.code(), Code::Internal);
        assert_eq!(
            s.message(),
            "hyperd store failure: metadata database: disk on fire"
        );
        assert_eq!(reason_of(&s), Some(R::StoreFailure));
    }

    #[test]
    fn a_registry_error_wrapping_a_store_error_maps_as_the_store_error() {
        let e = crate::registry::Error::Store(store::Error::NotFound("no such image: x".into()));
        assert_eq!(reason_of(&registry_status(e)), Some(R::NotFound));
        let e = crate::registry::Error::Unavailable {
            message: "registry down".into(),
            retry: crate::registry::Retry::Worthwhile,
        };
        let s = registry_status(e);
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unavailable, "registry down")
        );
        assert_eq!(reason_of(&s), Some(R::RegistryUnavailable));
    }
}
