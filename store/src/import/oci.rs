//! Follows an OCI `index.json` through nested indexes to manifests, configs and layers, checking
//! that every descriptor's blob came in the archive with the size it promised. The same walk
//! checks an image made from blobs the store holds, through [`Source`].

use std::collections::{HashMap, HashSet};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::Candidate;
use super::archive::Ingested;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{
    CONTAINERD_NAME, ConfigSummary, ImageRecord, MAX_REF_NAME, Platform, REF_NAME, REF_NAME_OLD,
    is_image_config, is_index, is_manifest, is_valid_media_type, is_valid_ref_name,
};
use crate::limits::{MAX_DESCRIPTORS, MAX_INDEX_DEPTH};

/// Where the blobs a walk visits come from: what exists with which size, and small JSON blobs.
pub(crate) trait Source {
    /// Where the blobs are, as error messages say it: "in the archive", "stored".
    const WHERE: &'static str;
    /// The size of `digest` if the source holds it. A source backed by the store pins it first.
    fn size(&mut self, digest: &Digest) -> Result<Option<u64>>;
    /// A blob held, read whole, at most [`crate::limits::MAX_JSON`] bytes.
    fn read_json(&self, digest: &Digest) -> Result<Vec<u8>>;
}

impl Source for Ingested {
    const WHERE: &'static str = "in the archive";

    fn size(&mut self, digest: &Digest) -> Result<Option<u64>> {
        // Only a `blobs/sha256/<hex>` entry is a layout's blob, as every other reader of layouts
        // sees it; a file elsewhere with the same bytes does not count.
        let held = self.blob_entries.contains(digest);
        Ok(self.present.get(digest).filter(|_| held).map(|i| i.size))
    }

    fn read_json(&self, digest: &Digest) -> Result<Vec<u8>> {
        Ingested::read_json(self, digest)
    }
}

struct ManifestSeen {
    platform: Platform,
    config: Digest,
    created: Option<String>,
}

/// What following one top-level descriptor found.
#[derive(Default)]
struct Walk {
    blobs: Vec<Digest>,
    seen: HashSet<Digest>,
    /// The indexes being visited, outermost first: a cycle shows up here.
    stack: Vec<Digest>,
    manifests: Vec<ManifestSeen>,
    total: u64,
    /// Counted across the whole archive, not reset per image.
    descriptors: usize,
}

pub(crate) fn resolve(ingested: &mut Ingested, index_json: &[u8]) -> Result<Vec<Candidate>> {
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
    check_one_image_per_ref_name(&out)?;
    Ok(out)
}

/// The image whose top-level manifest or index `desc` describes, checked as a load checks it.
pub(crate) fn image<S: Source>(source: &mut S, desc: &Descriptor) -> Result<Candidate> {
    let mut walk = Walk::default();
    visit(source, desc, "the request", 0, &mut walk)?;
    candidate(desc, walk)
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

fn candidate(desc: &Descriptor, walk: Walk) -> Result<Candidate> {
    let digest = Digest::try_from(desc.digest())?;
    let host = Platform::host();
    let chosen = walk
        .manifests
        .iter()
        .find(|m| m.platform.satisfies(&host))
        .or_else(|| walk.manifests.first())
        .ok_or_else(|| Error::invalid(format!("{digest} holds no image manifest")))?;
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
            .filter(|m| !m.platform.is_unknown())
            .map(|m| m.platform.to_string())
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

/// Checks one descriptor against what the archive holds, records its blob, and descends into it
/// when it is an index or a manifest.
fn visit<S: Source>(
    source: &mut S,
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
    if !is_valid_media_type(&media_type) {
        return Err(Error::invalid(format!(
            "{digest} in {parent} has media type {media_type:?}, which is not a media type"
        )));
    }
    let size = present(source, desc, &digest, parent)?;
    if walk.stack.contains(&digest) {
        return Err(Error::invalid(format!("index {digest} refers to itself")));
    }
    if walk.seen.insert(digest.clone()) {
        walk.blobs.push(digest.clone());
        walk.total += size;
    }
    if is_index(&media_type) {
        visit_index(source, &digest, &media_type, depth, walk)
    } else if is_manifest(&media_type) {
        visit_manifest(source, &digest, &media_type, depth, walk)
    } else {
        Ok(())
    }
}

/// The size of the source's copy of a descriptor's blob, which must be there as promised.
fn present<S: Source>(
    source: &mut S,
    desc: &Descriptor,
    digest: &Digest,
    parent: &str,
) -> Result<u64> {
    let media_type = desc.media_type();
    let held = S::WHERE;
    let Some(size) = source.size(digest)? else {
        if desc.urls().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::invalid(format!(
                "{media_type} {digest} in {parent} is a foreign layer that is not {held}; \
                 hyperd never fetches from URLs"
            )));
        }
        return Err(Error::invalid(format!(
            "{media_type} {digest} named in {parent} is not {held}"
        )));
    };
    if size != desc.size() {
        return Err(Error::invalid(format!(
            "{digest} in {parent}: descriptor says {} bytes, but {size} are {held}",
            desc.size()
        )));
    }
    Ok(size)
}

fn visit_index<S: Source>(
    source: &mut S,
    digest: &Digest,
    media_type: &str,
    depth: usize,
    walk: &mut Walk,
) -> Result<()> {
    if depth >= MAX_INDEX_DEPTH {
        return Err(Error::invalid(format!(
            "index {digest} is nested more than {MAX_INDEX_DEPTH} deep"
        )));
    }
    let index: ImageIndex = parse_declared(source, digest, "an image index")?;
    check_own_type(digest, media_type, index.media_type().as_ref())?;
    walk.stack.push(digest.clone());
    let name = format!("index {digest}");
    for child in index.manifests() {
        visit(source, child, &name, depth + 1, walk)?;
    }
    walk.stack.pop();
    Ok(())
}

fn visit_manifest<S: Source>(
    source: &mut S,
    digest: &Digest,
    media_type: &str,
    depth: usize,
    walk: &mut Walk,
) -> Result<()> {
    let manifest: ImageManifest = parse_declared(source, digest, "an image manifest")?;
    check_own_type(digest, media_type, manifest.media_type().as_ref())?;
    let name = format!("manifest {digest}");
    visit(source, manifest.config(), &name, depth + 1, walk)?;
    let config_digest = Digest::try_from(manifest.config().digest())?;
    let config = ConfigSummary::parse(&config_digest, &source.read_json(&config_digest)?)?;
    for layer in manifest.layers() {
        visit(source, layer, &name, depth + 1, walk)?;
    }
    let diff_ids = config.rootfs.diff_ids.len();
    if is_image_config(manifest.config().media_type().as_ref())
        && diff_ids != manifest.layers().len()
    {
        return Err(Error::invalid(format!(
            "manifest {digest} has {} layers but its config {config_digest} lists {diff_ids} diff_ids",
            manifest.layers().len()
        )));
    }
    walk.manifests.push(ManifestSeen {
        platform: config.platform(),
        config: config_digest,
        created: config.created,
    });
    Ok(())
}

fn parse_declared<T: serde::de::DeserializeOwned, S: Source>(
    source: &S,
    digest: &Digest,
    what: &str,
) -> Result<T> {
    serde_json::from_slice(&source.read_json(digest)?)
        .map_err(|e| Error::invalid(format!("{digest} is declared {what} but is not one: {e}")))
}

/// A blob that names its own media type must agree with the descriptor that led to it.
fn check_own_type(
    digest: &Digest,
    declared: &str,
    own: Option<&oci_spec::image::MediaType>,
) -> Result<()> {
    match own.map(ToString::to_string) {
        Some(own) if own != declared => Err(Error::invalid(format!(
            "{digest} is declared {declared} but says it is {own}"
        ))),
        _ => Ok(()),
    }
}
