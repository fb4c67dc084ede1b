//! The reason a failed call carries, both ways: a `google.rpc.ErrorInfo` in the status details
//! whose `reason` is a [`ErrorReason`] value's name and whose `domain` is [`ERROR_DOMAIN`]
//! (`hyperd/v1/errors.proto`). hyperd attaches it; clients decide on it, never on the message.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::v1::ErrorReason;

/// The `domain` of every reason hyperd sends: the API package that defines the reasons.
pub const ERROR_DOMAIN: &str = "hyperd.v1";

/// A status with `code` and `message`, and `reason` in its details.
pub fn status_with_reason(code: Code, message: impl Into<String>, reason: ErrorReason) -> Status {
    status_with_metadata(code, message, reason, HashMap::new())
}

/// [`status_with_reason`] whose ErrorInfo also carries `metadata`, what a client needs to act on
/// the reason (the errors.proto value says which keys).
pub fn status_with_metadata(
    code: Code,
    message: impl Into<String>,
    reason: ErrorReason,
    metadata: HashMap<String, String>,
) -> Status {
    let info = ErrorDetails::with_error_info(reason.as_str_name(), ERROR_DOMAIN, metadata);
    Status::with_error_details(code, message, info)
}

/// The reason hyperd gave for `status`; `None` for a status without one (raised by the transport,
/// or from another domain) or with a reason this client does not know.
pub fn reason_of(status: &Status) -> Option<ErrorReason> {
    let info = status.get_details_error_info()?;
    if info.domain != ERROR_DOMAIN {
        return None;
    }
    ErrorReason::from_str_name(&info.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_travels_with_its_code_and_message() {
        let s = status_with_reason(Code::Unavailable, "stopping", ErrorReason::ShuttingDown);
        assert_eq!((s.code(), s.message()), (Code::Unavailable, "stopping"));
        let info = s.get_details_error_info().unwrap();
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("SHUTTING_DOWN", "hyperd.v1")
        );
        // Through the wire encoding, as a client receives it.
        let mut headers = tonic::metadata::MetadataMap::new().into_headers();
        s.add_header(&mut headers).unwrap();
        let received = Status::from_header_map(&headers).unwrap();
        assert_eq!(reason_of(&received), Some(ErrorReason::ShuttingDown));
    }

    #[test]
    fn statuses_without_hyperd_reason_have_none() {
        assert_eq!(reason_of(&Status::unavailable("transport")), None);
        let other = ErrorDetails::with_error_info("SHUTTING_DOWN", "example.com", HashMap::new());
        let s = Status::with_error_details(Code::Unavailable, "x", other);
        assert_eq!(reason_of(&s), None);
    }
}
