//! The distribution spec's error answers: a status and `{"errors":[{"code","message"}]}`. Every
//! refusal the endpoint makes is built here, one constructor per code.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::body::{Body, full};

/// A refusal: the status, the spec's code and a message for people.
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// For a 416: the blob's size, which `Content-Range: bytes */SIZE` tells.
    pub(super) size: Option<u64>,
    /// For a 405: the methods that are served, which `Allow` tells.
    pub(super) allow: Option<&'static str>,
}

fn problem(status: StatusCode, code: &'static str, message: String) -> Problem {
    Problem {
        status,
        code,
        message,
        size: None,
        allow: None,
    }
}

impl Problem {
    pub(super) fn name_unknown(name: &str) -> Self {
        problem(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {name} is not known"),
        )
    }

    pub(super) fn name_invalid(message: String) -> Self {
        problem(StatusCode::BAD_REQUEST, "NAME_INVALID", message)
    }

    pub(super) fn manifest_unknown(reference: &str) -> Self {
        problem(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest {reference} is not known"),
        )
    }

    /// The manifest is stored, but not as a type the client accepts.
    pub(super) fn not_acceptable(reference: &str, media_type: &str) -> Self {
        problem(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest {reference} is a {media_type}, which the request does not accept"),
        )
    }

    pub(super) fn blob_unknown(digest: &str) -> Self {
        problem(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            format!("blob {digest} is not known to this repository"),
        )
    }

    pub(super) fn digest_invalid(digest: &str) -> Self {
        problem(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("invalid digest {digest:?}"),
        )
    }

    pub(super) fn range_invalid(size: u64) -> Self {
        Problem {
            size: Some(size),
            ..problem(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_INVALID",
                format!("the requested range is not within the blob's {size} bytes"),
            )
        }
    }

    pub(super) fn pagination_invalid(n: &str) -> Self {
        problem(
            StatusCode::BAD_REQUEST,
            "PAGINATION_NUMBER_INVALID",
            format!("invalid number of results {n:?}"),
        )
    }

    /// No credentials, or not those of a user of the htpasswd file.
    pub(super) fn unauthorized() -> Self {
        problem(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required".to_owned(),
        )
    }

    /// Too many password checks are waiting, or uploads open: try again shortly.
    pub(super) fn too_many_requests() -> Self {
        problem(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            "too many requests at once: try again shortly".to_owned(),
        )
    }

    /// A user of the htpasswd file without push rights asked to push.
    pub(super) fn denied(user: &str) -> Self {
        problem(
            StatusCode::FORBIDDEN,
            "DENIED",
            format!("user {user:?} may not push to this registry"),
        )
    }

    /// A write method while pushes are not enabled (`--registry-push`).
    pub(super) fn read_only(method: &http::Method) -> Self {
        Problem {
            allow: Some("GET, HEAD"),
            ..problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "UNSUPPORTED",
                format!("{method} is not supported: this registry is read-only"),
            )
        }
    }

    /// A method the path has no endpoint for.
    pub(super) fn method_not_allowed(method: &http::Method) -> Self {
        problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            format!("{method} is not supported here"),
        )
    }

    pub(super) fn upload_unknown(id: &str) -> Self {
        problem(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            format!("upload {id:?} is not known"),
        )
    }

    /// An upload's bytes did not arrive as the request said (a `Content-Range` out of order, a
    /// body cut short, two requests at once).
    pub(super) fn upload_invalid(message: String) -> Self {
        problem(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", message)
    }

    /// A `PATCH` whose `Content-Range` does not start where the upload is.
    pub(super) fn upload_out_of_order(offset: u64) -> Self {
        problem(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            format!("the upload has {offset} bytes: a chunk must start there"),
        )
    }

    pub(super) fn tag_invalid(tag: &str) -> Self {
        problem(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("invalid tag {tag:?}"),
        )
    }

    /// A pushed manifest names a blob the store does not hold.
    pub(super) fn manifest_blob_unknown(message: String) -> Self {
        problem(StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN", message)
    }

    pub(super) fn manifest_invalid(message: String) -> Self {
        problem(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", message)
    }

    /// A manifest past the size the store takes for a JSON document.
    pub(super) fn manifest_too_large(limit: u64) -> Self {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            format!("a manifest is at most {limit} bytes"),
        )
    }

    /// The bytes that came do not hash to the digest they were sent as.
    pub(super) fn digest_mismatch(message: String) -> Self {
        problem(StatusCode::BAD_REQUEST, "DIGEST_INVALID", message)
    }

    /// A path that is no endpoint of the spec.
    pub(super) fn no_route(path: &str) -> Self {
        problem(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            format!("no endpoint at {path:?}"),
        )
    }

    /// Pull-through could not get `wanted` from its registry.
    pub(super) fn upstream(wanted: &str, e: &crate::registry::Error) -> Self {
        problem(
            StatusCode::BAD_GATEWAY,
            "UNKNOWN",
            format!("pulling {wanted} through: {e}"),
        )
    }

    /// The store failed (damage, I/O): logged, and shown to the client without its details.
    pub(super) fn store(e: &store::Error) -> Self {
        tracing::warn!(error = %e, "registry endpoint: the store failed");
        problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "the store could not answer".to_owned(),
        )
    }

    /// The spec's JSON body under the status; HEAD answers carry the headers only.
    pub(super) fn into_response(self, head: bool) -> Response<Body> {
        let body = serde_json::json!({
            "errors": [{"code": self.code, "message": self.message}]
        });
        let bytes = Bytes::from(serde_json::to_vec(&body).expect("error body serialises"));
        let len = bytes.len();
        let mut response = Response::new(if head {
            full(Bytes::new())
        } else {
            full(bytes)
        });
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CONTENT_LENGTH, len.into());
        if let Some(size) = self.size {
            let range = HeaderValue::from_str(&format!("bytes */{size}")).expect("a number");
            headers.insert(header::CONTENT_RANGE, range);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = HeaderValue::from_static("Basic realm=\"hyperd\"");
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

impl From<store::Error> for Problem {
    fn from(e: store::Error) -> Self {
        Problem::store(&e)
    }
}
