//! The push side's blob uploads (`--registry-push`): `POST /v2/<name>/blobs/uploads/` starts
//! one, or stores a whole blob with `?digest=`, or mounts one from another repository with
//! `?mount=DIGEST&from=NAME`; `PATCH` appends, `PUT ?digest=` ends it, `GET` tells its offset,
//! `DELETE` drops it. The bytes go through the store's uploads: hashed as they come, published
//! only once they hash to the digest the client ends with.
//!
//! An upload belongs to the repository it was started under: its store id joins the random id
//! the client is given with a hash of the repository, so the same id under another name is
//! unknown.

use bytes::BytesMut;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use store::Digest;

use super::body::{Body, full};
use super::error::Problem;
use super::handler::{Ask, digest};
use super::pushed::Push;

/// `POST /v2/<name>/blobs/uploads/`.
pub(super) async fn start(
    ask: &Ask<'_>,
    push: &Push,
    name: &str,
    body: Incoming,
) -> Result<Response<Body>, Problem> {
    let repository = ask.repository(name)?;
    if let (Some(mount), Some(from)) = (&ask.query.mount, &ask.query.from)
        && let Some(mounted) = self::mount(ask, push, &repository, mount, from).await?
    {
        return Ok(created(name, &mounted));
    }
    let wanted = match &ask.query.digest {
        Some(raw) => Some(digest(raw, Problem::digest_invalid)?),
        None => None,
    };
    let id = crate::handoff::random_token();
    let key = store_id(&id, &repository);
    let content = ask.store.content();
    content.begin_upload(&key).await.map_err(refusal)?;
    let Some(wanted) = wanted else {
        return Ok(accepted(name, &id, 0, StatusCode::ACCEPTED));
    };
    let mut upload = content.upload(&key).map_err(refusal)?;
    if let Err(problem) = feed(body, &mut upload, push).await {
        drop(upload);
        let _ = content.cancel_upload(&key);
        return Err(problem);
    }
    finish(push, upload, &repository, &wanted).await?;
    Ok(created(name, &wanted))
}

/// A mount of `raw` from the repository `from`: the blob, held for this push, when `from` may
/// see it; `None` otherwise, and the client uploads it instead.
async fn mount(
    ask: &Ask<'_>,
    push: &Push,
    repository: &str,
    raw: &str,
    from: &str,
) -> Result<Option<Digest>, Problem> {
    let digest = digest(raw, Problem::digest_invalid)?;
    let Ok(from) = ask.repository(from) else {
        return Ok(None);
    };
    if !ask.may_see(&from, &digest).await? || !ask.store.content().hold_for_push(&digest).await? {
        return Ok(None);
    }
    push.note(repository, &digest);
    Ok(Some(digest))
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: appends the body, at the offset its `Content-Range`
/// names if it names one.
pub(super) async fn append(
    ask: &Ask<'_>,
    push: &Push,
    name: &str,
    id: &str,
    body: Incoming,
) -> Result<Response<Body>, Problem> {
    let repository = ask.repository(name)?;
    let key = store_id(id, &repository);
    let upload = open(ask, &key, id)?;
    if let Some(start) = range_start(ask.headers)?
        && start != upload.offset()
    {
        return Err(Problem::upload_out_of_order(upload.offset()));
    }
    let upload = resumable(ask, push, &key, upload, body).await?;
    Ok(accepted(name, id, upload.offset(), StatusCode::ACCEPTED))
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the last bytes, if any, then the check.
pub(super) async fn end(
    ask: &Ask<'_>,
    push: &Push,
    name: &str,
    id: &str,
    body: Incoming,
) -> Result<Response<Body>, Problem> {
    let repository = ask.repository(name)?;
    let raw = ask
        .query
        .digest
        .as_deref()
        .ok_or_else(|| Problem::digest_invalid("(none: PUT ends an upload with ?digest=)"))?;
    let wanted = digest(raw, Problem::digest_invalid)?;
    let key = store_id(id, &repository);
    let upload = open(ask, &key, id)?;
    let upload = resumable(ask, push, &key, upload, body).await?;
    finish(push, upload, &repository, &wanted).await?;
    Ok(created(name, &wanted))
}

/// The upload the client calls `id`, held for this request.
fn open(ask: &Ask<'_>, key: &str, id: &str) -> Result<store::Upload, Problem> {
    ask.store.content().upload(key).map_err(|e| unknown(id, e))
}

/// The upload with the request's body appended. The client's failure leaves the whole pieces
/// it sent, to resume from; the store's leaves the upload in a state nobody knows, so it goes.
async fn resumable(
    ask: &Ask<'_>,
    push: &Push,
    key: &str,
    mut upload: store::Upload,
    body: Incoming,
) -> Result<store::Upload, Problem> {
    match feed(body, &mut upload, push).await {
        Ok(()) => Ok(upload),
        Err(problem) => {
            if problem.status.is_server_error() {
                drop(upload);
                let _ = ask.store.content().cancel_upload(key);
            }
            Err(problem)
        }
    }
}

/// `GET /v2/<name>/blobs/uploads/<id>`: how many bytes the upload has.
pub(super) fn status(ask: &Ask<'_>, name: &str, id: &str) -> Result<Response<Body>, Problem> {
    let repository = ask.repository(name)?;
    let upload = open(ask, &store_id(id, &repository), id)?;
    Ok(accepted(name, id, upload.offset(), StatusCode::NO_CONTENT))
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`.
pub(super) fn cancel(ask: &Ask<'_>, name: &str, id: &str) -> Result<Response<Body>, Problem> {
    let repository = ask.repository(name)?;
    ask.store
        .content()
        .cancel_upload(&store_id(id, &repository))
        .map_err(|e| unknown(id, e))?;
    let mut response = Response::new(full(Vec::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

/// What a push hands the store at a time: a request reading a push holds about this much, and
/// a push slot only while the store writes it, so a client that trickles bytes holds a slot no
/// longer than any other.
const PIECE: usize = 256 << 10;

/// Feeds a request's body to `upload` a piece at a time. A client that sends nothing for the
/// stall timeout is cut off; what reached the upload stays (only whole pieces are written).
async fn feed(mut body: Incoming, upload: &mut store::Upload, push: &Push) -> Result<(), Problem> {
    let mut piece = BytesMut::new();
    loop {
        let frame = tokio::time::timeout(push.stall, body.frame())
            .await
            .map_err(|_| Problem::upload_invalid(format!("no bytes for {:?}", push.stall)))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| Problem::upload_invalid(format!("reading the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            piece.extend_from_slice(&data);
            if piece.len() >= PIECE {
                let _turn = push.turn().await;
                upload.write(piece.split().freeze()).await?;
            }
        }
    }
    if !piece.is_empty() {
        let _turn = push.turn().await;
        upload.write(piece.freeze()).await?;
    }
    Ok(())
}

async fn finish(
    push: &Push,
    upload: store::Upload,
    repository: &str,
    wanted: &Digest,
) -> Result<(), Problem> {
    match upload.finish(wanted).await {
        Ok(_) => {
            push.note(repository, wanted);
            Ok(())
        }
        Err(e @ store::Error::DigestMismatch { .. }) => {
            Err(Problem::digest_mismatch(e.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The store's name for the client's upload `id` under `repository`.
fn store_id(id: &str, repository: &str) -> String {
    let of_repository = Digest::of(repository.as_bytes()).hex();
    format!("{id}-{}", &of_repository[..16])
}

/// An upload the store does not have under that id (or has busy with another request).
fn unknown(id: &str, e: store::Error) -> Problem {
    match e {
        store::Error::NotFound(_) => Problem::upload_unknown(id),
        store::Error::Conflict(m) => Problem::upload_invalid(m),
        e => e.into(),
    }
}

/// What refuses a new upload: too many open is the client's to retry later.
fn refusal(e: store::Error) -> Problem {
    match e {
        store::Error::ResourceExhausted(_) => Problem::too_many_requests(),
        e => e.into(),
    }
}

/// Where a `PATCH`'s `Content-Range: START-END` starts, if it has one.
fn range_start(headers: &http::HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || Problem::upload_invalid("Content-Range is not START-END".to_owned());
    let text = value.to_str().map_err(|_| bad())?;
    let text = text.strip_prefix("bytes ").unwrap_or(text);
    let (start, _) = text.split_once('-').ok_or_else(bad)?;
    start.trim().parse().map(Some).map_err(|_| bad())
}

/// 202 (or 204 for a status) with where to send the next bytes and what is there already.
fn accepted(name: &str, id: &str, offset: u64, status: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Vec::new()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let location = format!("/v2/{name}/blobs/uploads/{id}");
    headers.insert(header::LOCATION, value(&location));
    // distribution's convention: the last byte held, `0-0` for none.
    headers.insert(
        header::RANGE,
        value(&format!("0-{}", offset.saturating_sub(1))),
    );
    headers.insert("Docker-Upload-UUID", value(id));
    headers.insert(header::CONTENT_LENGTH, 0.into());
    response
}

/// 201: the blob is stored, and where to read it.
fn created(name: &str, digest: &Digest) -> Response<Body> {
    let mut response = Response::new(full(Vec::new()));
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        value(&format!("/v2/{name}/blobs/{digest}")),
    );
    headers.insert("Docker-Content-Digest", value(&digest.to_string()));
    headers.insert(header::CONTENT_LENGTH, 0.into());
    response
}

/// A header value made of a checked name, a digest, an id of hex digits or numbers.
fn value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("names, digests and numbers are header values")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_id_is_bound_to_its_repository() {
        assert_ne!(
            store_id("ab", "docker.io/library/a"),
            store_id("ab", "docker.io/library/b")
        );
        assert!(store_id("ab", "x").starts_with("ab-"));
    }

    #[test]
    fn content_range_starts_are_read() {
        let with = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(header::CONTENT_RANGE, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(range_start(&http::HeaderMap::new()).unwrap(), None);
        assert_eq!(range_start(&with("0-99")).unwrap(), Some(0));
        assert_eq!(range_start(&with("bytes 100-199")).unwrap(), Some(100));
        assert!(range_start(&with("x-1")).is_err());
        assert!(range_start(&with("100")).is_err());
    }
}
