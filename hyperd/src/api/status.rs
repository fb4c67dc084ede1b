//! The one place store errors become gRPC status codes.

use tonic::Status;

pub(crate) fn to_status(e: store::Error) -> Status {
    use store::Error as E;
    match e {
        E::NotFound(m) => Status::not_found(m),
        e @ (E::InvalidReference { .. } | E::InvalidPlatform(_) | E::InvalidArchive(_)) => {
            Status::invalid_argument(e.to_string())
        }
        // Bytes a client sent that are not what it promised: its mistake, logged where the
        // request is refused.
        e @ E::DigestMismatch { .. } => Status::data_loss(e.to_string()),
        e @ E::Corrupt(_) => {
            tracing::error!(error = %e, "damaged data");
            Status::data_loss(e.to_string())
        }
        E::InvalidArgument(m) => Status::invalid_argument(m),
        E::OutOfRange(m) => Status::out_of_range(m),
        E::ResourceExhausted(m) => Status::resource_exhausted(m),
        E::Aborted(m) => Status::aborted(m),
        E::Conflict(m) => Status::failed_precondition(m),
        e @ E::Locked(_) => Status::failed_precondition(e.to_string()),
        e @ (E::Database(_) | E::Io { .. }) => {
            tracing::error!(error = %e, "store failure");
            Status::internal(format!("hyperd store failure: {e}"))
        }
    }
}

/// A registry transfer's failure; the store's own errors map as above.
pub(crate) fn registry_status(e: crate::registry::Error) -> Status {
    use crate::registry::Error as E;
    match e {
        E::NotFound(m) => Status::not_found(m),
        E::InvalidArgument(m) => Status::invalid_argument(m),
        E::Unauthenticated(m) => Status::unauthenticated(m),
        E::Denied(m) => Status::permission_denied(m),
        E::NoPlatform(m) => Status::failed_precondition(m),
        E::BadRemote(m) => Status::data_loss(m),
        E::Unavailable { message, .. } => Status::unavailable(message),
        E::Store(e) => to_status(e),
    }
}
