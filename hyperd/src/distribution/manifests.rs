//! `GET`/`HEAD /v2/<name>/manifests/<tag|digest>`: the stored bytes under their own media type,
//! when an image of that repository uses them and the client accepts that type.

use http::{HeaderValue, Response, header};
use store::{Digest, limits::MAX_JSON};

use super::body::{Body, full};
use super::error::Problem;
use super::handler::{Ask, digest};
use super::through;

pub(super) async fn get(
    ask: &Ask<'_>,
    name: &str,
    reference: &str,
) -> Result<Response<Body>, Problem> {
    let repository = ask.serving_repository(name)?;
    if let Some(t) = ask.through {
        through::before_manifest(ask, t, &repository, reference).await?;
    }
    let images = ask.store.images();
    let unknown = || Problem::manifest_unknown(reference);
    let digest = if reference.contains(':') {
        let d = digest(reference, Problem::manifest_unknown)?;
        if !ask.may_see(&repository, &d).await? {
            return Err(unknown());
        }
        d
    } else {
        images.tagged(&repository, reference)?.ok_or_else(unknown)?
    };
    // A layer asked for as a manifest is not read whole.
    let content = ask.store.content();
    let size = match content
        .blob_sizes(vec![digest.clone()])
        .await?
        .pop()
        .flatten()
    {
        Some(size) if size <= MAX_JSON => size,
        _ => return Err(unknown()),
    };
    // An image's or a referrer's type is recorded: a HEAD of one reads no document.
    let recorded = images
        .recorded_media_type(&digest)?
        .filter(|t| store::is_manifest(t) || store::is_index(t));
    let (media_type, bytes) = match recorded {
        Some(t) if ask.head => (t, None),
        recorded => {
            let bytes = content.read_json(&digest).await?;
            let t = recorded.or_else(|| media_type(&digest, &bytes));
            (t.ok_or_else(unknown)?, Some(bytes))
        }
    };
    if !accepts(ask.headers, &media_type) {
        return Err(Problem::not_acceptable(reference, &media_type));
    }
    if !ask.head {
        images.used(&digest);
    }
    Ok(answer(&digest, &media_type, size, bytes))
}

/// The document's media type: its own `mediaType`, else what its fields say it is (an OCI
/// manifest or index may leave `mediaType` out). `None` for what is no manifest or index (a
/// config, say).
pub(super) fn media_type(digest: &Digest, bytes: &[u8]) -> Option<String> {
    if let Ok(Some(own)) = store::own_media_type(digest, bytes) {
        return (store::is_manifest(&own) || store::is_index(&own)).then_some(own);
    }
    #[derive(serde::Deserialize)]
    struct Shape {
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let shape: Shape = serde_json::from_slice(bytes).ok()?;
    match (shape.manifests, shape.config, shape.layers) {
        (Some(_), None, None) => Some(store::OCI_INDEX.to_owned()),
        (None, Some(_), Some(_)) => Some("application/vnd.oci.image.manifest.v1+json".to_owned()),
        _ => None,
    }
}

/// Whether the request's `Accept` headers admit `media_type`: no header admits everything.
/// As RFC 9110 reads them: media types compare without regard to case, the most specific item
/// that matches decides (`type/subtype` over `type/*` over `*/*`), and its `q=0` refuses.
fn accepts(headers: &http::HeaderMap, media_type: &str) -> bool {
    let mut offered = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|item| !item.trim().is_empty())
        .peekable();
    if offered.peek().is_none() {
        return true;
    }
    let Ok(wanted) = media_type.parse::<mime::Mime>() else {
        return false;
    };
    let best = offered
        .filter_map(|item| item.trim().parse::<mime::Mime>().ok())
        .filter_map(|item| Some((specificity(&item, &wanted)?, quality(&item))))
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    best.is_some_and(|(_, q)| q > 0.0)
}

/// How closely an `Accept` item names `wanted`: 2 itself, 1 its `type/*`, 0 `*/*`; `None` when
/// it names another type. `mime` compares names without regard to case.
fn specificity(item: &mime::Mime, wanted: &mime::Mime) -> Option<u8> {
    if item.type_() == mime::STAR {
        return (item.subtype() == mime::STAR).then_some(0);
    }
    if item.type_() != wanted.type_() {
        return None;
    }
    if item.subtype() == mime::STAR {
        return Some(1);
    }
    let suffix = |m: &mime::Mime| m.suffix().map(|s| s.as_str().to_ascii_lowercase());
    (item.subtype() == wanted.subtype() && suffix(item) == suffix(wanted)).then_some(2)
}

/// An item's `q`: 1 when absent, and when it is no number (a client's typo refuses nothing).
fn quality(item: &mime::Mime) -> f32 {
    item.get_param("q")
        .and_then(|q| q.as_str().parse::<f32>().ok())
        .filter(|q| q.is_finite())
        .unwrap_or(1.0)
}

/// The answer of `size` bytes: `bytes` for a GET, none for a HEAD.
fn answer(digest: &Digest, media_type: &str, size: u64, bytes: Option<Vec<u8>>) -> Response<Body> {
    let mut response = Response::new(full(bytes.unwrap_or_default()));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(media_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, size.into());
    let etag = HeaderValue::from_str(&format!("\"{digest}\"")).expect("a digest is a header value");
    headers.insert(header::ETAG, etag);
    let digest = HeaderValue::from_str(&digest.to_string()).expect("a digest is a header value");
    headers.insert("Docker-Content-Digest", digest);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_admits_the_stored_type_or_a_wildcard() {
        let with = |values: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in values {
                h.append(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            }
            h
        };
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let docker = "application/vnd.docker.distribution.manifest.v2+json";
        assert!(accepts(&with(&[]), oci));
        assert!(accepts(&with(&[docker, oci]), oci));
        assert!(accepts(&with(&[&format!("{docker}, {oci}; q=0.5")]), oci));
        assert!(accepts(&with(&["*/*"]), oci));
        assert!(!accepts(&with(&[docker]), oci));
        assert!(!accepts(
            &with(&["application/vnd.oci.image.index.v1+json"]),
            oci
        ));
    }

    #[test]
    fn accept_ignores_case_and_honours_q_zero() {
        let with = |value: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
            h
        };
        let oci = "application/vnd.oci.image.manifest.v1+json";
        assert!(accepts(
            &with("Application/VND.OCI.Image.Manifest.v1+JSON"),
            oci
        ));
        assert!(accepts(&with("APPLICATION/*"), oci));
        assert!(accepts(&with(&format!("{oci}; Q=0.001")), oci));
        for refused in [
            format!("{oci};q=0"),
            format!("{oci}; q=0.000"),
            format!("*/*, {oci};q=0"),
            format!("application/*, {oci}; q=0"),
            "application/*;q=0".to_owned(),
            "*/*;q=0".to_owned(),
        ] {
            assert!(!accepts(&with(&refused), oci), "{refused}");
        }
        // The more specific item decides, whichever way.
        assert!(accepts(&with(&format!("*/*;q=0, {oci}")), oci));
        assert!(accepts(
            &with(&format!("application/*;q=0, {oci};q=0.1")),
            oci
        ));
        // A q that is no number refuses nothing; an item that is no media type admits nothing.
        assert!(accepts(&with(&format!("{oci};q=x")), oci));
        assert!(!accepts(&with("nonsense"), oci));
        // The `+json` suffix is part of the type.
        assert!(!accepts(
            &with("application/vnd.oci.image.manifest.v1"),
            oci
        ));
    }

    #[test]
    fn a_document_without_its_media_type_is_known_by_its_fields() {
        let d = Digest::of(b"");
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(media_type(&d, index).as_deref(), Some(store::OCI_INDEX));
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert!(media_type(&d, manifest).unwrap().contains("manifest"));
        let docker = br#"{"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#;
        assert!(media_type(&d, docker).unwrap().contains("list"));
        assert_eq!(
            media_type(&d, br#"{"architecture":"amd64","rootfs":{}}"#),
            None
        );
        assert_eq!(
            media_type(
                &d,
                br#"{"mediaType":"application/vnd.oci.image.config.v1+json"}"#
            ),
            None
        );
    }
}
