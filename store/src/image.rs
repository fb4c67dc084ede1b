//! The vocabulary import, export and the store share: what a stored image is, the media types
//! and annotation keys of OCI and docker, the config fields the store reads, and platforms.
//! Pure: no I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// What the store remembers of one image, keyed by its top-level manifest or index digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Digest of the top-level manifest or index.
    pub digest: Digest,
    /// Media type of the top-level blob.
    pub media_type: String,
    /// Size of the top-level blob.
    pub size: u64,
    /// The image ID: the config digest (of the host platform's manifest for an index).
    pub id: Digest,
    /// `created` from the config, as written there.
    pub created: Option<String>,
    /// Bytes of all blobs the image references.
    pub total_size: u64,
    /// `os/architecture[/variant]` of each manifest, as [`Platform`] formats it.
    pub platforms: Vec<String>,
    /// Every blob the image references, top-level first, each once, in the order saves write them.
    pub blobs: Vec<Digest>,
    /// The manifests and indexes among `blobs`, top-level first: what a referrer may name as its
    /// subject. Empty in records written before referrers existed, where the top-level one counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Digest>,
    /// An artifact (an `artifactType`, a config that is not an image config, or an index of no
    /// image), kept because a name picked it. Its ID is then its own digest: artifacts share
    /// their (empty) config, which would give them all one ID.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub artifact: bool,
}

impl ImageRecord {
    /// The digests a referrer of this image may name as its subject.
    pub fn subjects(&self) -> &[Digest] {
        if self.manifests.is_empty() {
            std::slice::from_ref(&self.digest)
        } else {
            &self.manifests
        }
    }
}

/// `org.opencontainers.image.ref.name`: the name an OCI layout gives a descriptor in index.json.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The pre-1.0 key, which the seed document and early tools wrote.
pub(crate) const REF_NAME_OLD: &str = "org.opencontainers.ref.name";
/// containerd's key for the full image name, beside the ref name.
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The media type of an OCI image index, which the referrers API answers with.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Every index and manifest media type the store reads: the one list of them, indexes first.
const DOCUMENT_TYPES: [&str; 4] = [
    OCI_INDEX,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
const INDEXES: usize = 2;

const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// Longest ref name accepted: docker's limit on a whole image name.
pub(crate) const MAX_REF_NAME: usize = 255;

/// Every index and manifest media type the store reads, indexes first: what a registry is
/// asked for (`Accept`).
pub fn document_types() -> &'static [&'static str] {
    &DOCUMENT_TYPES
}

/// An OCI image index or a docker manifest list.
pub fn is_index(media_type: &str) -> bool {
    DOCUMENT_TYPES[..INDEXES].contains(&media_type)
}

/// An OCI image manifest or a docker v2 manifest.
pub fn is_manifest(media_type: &str) -> bool {
    DOCUMENT_TYPES[INDEXES..].contains(&media_type)
}

/// An image config, as opposed to an artifact's config (`application/vnd.oci.empty.v1+json`, …).
pub(crate) fn is_image_config(media_type: &str) -> bool {
    CONFIG_TYPES.contains(&media_type)
}

/// A media type as RFC 6838 spells one: `type/subtype`, each a restricted name (a letter or
/// digit, then up to 126 of letters, digits and `!#$&-^_.+`), optionally followed by
/// `; name=value` parameters.
pub(crate) fn is_valid_media_type(s: &str) -> bool {
    let restricted = |name: &str| {
        let mut bytes = name.bytes();
        bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
            && name.len() <= 127
            && bytes.all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let mut parts = s.split(';');
    let essence = parts.next().unwrap_or_default();
    let type_ok = essence
        .split_once('/')
        .is_some_and(|(t, sub)| restricted(t) && restricted(sub));
    type_ok
        && parts.all(|p| {
            p.trim().split_once('=').is_some_and(|(k, v)| {
                restricted(k) && !v.is_empty() && !v.bytes().any(|b| b.is_ascii_control())
            })
        })
}

/// A ref name as the image-spec's grammar allows it (`component ("/" component)*`, a component
/// being alphanumerics joined by one of `-._:@+` or by `--`), or a docker tag
/// (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, which `docker save` writes there and which the
/// image-spec grammar does not always take, e.g. `v1-`); no longer than [`MAX_REF_NAME`].
pub(crate) fn is_valid_ref_name(s: &str) -> bool {
    s.len() <= MAX_REF_NAME && (is_docker_tag(s) || is_spec_ref_name(s))
}

fn is_docker_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut bytes = s.bytes();
    s.len() <= 128
        && bytes.next().is_some_and(word)
        && bytes.all(|b| word(b) || b == b'.' || b == b'-')
}

fn is_spec_ref_name(s: &str) -> bool {
    let component = |c: &str| {
        let b = c.as_bytes();
        let sep = |x: u8| b"-._:@+".contains(&x);
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_alphanumeric() {
                return false;
            }
            while i < b.len() && b[i].is_ascii_alphanumeric() {
                i += 1;
            }
            if i == b.len() {
                return true;
            }
            match &b[i..] {
                [b'-', b'-', ..] => i += 2,
                [x, ..] if sep(*x) => i += 1,
                _ => return false,
            }
        }
        false
    };
    !s.is_empty() && s.split('/').all(component)
}

/// The labels of an image config (`config.Labels`, in docker's and OCI's configs alike); none
/// when it has none or is no config (an artifact's), whatever else it holds.
pub(crate) fn config_labels(json: &[u8]) -> std::collections::BTreeMap<String, String> {
    let value: serde_json::Value = serde_json::from_slice(json).unwrap_or_default();
    let labels = value["config"]["Labels"].as_object().cloned();
    labels
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k, v.as_str()?.to_owned())))
        .collect()
}

/// The few config fields the store uses; docker and OCI configs both carry them.
#[derive(Deserialize, Default)]
pub(crate) struct ConfigSummary {
    pub(crate) created: Option<String>,
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    variant: Option<String>,
    #[serde(default)]
    pub(crate) rootfs: RootFs,
}

#[derive(Deserialize, Default)]
pub(crate) struct RootFs {
    #[serde(default)]
    pub(crate) diff_ids: Vec<String>,
}

impl ConfigSummary {
    pub(crate) fn parse(digest: &Digest, json: &[u8]) -> Result<Self> {
        serde_json::from_slice(json).map_err(|e| {
            Error::invalid(format!("config {digest} is not a valid image config: {e}"))
        })
    }

    pub(crate) fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }
}

/// A platform, `os/architecture[/variant]`, parsed and formatted here and nowhere else.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl Platform {
    /// The platform docker would pick on this host: `linux/<GOARCH name of this CPU>`.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Whether an image for this platform answers a request for `wanted`: the same platform, or
    /// any variant of it when `wanted` names none (`linux/arm64` takes `linux/arm64/v8`).
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && (wanted.variant.is_none() || self.variant == wanted.variant)
    }

    /// `unknown/unknown`: what buildx gives attestation manifests, which are not images.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }

    /// The platform an index gives a manifest, if it names a usable one (an empty variant is
    /// none).
    pub(crate) fn of_descriptor(p: &oci_spec::image::Platform) -> Option<Self> {
        let platform = Platform {
            os: p.os().to_string(),
            architecture: p.architecture().to_string(),
            variant: p.variant().clone().filter(|v| !v.is_empty()),
        };
        let usable = !platform.os.is_empty() && !platform.architecture.is_empty();
        usable.then_some(platform)
    }

    /// The platform an image config declares.
    pub fn of_config(digest: &Digest, json: &[u8]) -> Result<Self> {
        Ok(ConfigSummary::parse(digest, json)?.platform())
    }

    pub(crate) fn to_oci(&self) -> Option<oci_spec::image::Platform> {
        let mut b = oci_spec::image::PlatformBuilder::default()
            .os(self.os.as_str())
            .architecture(self.architecture.as_str());
        if let Some(v) = &self.variant {
            b = b.variant(v.clone());
        }
        b.build().ok()
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Platform {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch, rest @ ..] if rest.len() <= 1 && !parts.iter().any(|p| p.is_empty()) => {
                Ok(Platform {
                    os: (*os).to_owned(),
                    architecture: (*arch).to_owned(),
                    variant: rest.first().map(|v| (*v).to_owned()),
                })
            }
            _ => Err(Error::InvalidPlatform(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_follow_the_image_spec_grammar() {
        for ok in [
            "v1",
            "1.35",
            "busybox:1.35",
            "docker.io/library/busybox:1.35",
            "a--b",
            "x@sha256:ab",
            "v1-",
            "1.0_",
            "_tmp",
        ] {
            assert!(is_valid_ref_name(ok), "{ok}");
        }
        let long = "a".repeat(MAX_REF_NAME + 1);
        for bad in [
            "",
            "has space",
            "../../x:v1",
            "a/",
            "-a",
            "-a:b",
            "a-:b",
            "a//b",
            long.as_str(),
        ] {
            assert!(!is_valid_ref_name(bad), "{bad}");
        }
    }

    #[test]
    fn media_types_follow_rfc_6838() {
        for ok in [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "text/plain; charset=utf-8",
        ] {
            assert!(is_valid_media_type(ok), "{ok}");
        }
        for bad in [
            "",
            "json",
            "application/",
            "/json",
            "application/vnd oci",
            "a/b/c",
            "text/plain; charset",
        ] {
            assert!(!is_valid_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn platforms_parse_format_and_match() {
        let arm: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        assert!(arm.satisfies(&"linux/arm64".parse().unwrap()));
        assert!(!arm.satisfies(&"linux/arm64/v9".parse().unwrap()));
        assert!(!"linux/arm64".parse::<Platform>().unwrap().satisfies(&arm));
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", ""] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        let oci = arm.to_oci().unwrap();
        assert_eq!(Platform::of_descriptor(&oci), Some(arm));
    }
}
