//! Follows an OCI `index.json` through nested indexes to manifests, configs and layers, checking
//! that every descriptor's blob came in the archive with the size it promised.

use std::collections::HashSet;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::Candidate;
use super::archive::Ingested;
use crate::digest::Digest;
use crate::limits::{MAX_DESCRIPTORS, MAX_INDEX_DEPTH};
use crate::meta::ImageRecord;
use crate::{Error, Result};

pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The pre-1.0 key, which the seed document and early tools wrote.
pub(crate) const REF_NAME_OLD: &str = "org.opencontainers.ref.name";
pub(crate) const CONTAINERD_NAME: &str = "io.containerd.image.name";

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

pub(crate) fn is_index(media_type: &str) -> bool {
    INDEX_TYPES.contains(&media_type)
}

pub(crate) fn is_manifest(media_type: &str) -> bool {
    MANIFEST_TYPES.contains(&media_type)
}

/// The few config fields the store uses; docker and OCI configs both carry them.
#[derive(serde::Deserialize, Default)]
pub(crate) struct ConfigSummary {
    pub(crate) created: Option<String>,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) architecture: String,
    pub(crate) variant: Option<String>,
    #[serde(default)]
    pub(crate) rootfs: RootFs,
}

#[derive(serde::Deserialize, Default)]
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

    pub(crate) fn platform(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The platform docker would pick on this host, as `os/architecture`.
pub(crate) fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

struct ManifestSeen {
    platform: String,
    config: Digest,
    created: Option<String>,
}

#[derive(Default)]
struct Walk {
    blobs: Vec<Digest>,
    seen: HashSet<Digest>,
    stack: Vec<Digest>,
    manifests: Vec<ManifestSeen>,
    total: u64,
    descriptors: usize,
}

pub(crate) fn resolve(ingested: &Ingested, index_json: &[u8]) -> Result<Vec<Candidate>> {
    let index: ImageIndex = serde_json::from_slice(index_json)
        .map_err(|e| Error::invalid(format!("index.json is not a valid image index: {e}")))?;
    if index.manifests().is_empty() {
        return Err(Error::invalid("index.json lists no images"));
    }
    let mut descriptors = 0;
    let mut out = Vec::new();
    for desc in index.manifests() {
        let mut walk = Walk {
            descriptors,
            ..Walk::default()
        };
        visit(ingested, desc, "index.json", 0, &mut walk)?;
        descriptors = walk.descriptors;
        out.push(candidate(desc, walk)?);
    }
    Ok(out)
}

fn candidate(desc: &Descriptor, walk: Walk) -> Result<Candidate> {
    let digest = Digest::try_from(desc.digest())?;
    let host = host_platform();
    let chosen = walk
        .manifests
        .iter()
        .find(|m| m.platform == host || m.platform.starts_with(&format!("{host}/")))
        .or_else(|| walk.manifests.first())
        .ok_or_else(|| Error::invalid(format!("{digest} holds no image manifest")))?;
    let annotations = desc.annotations().clone().unwrap_or_default();
    let ref_names = [REF_NAME, REF_NAME_OLD]
        .iter()
        .filter_map(|k| annotations.get(*k).cloned())
        .collect();
    let record = ImageRecord {
        digest,
        media_type: desc.media_type().to_string(),
        size: desc.size(),
        id: chosen.config.clone(),
        created: chosen.created.clone(),
        total_size: walk.total,
        platforms: walk
            .manifests
            .iter()
            .map(|m| m.platform.clone())
            .filter(|p| p != "unknown/unknown")
            .collect(),
        blobs: walk.blobs,
    };
    Ok(Candidate {
        record,
        ref_names,
        containerd_name: annotations.get(CONTAINERD_NAME).cloned(),
        repo_tags: Vec::new(),
    })
}

fn visit(
    ingested: &Ingested,
    desc: &Descriptor,
    parent: &str,
    depth: usize,
    walk: &mut Walk,
) -> Result<()> {
    walk.descriptors += 1;
    if walk.descriptors > MAX_DESCRIPTORS {
        return Err(Error::invalid(format!(
            "archive names more than {MAX_DESCRIPTORS} descriptors"
        )));
    }
    let digest = Digest::try_from(desc.digest())?;
    let media_type = desc.media_type().to_string();
    let Some(info) = ingested.present.get(&digest) else {
        if desc.urls().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::invalid(format!(
                "{media_type} {digest} in {parent} is a foreign layer that is not in the archive; \
                 hyperd never fetches from URLs"
            )));
        }
        return Err(Error::invalid(format!(
            "{media_type} {digest} named in {parent} is not in the archive"
        )));
    };
    if info.size != desc.size() {
        return Err(Error::invalid(format!(
            "{digest} in {parent}: descriptor says {} bytes, the archive holds {}",
            desc.size(),
            info.size
        )));
    }
    if walk.stack.contains(&digest) {
        return Err(Error::invalid(format!("index {digest} refers to itself")));
    }
    if walk.seen.insert(digest.clone()) {
        walk.blobs.push(digest.clone());
        walk.total += info.size;
    }
    if is_index(&media_type) {
        if depth >= MAX_INDEX_DEPTH {
            return Err(Error::invalid(format!(
                "index {digest} is nested more than {MAX_INDEX_DEPTH} deep"
            )));
        }
        let json = ingested.read_json(&digest)?;
        let index: ImageIndex = serde_json::from_slice(&json).map_err(|e| {
            Error::invalid(format!(
                "{digest} is declared an image index but is not one: {e}"
            ))
        })?;
        check_own_type(
            &digest,
            &media_type,
            index.media_type().as_ref().map(|m| m.to_string()),
        )?;
        walk.stack.push(digest.clone());
        let name = format!("index {digest}");
        for child in index.manifests() {
            visit(ingested, child, &name, depth + 1, walk)?;
        }
        walk.stack.pop();
    } else if is_manifest(&media_type) {
        let json = ingested.read_json(&digest)?;
        let manifest: ImageManifest = serde_json::from_slice(&json).map_err(|e| {
            Error::invalid(format!(
                "{digest} is declared an image manifest but is not one: {e}"
            ))
        })?;
        check_own_type(
            &digest,
            &media_type,
            manifest.media_type().as_ref().map(|m| m.to_string()),
        )?;
        let name = format!("manifest {digest}");
        visit(ingested, manifest.config(), &name, depth + 1, walk)?;
        let config_digest = Digest::try_from(manifest.config().digest())?;
        let config = ConfigSummary::parse(&config_digest, &ingested.read_json(&config_digest)?)?;
        for layer in manifest.layers() {
            visit(ingested, layer, &name, depth + 1, walk)?;
        }
        walk.manifests.push(ManifestSeen {
            platform: config.platform(),
            config: config_digest,
            created: config.created,
        });
    }
    Ok(())
}

/// A blob that names its own media type must agree with the descriptor that led to it.
fn check_own_type(digest: &Digest, declared: &str, own: Option<String>) -> Result<()> {
    match own {
        Some(own) if own != declared => Err(Error::invalid(format!(
            "{digest} is declared {declared} but says it is {own}"
        ))),
        _ => Ok(()),
    }
}
