//! One model of an OCI document: a manifest or an index (OCI or docker), read once with
//! oci-spec, and what its readers ask of it: the descriptors it lists, the platforms an index
//! gives them, its subject, artifactType and annotations. Pure: no I/O; the walk
//! ([`crate::walk`]) fetches documents and checks what they point at.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Platform, is_image_config, is_index, is_manifest};

/// A blob as a descriptor names it: its digest, and the size promised for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlobRef {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A descriptor a document lists, its digest checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The blob it points at.
    pub blob: BlobRef,
    /// The media type it gives the blob.
    pub media_type: String,
    /// The platform an index gives a manifest (none when absent or not a usable one).
    pub platform: Option<Platform>,
}

#[derive(Clone, Debug)]
enum Body {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// A manifest or index, parsed, under the digest that led to it.
#[derive(Clone, Debug)]
pub struct Document {
    digest: Digest,
    body: Body,
}

impl Document {
    /// Reads `bytes`, the blob `digest`, as the document its descriptor says it is
    /// (`media_type`): an index or a manifest, whose own `mediaType`, if any, agrees.
    pub fn parse(digest: &Digest, media_type: &str, bytes: &[u8]) -> Result<Document> {
        let body = if is_index(media_type) {
            Body::Index(Box::new(declared(digest, "an image index", bytes)?))
        } else if is_manifest(media_type) {
            Body::Manifest(Box::new(declared(digest, "an image manifest", bytes)?))
        } else {
            return Err(not_a_document(media_type));
        };
        let own = match &body {
            Body::Index(i) => i.media_type().as_ref(),
            Body::Manifest(m) => m.media_type().as_ref(),
        };
        if let Some(own) = own.map(ToString::to_string)
            && own != media_type
        {
            return Err(Error::invalid(format!(
                "{digest} is declared {media_type} but says it is {own}"
            )));
        }
        Ok(Document {
            digest: digest.clone(),
            body,
        })
    }

    /// The digest the document was read under.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// An index (or docker manifest list), as opposed to a manifest.
    pub fn is_index(&self) -> bool {
        matches!(self.body, Body::Index(_))
    }

    /// Its `artifactType` field.
    pub fn artifact_type(&self) -> Option<String> {
        let t = match &self.body {
            Body::Index(i) => i.artifact_type(),
            Body::Manifest(m) => m.artifact_type(),
        };
        t.as_ref().map(ToString::to_string)
    }

    /// A manifest's config media type; none for an index.
    pub fn config_type(&self) -> Option<String> {
        match &self.body {
            Body::Index(_) => None,
            Body::Manifest(m) => Some(m.config().media_type().to_string()),
        }
    }

    /// A manifest's config when it is an image's (not an artifact's); none for an index.
    pub fn image_config(&self) -> Result<Option<BlobRef>> {
        match &self.body {
            Body::Manifest(m) if is_image_config(m.config().media_type().as_ref()) => {
                Ok(Some(BlobRef {
                    digest: Digest::try_from(m.config().digest())?,
                    size: m.config().size(),
                }))
            }
            _ => Ok(None),
        }
    }

    /// How many layers a manifest lists; none for an index.
    pub fn layer_count(&self) -> Option<usize> {
        match &self.body {
            Body::Index(_) => None,
            Body::Manifest(m) => Some(m.layers().len()),
        }
    }

    /// Its own annotations, sorted.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let a = match &self.body {
            Body::Index(i) => i.annotations(),
            Body::Manifest(m) => m.annotations(),
        };
        a.iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The digest its `subject` names, which must be a sha256 digest like any other.
    pub fn subject(&self) -> Result<Option<Digest>> {
        let subject = match &self.body {
            Body::Index(i) => i.subject(),
            Body::Manifest(m) => m.subject(),
        };
        let usable = |s: &Descriptor| {
            Digest::try_from(s.digest()).map_err(|e| {
                Error::invalid(format!(
                    "{} names a subject that is not usable: {e}",
                    self.digest
                ))
            })
        };
        subject.as_ref().map(usable).transpose()
    }

    /// What it points at: an index's manifests, or a manifest's config, then its layers.
    pub(crate) fn descriptors(&self) -> Vec<&Descriptor> {
        match &self.body {
            Body::Index(i) => i.manifests().iter().collect(),
            Body::Manifest(m) => std::iter::once(m.config()).chain(m.layers()).collect(),
        }
    }

    /// What it points at, as [`Document::descriptors`] lists them, each digest checked.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        self.descriptors()
            .into_iter()
            .map(|d| {
                Ok(Entry {
                    blob: BlobRef {
                        digest: Digest::try_from(d.digest())?,
                        size: d.size(),
                    },
                    media_type: d.media_type().to_string(),
                    platform: d.platform().as_ref().and_then(Platform::of_descriptor),
                })
            })
            .collect()
    }
}

/// The `mediaType` field a manifest or index may carry, read before knowing which it is.
pub fn own_media_type(digest: &Digest, bytes: &[u8]) -> Result<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Own {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let own: Own = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("{digest} is not a JSON document: {e}")))?;
    Ok(own.media_type)
}

/// What a walk refuses to start from: a blob that is neither a manifest nor an index.
pub(crate) fn not_a_document(media_type: &str) -> Error {
    Error::invalid(format!(
        "media type {media_type:?} is neither an image manifest nor an image index"
    ))
}

fn declared<T: serde::de::DeserializeOwned>(
    digest: &Digest,
    what: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("{digest} is declared {what} but is not one: {e}")))
}

/// The descriptor a walk starts from, for a document known by digest, media type and size.
pub(crate) fn descriptor(top: &BlobRef, media_type: &str) -> Result<Descriptor> {
    oci_spec::image::DescriptorBuilder::default()
        .media_type(MediaType::from(media_type))
        .digest(oci_spec::image::Digest::from(&top.digest))
        .size(top.size)
        .build()
        .map_err(|e| Error::invalid(format!("descriptor of {}: {e}", top.digest)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn parse(media_type: &str, json: &str) -> Result<Document> {
        Document::parse(&Digest::of(json.as_bytes()), media_type, json.as_bytes())
    }

    #[test]
    fn a_manifest_lists_its_config_then_its_layers() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","artifactType":"x/a","config":{{"mediaType":"x/y","digest":"{}","size":3}},"layers":[{{"mediaType":"x/z","digest":"{}","size":5}}],"subject":{{"mediaType":"{MANIFEST}","digest":"{}","size":9}}}}"#,
            d(1),
            d(2),
            d(3)
        );
        let own = own_media_type(&Digest::of(b""), json.as_bytes()).unwrap();
        assert_eq!(own.as_deref(), Some(MANIFEST));
        let doc = parse(MANIFEST, &json).unwrap();
        assert!(!doc.is_index());
        let sizes: Vec<u64> = doc.entries().unwrap().iter().map(|e| e.blob.size).collect();
        assert_eq!(sizes, [3, 5]);
        assert_eq!(doc.entries().unwrap()[0].blob.digest.to_string(), d(1));
        assert_eq!(doc.config_type().as_deref(), Some("x/y"));
        assert_eq!(doc.layer_count(), Some(1));
        assert_eq!(doc.artifact_type().as_deref(), Some("x/a"));
        assert_eq!(doc.subject().unwrap().map(|s| s.to_string()), Some(d(3)));
    }

    #[test]
    fn an_index_gives_its_manifests_their_platforms() {
        let entry = |n: u8, platform: &str| {
            format!(
                r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":10{platform}}}"#,
                d(n)
            )
        };
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{},{},{}]}}"#,
            entry(
                1,
                r#","platform":{"os":"linux","architecture":"arm64","variant":"v8"}"#
            ),
            entry(
                2,
                r#","platform":{"os":"linux","architecture":"amd64","variant":""}"#
            ),
            entry(3, "")
        );
        let doc = parse(INDEX, &json).unwrap();
        assert!(doc.is_index());
        let platforms: Vec<Option<String>> = doc
            .entries()
            .unwrap()
            .iter()
            .map(|e| e.platform.as_ref().map(ToString::to_string))
            .collect();
        assert_eq!(
            platforms,
            [
                Some("linux/arm64/v8".into()),
                Some("linux/amd64".into()),
                None
            ]
        );
    }

    #[test]
    fn what_is_not_a_manifest_is_refused() {
        let refused =
            |media_type: &str, json: &str| parse(media_type, json).unwrap_err().to_string();
        assert!(refused(MANIFEST, "[]").contains("is declared an image manifest but is not one"));
        assert!(
            refused("text/plain", "{}").contains("neither an image manifest nor an image index")
        );
        assert!(refused(MANIFEST, r#"{"schemaVersion":2,"layers":[]}"#).contains("not one"));
        let own = format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","manifests":[]}}"#);
        assert!(refused(INDEX, &own).contains(&format!("but says it is {MANIFEST}")));
        let bad_digest = r#"{"schemaVersion":2,"manifests":[{"mediaType":"a/b","digest":"sha256:zz","size":1}]}"#;
        assert!(parse(INDEX, bad_digest).and_then(|d| d.entries()).is_err());
        assert!(own_media_type(&Digest::of(b""), b"not json").is_err());
    }
}
