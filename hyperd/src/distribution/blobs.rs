//! `GET`/`HEAD /v2/<name>/blobs/<digest>`: a blob an image of that repository uses, whole or one
//! byte range, streamed from its file a chunk at a time. The file is found by the parsed digest
//! alone (`store.content()`), so no request names a path. A GET (not a HEAD) is a use of the
//! image the blob is seen through, as a manifest GET is.

use http::{HeaderValue, Response, StatusCode, header};

use super::body::{self, Body, full};
use super::error::Problem;
use super::handler::{Ask, Sight, digest};
use super::range::{Wanted, wanted};

pub(super) async fn get(ask: &Ask<'_>, name: &str, raw: &str) -> Result<Response<Body>, Problem> {
    let repository = ask.serving_repository(name)?;
    let digest = digest(raw, Problem::blob_unknown)?;
    let Some(sight) = ask.sight(&repository, &digest).await? else {
        return Err(Problem::blob_unknown(raw));
    };
    let content = ask.store.content();
    let size = content
        .blob_sizes(vec![digest.clone()])
        .await?
        .pop()
        .flatten()
        .ok_or_else(|| Problem::blob_unknown(raw))?;
    let range = ask.headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match wanted(range, size) {
        Wanted::Whole => (StatusCode::OK, 0, size),
        Wanted::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Wanted::Unsatisfiable => return Err(Problem::range_invalid(size)),
    };
    let body = match ask.head || len == 0 {
        true => full(Vec::new()),
        false => {
            // Collected since it was looked at: gone, not a failure of the store.
            let read = content
                .read_blob(&digest, start, len)
                .await
                .map_err(|e| match e {
                    store::Error::NotFound(_) => Problem::blob_unknown(raw),
                    e => e.into(),
                })?;
            // A use of the image it comes from, so that the GC policy's `--gc-min-age`
            // spares an image while a client pulls its blobs.
            if let Sight::Image(image) = &sight {
                ask.store.images().used(image);
            }
            body::file(read.file.into_std().await, start, read.len)
        }
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, len.into());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let shown = HeaderValue::from_str(&digest.to_string()).expect("a digest is a header value");
    headers.insert("Docker-Content-Digest", shown);
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {start}-{}/{size}", start + len - 1);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&range).expect("numbers are a header value"),
        );
    }
    Ok(response)
}
