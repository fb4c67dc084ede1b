//! What a manifest or index asks for, read from its JSON alone: the blobs of an image, the
//! manifests of an index, and which of those a platform chooses. No I/O.

use std::collections::HashSet;

use serde::Deserialize;
use store::{Digest, Platform};

/// A blob a manifest points at.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct BlobRef {
    pub(super) digest: Digest,
    pub(super) size: u64,
}

/// A manifest an index points at.
#[derive(Clone, Debug)]
pub(super) struct Child {
    pub(super) blob: BlobRef,
    pub(super) media_type: String,
    pub(super) platform: Option<Platform>,
}

/// What a manifest or index is.
#[derive(Debug)]
pub(super) enum Document {
    Index(Vec<Child>),
    /// The config, then the layers.
    Manifest(Vec<BlobRef>),
}

#[derive(Deserialize)]
struct Json {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Desc>,
    #[serde(default)]
    layers: Vec<Desc>,
    #[serde(default)]
    manifests: Vec<Desc>,
    subject: Option<Desc>,
}

#[derive(Deserialize)]
struct Desc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    platform: Option<Plat>,
}

#[derive(Deserialize)]
struct Plat {
    os: String,
    architecture: String,
    variant: Option<String>,
}

/// The `mediaType` a manifest or index names itself with.
pub(super) fn media_type(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Json>(bytes).ok()?.media_type
}

/// The manifest a referrer's `subject` names.
pub(super) fn subject(bytes: &[u8]) -> Option<Digest> {
    serde_json::from_slice::<Json>(bytes)
        .ok()?
        .subject?
        .digest
        .parse()
        .ok()
}

/// Reads a manifest or index of `media_type`; the error says what is wrong with it.
pub(super) fn parse(media_type: &str, bytes: &[u8]) -> Result<Document, String> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
    let blob = |d: &Desc| -> Result<BlobRef, String> {
        Ok(BlobRef {
            digest: d.digest.parse().map_err(|e| format!("{e}"))?,
            size: d.size,
        })
    };
    if store::is_index(media_type) {
        let children = json
            .manifests
            .iter()
            .map(|d| {
                Ok(Child {
                    blob: blob(d)?,
                    media_type: d.media_type.clone(),
                    platform: d.platform.as_ref().and_then(platform),
                })
            })
            .collect::<Result<_, String>>()?;
        return Ok(Document::Index(children));
    }
    if store::is_manifest(media_type) {
        let config = json.config.as_ref().ok_or("a manifest without a config")?;
        let blobs = std::iter::once(config)
            .chain(&json.layers)
            .map(blob)
            .collect::<Result<_, String>>()?;
        return Ok(Document::Manifest(blobs));
    }
    Err(format!(
        "{media_type} is neither an image manifest nor an index"
    ))
}

fn platform(p: &Plat) -> Option<Platform> {
    let mut s = format!("{}/{}", p.os, p.architecture);
    if let Some(v) = p.variant.as_deref().filter(|v| !v.is_empty()) {
        s = format!("{s}/{v}");
    }
    s.parse().ok()
}

/// The image manifest of an index that `wanted` takes, as load chooses one: the first whose
/// platform satisfies it. Attestations (`unknown/unknown`) and nested indexes are never chosen.
pub(super) fn choose<'a>(children: &'a [Child], wanted: &Platform) -> Option<&'a Child> {
    children.iter().find(|c| {
        store::is_manifest(&c.media_type)
            && c.platform
                .as_ref()
                .is_some_and(|p| !p.is_unknown() && p.satisfies(wanted))
    })
}

/// Each blob once, in first-seen order.
pub(super) fn unique(blobs: impl IntoIterator<Item = BlobRef>) -> Vec<BlobRef> {
    let mut seen = HashSet::new();
    blobs
        .into_iter()
        .filter(|b| seen.insert(b.digest.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn d(n: u8) -> String {
        format!("sha256:{}", hex_of(n))
    }

    fn hex_of(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    #[test]
    fn a_manifest_lists_its_config_then_its_layers() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"x/y","digest":"{}","size":3}},"layers":[{{"mediaType":"x/z","digest":"{}","size":5}}]}}"#,
            d(1),
            d(2)
        );
        assert_eq!(media_type(json.as_bytes()).as_deref(), Some(MANIFEST));
        let Document::Manifest(blobs) = parse(MANIFEST, json.as_bytes()).unwrap() else {
            panic!("not a manifest")
        };
        let sizes: Vec<u64> = blobs.iter().map(|b| b.size).collect();
        assert_eq!(sizes, [3, 5]);
        assert_eq!(blobs[0].digest.to_string(), d(1));
    }

    #[test]
    fn an_index_chooses_the_platform_and_never_an_attestation() {
        let entry = |n: u8, os: &str, arch: &str| {
            format!(
                r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":10,"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#,
                d(n)
            )
        };
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{},{},{}]}}"#,
            entry(1, "unknown", "unknown"),
            entry(2, "linux", "arm64"),
            entry(3, "linux", "amd64")
        );
        let Document::Index(children) = parse(INDEX, json.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        let pick =
            |p: &str| choose(&children, &p.parse().unwrap()).map(|c| c.blob.digest.to_string());
        assert_eq!(pick("linux/amd64"), Some(d(3)));
        assert_eq!(pick("linux/arm64"), Some(d(2)));
        assert_eq!(pick("unknown/unknown"), None);
        assert_eq!(pick("windows/amd64"), None);
    }

    #[test]
    fn what_is_not_a_manifest_is_refused() {
        assert!(parse(MANIFEST, b"[]").is_err());
        assert!(parse("text/plain", b"{}").is_err());
        assert!(parse(MANIFEST, br#"{"layers":[]}"#).is_err());
        let bad_digest = r#"{"config":{"digest":"sha256:zz","size":1}}"#;
        assert!(parse(MANIFEST, bad_digest.as_bytes()).is_err());
    }

    #[test]
    fn unique_keeps_the_first_of_each_blob() {
        let b = |n: u8| BlobRef {
            digest: d(n).parse().unwrap(),
            size: n as u64,
        };
        assert_eq!(unique([b(1), b(2), b(1), b(3)]), vec![b(1), b(2), b(3)]);
    }
}
