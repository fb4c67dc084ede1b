//! Reads an OCI `index.json`: each descriptor it lists is walked ([`crate::walk`]) through the
//! blobs that came in the archive, and told apart as an image, an artifact or a referrer by
//! what its top-level document says of itself. An image made from blobs the store holds is told
//! apart the same way, through [`image`].

use std::collections::HashMap;

use bytes::Bytes;
use oci_spec::image::{Descriptor, ImageIndex};

use super::archive::Ingested;
use super::{Candidate, Found, Resolved};
use crate::digest::Digest;
use crate::document::{BlobRef, Document};
use crate::error::{Error, Result};
use crate::image::{
    CONTAINERD_NAME, ConfigSummary, ImageRecord, MAX_REF_NAME, Platform, REF_NAME, REF_NAME_OLD,
    is_valid_ref_name,
};
use crate::referrer::{Kind, ReferrerRecord, Top};
use crate::walk::{Graph, Source, Walker};

impl Source for Ingested {
    type Error = Error;
    const WHERE: &'static str = "in the archive";

    async fn size(&mut self, blob: &BlobRef) -> Result<Option<u64>> {
        // Only a `blobs/sha256/<hex>` entry is a layout's blob, as every other reader of layouts
        // sees it; a file elsewhere with the same bytes does not count.
        let held = self.blob_entries.contains(&blob.digest);
        Ok(self
            .present
            .get(&blob.digest)
            .filter(|_| held)
            .map(|i| i.size))
    }

    async fn json(&mut self, digest: &Digest) -> Result<Bytes> {
        self.read_json(digest).map(Bytes::from)
    }
}

struct ManifestSeen {
    platform: Platform,
    config: Digest,
    created: Option<String>,
}

pub(crate) async fn resolve(ingested: &mut Ingested, index_json: &[u8]) -> Result<Resolved> {
    let index: ImageIndex = serde_json::from_slice(index_json)
        .map_err(|e| Error::invalid(format!("index.json is not a valid image index: {e}")))?;
    if index.manifests().is_empty() {
        return Err(Error::invalid("index.json lists no images"));
    }
    let mut out = Resolved::default();
    // One walker: the descriptor limit counts across the whole archive, not per image.
    let mut walker = Walker::new(ingested);
    for desc in index.manifests() {
        let graph = walker.walk(desc, "index.json").await?;
        out.documents
            .extend(graph.documents.iter().map(|d| d.digest.clone()));
        match found(walker.source(), desc, graph).await? {
            Found::Image(c) => out.images.push(c),
            Found::Referrer(r, names) => {
                out.referrer_names
                    .extend(names.into_iter().map(|n| (n, r.digest.clone())));
                out.referrers.push(r);
            }
        }
    }
    check_one_image_per_ref_name(&out.images)?;
    Ok(out)
}

/// What the top-level manifest or index `desc` describes is, checked as a load checks it.
pub(crate) async fn image<S: Source<Error = Error>>(
    source: &mut S,
    desc: &Descriptor,
) -> Result<Found> {
    let graph = Walker::new(&mut *source).walk(desc, "the request").await?;
    found(source, desc, graph).await
}

/// A ref name that index.json gives two different images would load as either: refused.
fn check_one_image_per_ref_name(candidates: &[Candidate]) -> Result<()> {
    let mut named: HashMap<&str, &Digest> = HashMap::new();
    for c in candidates {
        for r in &c.ref_names {
            match named.insert(r, &c.record.digest) {
                Some(other) if *other != c.record.digest => {
                    return Err(Error::invalid(format!(
                        "index.json gives ref name {r:?} to two different images, {other} and {}",
                        c.record.digest
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// An image, an artifact (a candidate too, which only a name keeps) or a referrer. The image ID
/// is the config of the host's manifest, else of the first manifest of a known platform: never
/// of a buildx attestation (`unknown/unknown`), which describes an image and is none.
async fn found<S: Source<Error = Error>>(
    source: &mut S,
    desc: &Descriptor,
    graph: Graph,
) -> Result<Found> {
    let digest = Digest::try_from(desc.digest())?;
    let top = top_of(graph.top.as_ref())?;
    let manifests = read_configs(source, &graph).await?;
    let host = Platform::host();
    let images: Vec<&ManifestSeen> = manifests
        .iter()
        .filter(|m| !m.platform.is_unknown())
        .collect();
    let chosen = images
        .iter()
        .find(|m| m.platform.satisfies(&host))
        .or_else(|| images.first());
    let annotations = desc.annotations().clone().unwrap_or_default();
    let ref_names: Vec<String> = [REF_NAME, REF_NAME_OLD]
        .iter()
        .filter_map(|k| annotations.get(*k).cloned())
        .collect();
    if let Some(bad) = ref_names.iter().find(|r| !is_valid_ref_name(r)) {
        return Err(Error::invalid(format!(
            "index.json names {digest} {bad:?}, which is not a valid ref name (a docker tag, or \
             letters and digits joined by one of -._:@+ or --, in /-separated components; at \
             most {MAX_REF_NAME} characters)"
        )));
    }
    let total_size = graph.total();
    let blobs: Vec<Digest> = graph.blobs.into_iter().map(|b| b.digest).collect();
    let kind = top.kind(chosen.is_some());
    if let Kind::Referrer(subject) = kind {
        let record = ReferrerRecord {
            digest,
            media_type: desc.media_type().to_string(),
            size: desc.size(),
            artifact_type: top.reported_type(),
            annotations: top.annotations,
            subject,
            blobs,
        };
        return Ok(Found::Referrer(record, ref_names));
    }
    let artifact = kind == Kind::Artifact;
    let record = ImageRecord {
        id: match chosen {
            Some(m) if !artifact => m.config.clone(),
            _ => digest.clone(),
        },
        digest,
        media_type: desc.media_type().to_string(),
        size: desc.size(),
        created: chosen.and_then(|m| m.created.clone()),
        total_size,
        platforms: images.iter().map(|m| m.platform.to_string()).collect(),
        blobs,
        manifests: graph.documents.into_iter().map(|d| d.digest).collect(),
        artifact,
    };
    Ok(Found::Image(Candidate {
        record,
        ref_names,
        containerd_name: annotations.get(CONTAINERD_NAME).cloned(),
        repo_tags: Vec::new(),
    }))
}

/// What the top-level document says of itself; nothing when it is neither manifest nor index.
fn top_of(top: Option<&Document>) -> Result<Top> {
    let Some(doc) = top else {
        return Ok(Top::default());
    };
    Ok(Top {
        artifact_type: doc.artifact_type(),
        config_type: doc.config_type(),
        subject: doc.subject()?,
        annotations: doc.annotations(),
    })
}

/// The image configs the walk found, each read and checked against its manifest's layers.
async fn read_configs<S: Source<Error = Error>>(
    source: &mut S,
    graph: &Graph,
) -> Result<Vec<ManifestSeen>> {
    let mut seen = Vec::new();
    for c in &graph.configs {
        let config = ConfigSummary::parse(&c.config, &source.json(&c.config).await?)?;
        let diff_ids = config.rootfs.diff_ids.len();
        if diff_ids != c.layers {
            return Err(Error::invalid(format!(
                "manifest {} has {} layers but its config {} lists {diff_ids} diff_ids",
                c.manifest, c.layers, c.config
            )));
        }
        seen.push(ManifestSeen {
            platform: config.platform(),
            config: c.config.clone(),
            created: config.created,
        });
    }
    Ok(seen)
}
