//! `PUT /v2/<name>/manifests/<tag|digest>` (`--registry-push`): the document is written through
//! the content API's verified writer, then made an image by the store's `create_image`, which
//! walks and checks its whole graph as a pull's does, so a push leaves what `hyperctl pull` of
//! it would have stored.
//!
//! - By tag: the image, named `<repository>:<tag>` (a tag moves as on load).
//! - By digest, with a `subject`: a referrer of that subject.
//! - By digest, without: kept as pushed content for an index or tag pushed next (skopeo and
//!   docker push an index's children by digest first), held by the shared lease of the hour
//!   and seen under this repository meanwhile. An image pushed by digest alone is not kept
//!   past that, as distribution collects untagged manifests.

use http::{HeaderValue, Response, StatusCode, header};
use hyper::body::Incoming;
use store::limits::MAX_JSON;
use store::{Began, Digest, Document, ImageName, WriteStart};

use super::body::{self, Body, full};
use super::error::Problem;
use super::handler::{Ask, digest};
use super::manifests;
use super::pushed::Push;

pub(super) async fn put(
    ask: &Ask<'_>,
    push: &Push,
    user: Option<&str>,
    name: &str,
    reference: &str,
    body: Incoming,
) -> Result<Response<Body>, Problem> {
    let repository = ask.repository(name)?;
    let tag = match reference.contains(':') {
        true => None,
        false => Some(tagged(&repository, reference)?),
    };
    let bytes = {
        let _turn = push.turn().await;
        let too_large = Problem::manifest_too_large(MAX_JSON);
        body::collect(body, MAX_JSON, push.stall, too_large).await?
    };
    let pushed = Digest::of(&bytes);
    if tag.is_none() && digest(reference, Problem::digest_invalid)? != pushed {
        return Err(Problem::digest_mismatch(format!(
            "the manifest's bytes are {pushed}, not {reference}"
        )));
    }
    let (document, media_type) = parse(ask.headers, &pushed, &bytes)?;
    let subject = document.subject().map_err(invalid)?;
    if tag.is_some() && subject.is_some() {
        return Err(Problem::manifest_invalid(
            "a manifest with a subject is kept as a referrer of it, under no tag: push it by \
             digest"
                .to_owned(),
        ));
    }
    check_visible(ask, &repository, &document, subject.as_ref()).await?;
    write(ask, &pushed, bytes).await?;
    let images = ask.store.images();
    let media_type = Some(media_type);
    match (tag, &subject) {
        (Some(name), _) => {
            let names = [name];
            let created = images.create_image(&pushed, media_type.as_deref(), &names);
            crate::events::created(None, user, &created.await.map_err(invalid)?);
        }
        (None, Some(_)) => {
            let created = images.create_image(&pushed, media_type.as_deref(), &[]);
            crate::events::created(None, user, &created.await.map_err(invalid)?);
        }
        (None, None) => push.note(&repository, &pushed),
    }
    Ok(created(name, &pushed, subject.as_ref()))
}

/// The pushed bytes as the manifest or index they must be: of the request's `Content-Type` when
/// that names one, else of their own `mediaType` or, failing that, their fields.
fn parse(
    headers: &http::HeaderMap,
    digest: &Digest,
    bytes: &[u8],
) -> Result<(Document, String), Problem> {
    let media_type = content_type(headers)
        .filter(|t| store::is_manifest(t) || store::is_index(t))
        .or_else(|| manifests::media_type(digest, bytes))
        .ok_or_else(|| {
            Problem::manifest_invalid("the body is neither an image manifest nor an index".into())
        })?;
    let document = Document::parse(digest, &media_type, bytes)
        .map_err(|e| Problem::manifest_invalid(e.to_string()))?;
    Ok((document, media_type))
}

/// Every blob the document points at, and its subject, must be one this repository may see, as
/// distribution requires each to be linked to the repository: naming a digest never reaches a
/// blob that only another repository (or nobody) shows. A child manifest was checked so when it
/// was pushed, and an image's blobs when it was stored, so one level suffices.
async fn check_visible(
    ask: &Ask<'_>,
    repository: &str,
    document: &Document,
    subject: Option<&Digest>,
) -> Result<(), Problem> {
    for entry in document.entries().map_err(invalid)? {
        let digest = &entry.blob.digest;
        if !ask.may_see(repository, digest).await? {
            return Err(Problem::manifest_blob_unknown(format!(
                "{digest} is not in this repository: push it first"
            )));
        }
    }
    if let Some(subject) = subject
        && !ask.may_see(repository, subject).await?
    {
        return Err(Problem::manifest_invalid(format!(
            "the subject {subject} is not in this repository: push it first"
        )));
    }
    Ok(())
}

/// `<repository>:<tag>`, refused as the spec's TAG_INVALID when the tag is none.
fn tagged(repository: &str, tag: &str) -> Result<ImageName, Problem> {
    format!("{repository}:{tag}")
        .parse::<ImageName>()
        .ok()
        .filter(|n| n.tag() == tag)
        .ok_or_else(|| Problem::tag_invalid(tag))
}

/// Stores the document's bytes, verified against `digest`, held by the lease of the hour.
async fn write(ask: &Ask<'_>, digest: &Digest, bytes: bytes::Bytes) -> Result<(), Problem> {
    let start = WriteStart {
        reference: format!("push-{}", crate::handoff::random_token()),
        expected: digest.clone(),
        total: bytes.len() as u64,
        lease: None,
        offset: 0,
    };
    match ask.store.content().begin_write(start).await? {
        Began::Done(_) => Ok(()),
        // All its bytes at once: the write commits.
        Began::Open(mut write) => write.write(bytes).await.map(drop).map_err(Problem::from),
    }
}

/// The request's media type, without parameters.
fn content_type(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media_type = value.split(';').next()?.trim();
    (!media_type.is_empty()).then(|| media_type.to_owned())
}

/// What the store found wrong with the graph: the client's to fix.
fn invalid(e: store::Error) -> Problem {
    match e {
        store::Error::InvalidArgument(m) | store::Error::Conflict(m) => {
            Problem::manifest_invalid(m)
        }
        store::Error::NotFound(m) => Problem::manifest_blob_unknown(m),
        store::Error::DigestMismatch { .. } | store::Error::InvalidReference { .. } => {
            Problem::manifest_invalid(e.to_string())
        }
        e => e.into(),
    }
}

fn created(name: &str, digest: &Digest, subject: Option<&Digest>) -> Response<Body> {
    let mut response = Response::new(full(Vec::new()));
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    let value = |text: &str| HeaderValue::from_str(text).ok();
    if let Some(location) = value(&format!("/v2/{name}/manifests/{digest}")) {
        headers.insert(header::LOCATION, location);
    }
    if let Some(shown) = value(&digest.to_string()) {
        headers.insert("Docker-Content-Digest", shown);
    }
    if let Some(subject) = subject.and_then(|s| value(&s.to_string())) {
        headers.insert("OCI-Subject", subject);
    }
    headers.insert(header::CONTENT_LENGTH, 0.into());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_must_be_one() {
        assert_eq!(
            tagged("docker.io/library/a", "1.0").unwrap().full(),
            "docker.io/library/a:1.0"
        );
        for bad in ["", "-x", "a/b", "a@b", &"x".repeat(129)] {
            assert!(tagged("docker.io/library/a", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_media_type_is_the_requests_else_the_documents() {
        let d = Digest::of(b"");
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(
            parse(&http::HeaderMap::new(), &d, index)
                .unwrap()
                .0
                .is_index()
        );
        assert!(parse(&http::HeaderMap::new(), &d, b"not json").is_err());
        let config = br#"{"mediaType":"application/vnd.oci.image.config.v1+json"}"#;
        assert!(parse(&http::HeaderMap::new(), &d, config).is_err());
        let mut h = http::HeaderMap::new();
        assert_eq!(content_type(&h), None);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json; charset=x"),
        );
        assert_eq!(
            content_type(&h).as_deref(),
            Some("application/vnd.oci.image.manifest.v1+json")
        );
    }
}
