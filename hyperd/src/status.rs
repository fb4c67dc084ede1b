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
