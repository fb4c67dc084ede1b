//! Follows an OCI `index.json` through nested indexes to manifests, configs and layers, checking
//! that every descriptor's blob came in the archive with the size it promised, and tells images
//! from artifacts and referrers by what each top-level document says of itself. The same walk
//! checks an image made from blobs the store holds, through [`Source`].

use std::collections::{BTreeMap, HashMap, HashSet};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::archive::Ingested;
use super::{Candidate, Found, Resolved};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{
    CONTAINERD_NAME, ConfigSummary, ImageRecord, MAX_REF_NAME, Platform, REF_NAME, REF_NAME_OLD,
    is_image_config, is_index, is_manifest, is_valid_media_type, is_valid_ref_name,
};
use crate::limits::{MAX_DESCRIPTORS, MAX_INDEX_DEPTH};
use crate::referrer::{Kind, ReferrerRecord, Top};

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
    /// Manifests with an image config, in the order visited.
    manifests: Vec<ManifestSeen>,
    /// Every manifest and index visited, top-level first: what referrers may name as subject.
    documents: Vec<Digest>,
    /// What the top-level document says of itself.
    top: Top,
    total: u64,
    /// Counted across the whole archive, not reset per image.
    descriptors: usize,
}

pub(crate) fn resolve(ingested: &mut Ingested, index_json: &[u8]) -> Result<Resolved> {
    let index: ImageIndex = serde_json::from_slice(index_json)
        .map_err(|e| Error::invalid(format!("index.json is not a valid image index: {e}")))?;
    if index.manifests().is_empty() {
        return Err(Error::invalid("index.json lists no images"));
    }
    let mut descriptors = 0;
    let mut out = Resolved::default();
    for desc in index.manifests() {
        let mut walk = Walk {
            descriptors,
            ..Walk::default()
        };
        visit(ingested, desc, "index.json", 0, &mut walk)?;
        descriptors = walk.descriptors;
        out.documents.extend(walk.documents.iter().cloned());
        match found(desc, walk)? {
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
pub(crate) fn image<S: Source>(source: &mut S, desc: &Descriptor) -> Result<Found> {
    let mut walk = Walk::default();
    visit(source, desc, "the request", 0, &mut walk)?;
    found(desc, walk)
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
fn found(desc: &Descriptor, walk: Walk) -> Result<Found> {
    let digest = Digest::try_from(desc.digest())?;
    let host = Platform::host();
    let images: Vec<&ManifestSeen> = walk
        .manifests
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
    let kind = walk.top.kind(chosen.is_some());
    if let Kind::Referrer(subject) = kind {
        let record = ReferrerRecord {
            digest,
            media_type: desc.media_type().to_string(),
            size: desc.size(),
            artifact_type: walk.top.reported_type(),
            annotations: walk.top.annotations,
            subject,
            blobs: walk.blobs,
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
        total_size: walk.total,
        platforms: images.iter().map(|m| m.platform.to_string()).collect(),
        blobs: walk.blobs,
        manifests: walk.documents,
        artifact,
    };
    Ok(Found::Image(Candidate {
        record,
        ref_names,
        containerd_name: annotations.get(CONTAINERD_NAME).cloned(),
        repo_tags: Vec::new(),
    }))
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
        if is_index(&media_type) || is_manifest(&media_type) {
            walk.documents.push(digest.clone());
        }
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
    if depth == 0 {
        walk.top = Top {
            artifact_type: index.artifact_type().as_ref().map(ToString::to_string),
            config_type: None,
            subject: subject(digest, index.subject().as_ref())?,
            annotations: sorted(index.annotations()),
        };
    }
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
    let config_type = manifest.config().media_type().to_string();
    if depth == 0 {
        walk.top = Top {
            artifact_type: manifest.artifact_type().as_ref().map(ToString::to_string),
            config_type: Some(config_type.clone()),
            subject: subject(digest, manifest.subject().as_ref())?,
            annotations: sorted(manifest.annotations()),
        };
    }
    let name = format!("manifest {digest}");
    visit(source, manifest.config(), &name, depth + 1, walk)?;
    for layer in manifest.layers() {
        visit(source, layer, &name, depth + 1, walk)?;
    }
    // An artifact's config is whatever its type says (often `{}`): only an image's is read.
    if !is_image_config(&config_type) {
        return Ok(());
    }
    let config_digest = Digest::try_from(manifest.config().digest())?;
    let config = ConfigSummary::parse(&config_digest, &source.read_json(&config_digest)?)?;
    let diff_ids = config.rootfs.diff_ids.len();
    if diff_ids != manifest.layers().len() {
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

/// The digest a document's `subject` names, which must be a sha256 digest like any other.
fn subject(digest: &Digest, subject: Option<&Descriptor>) -> Result<Option<Digest>> {
    subject
        .map(|s| {
            Digest::try_from(s.digest()).map_err(|e| {
                Error::invalid(format!("{digest} names a subject that is not usable: {e}"))
            })
        })
        .transpose()
}

fn sorted(annotations: &Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
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
