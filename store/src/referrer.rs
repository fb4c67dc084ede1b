//! OCI 1.1 referrers: a manifest that describes another through its `subject` (a signature, an
//! SBOM, an attestation) and artifacts, which are not images. Which document is which, the
//! record the store keeps of a referrer, which referrers travel with an image, which a change
//! leaves without a subject, and the image index the referrers API answers with. Pure: no I/O.
//!
//! Each top-level document of an archive (or of a `CreateImage`) is one of three things, decided
//! from what it says of itself.
//!
//! A referrer has a `subject`, whatever else it is. It becomes a `ReferrerRecord` (digest, media
//! type, size, artifactType: its own, else its config's media type, as the referrers API reports
//! it; its manifest's annotations, subject digest and blobs), never an image: no ID, no name, never
//! listed. A ref name index.json gives it names nothing, and `-r` naming it is refused.
//!
//! An artifact has no subject but an `artifactType`, a config that is not an image config
//! (`application/vnd.oci.empty.v1+json`, a Helm chart's), or is an index of no image. It has
//! nothing to hang on, so it is kept only when named, as images are named; it is then an image
//! record marked `artifact`, listed under its names only, whose ID is its own digest (artifacts
//! share the 2-byte empty config, which would give them all one ID), and which goes when it loses
//! its last name. An unnamed one refuses the load, and `CreateImage` of one wants names.
//!
//! An image is everything else. Its ID is the config of the host's manifest, else of the first
//! manifest of a known platform: a buildx attestation manifest (`unknown/unknown`, annotated
//! `vnd.docker.reference.type: attestation-manifest`) is part of its index, saved with it, listed
//! in no platform and never chosen, nor written by a docker-format save.
//!
//! A subject is a manifest or index the store holds: an image's top-level one, one inside an
//! image's index (each `ImageRecord` lists them as `manifests`; records written before referrers
//! existed list none, and only their top-level digest counts), or another referrer (a signature of
//! an SBOM).
//!
//! Saves. An OCI save writes, after its images' descriptors, a descriptor of every referrer that
//! travels with them (`meta::Reader::travelling`: the referrers of each image's manifests, then of those, breadth
//! first, each subject's in digest order, each once), with its `artifactType` and annotations but
//! no name keys, as oras and docker lay them out, and their blobs; the bytes stay deterministic.
//! `SaveRequest.no_referrers` leaves them out. A docker-archive has no place for them; hyperctl
//! asks Inspect and says so in one line on stderr.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::digest::Digest;
use crate::image::{OCI_INDEX, is_image_config};

/// Whether what moves (a save, a pull, a push) takes the referrers of its images along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Referrers {
    /// The images alone.
    Omit,
    /// The images and every referrer that travels with them.
    Include,
}

/// What the store remembers of one referrer, keyed by its own digest. A referrer is never an
/// image: it has no ID and no name, and lives as long as its subject does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferrerRecord {
    /// Digest of its manifest (or index).
    pub digest: Digest,
    /// Media type of its manifest.
    pub media_type: String,
    /// Size of its manifest.
    pub size: u64,
    /// Its `artifactType`, else its config's media type: what the referrers API reports.
    pub artifact_type: Option<String>,
    /// Its manifest's own annotations.
    pub annotations: BTreeMap<String, String>,
    /// The manifest it describes: an image's, another manifest's inside an image, or another
    /// referrer's (a signature of an SBOM).
    pub subject: Digest,
    /// Every blob it references, itself first; never its subject's.
    pub blobs: Vec<Digest>,
}

impl ReferrerRecord {
    /// Its descriptor as the referrers API and an OCI layout's index.json list it.
    pub fn descriptor(&self) -> Value {
        let mut d = json!({
            "mediaType": self.media_type,
            "digest": self.digest.to_string(),
            "size": self.size,
        });
        if let Some(t) = &self.artifact_type {
            d["artifactType"] = json!(t);
        }
        if !self.annotations.is_empty() {
            d["annotations"] = json!(self.annotations);
        }
        d
    }
}

/// What a top-level manifest or index says of itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct Top {
    /// Its `artifactType` field.
    pub(crate) artifact_type: Option<String>,
    /// Its config's media type, for a manifest.
    pub(crate) config_type: Option<String>,
    /// The digest its `subject` names.
    pub(crate) subject: Option<Digest>,
    /// Its own annotations.
    pub(crate) annotations: BTreeMap<String, String>,
}

/// What the store makes of a top-level document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An image: listed, named, given the ID of its config.
    Image,
    /// An artifact that refers to nothing: kept only under a name someone gave it.
    Artifact,
    /// A referrer of the manifest named.
    Referrer(Digest),
}

impl Top {
    /// A `subject` makes a referrer, whatever else the document is. Without one, an
    /// `artifactType`, a config that is not an image's, or an index of no image is an artifact.
    /// `holds_image`: the walk found an image manifest (an image config, a known platform).
    pub(crate) fn kind(&self, holds_image: bool) -> Kind {
        if let Some(s) = &self.subject {
            return Kind::Referrer(s.clone());
        }
        let foreign_config = self
            .config_type
            .as_deref()
            .is_some_and(|t| !is_image_config(t));
        if self.artifact_type.is_some() || foreign_config || !holds_image {
            Kind::Artifact
        } else {
            Kind::Image
        }
    }

    /// The artifact type the referrers API reports: its own, else its config's media type.
    pub(crate) fn reported_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config_type.clone())
    }
}

/// The referrers of `roots`, the referrers of those, and so on: what travels with an image whose
/// manifests are `roots`, and what stays alive while they are stored. Breadth first, each
/// subject's referrers in digest order, each once, so that a save is the same every time.
#[cfg(test)]
pub(crate) fn travelling<'a>(
    referrers: &'a BTreeMap<Digest, ReferrerRecord>,
    roots: &[&Digest],
) -> Vec<&'a ReferrerRecord> {
    let mut by_subject: BTreeMap<&Digest, Vec<&ReferrerRecord>> = BTreeMap::new();
    for r in referrers.values() {
        by_subject.entry(&r.subject).or_default().push(r);
    }
    let mut seen: std::collections::HashSet<&Digest> = roots.iter().copied().collect();
    let mut out: Vec<&ReferrerRecord> = Vec::new();
    let mut next = 0;
    let mut subjects: Vec<&Digest> = roots.to_vec();
    while let Some(subject) = subjects.get(next).copied() {
        next += 1;
        for r in by_subject.get(subject).into_iter().flatten() {
            if seen.insert(&r.digest) {
                out.push(r);
                subjects.push(&r.digest);
            }
        }
    }
    out
}

/// The image index the distribution spec's referrers endpoint answers with: one descriptor per
/// referrer, keeping those of `artifact_type` when one is given.
pub(crate) fn index_json(referrers: &[ReferrerRecord], artifact_type: Option<&str>) -> Vec<u8> {
    let manifests: Vec<Value> = referrers
        .iter()
        .filter(|r| artifact_type.is_none_or(|t| r.artifact_type.as_deref() == Some(t)))
        .map(ReferrerRecord::descriptor)
        .collect();
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    serde_json::to_vec(&index).expect("index serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn referrer(n: u8, subject: u8, artifact_type: &str) -> ReferrerRecord {
        ReferrerRecord {
            digest: d(n),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 100 + u64::from(n),
            artifact_type: Some(artifact_type.into()),
            annotations: BTreeMap::from([("n".into(), n.to_string())]),
            subject: d(subject),
            blobs: vec![d(n)],
        }
    }

    fn map(rs: &[ReferrerRecord]) -> BTreeMap<Digest, ReferrerRecord> {
        rs.iter().map(|r| (r.digest.clone(), r.clone())).collect()
    }

    #[test]
    fn a_subject_makes_a_referrer_and_a_foreign_config_or_artifact_type_an_artifact() {
        let empty = "application/vnd.oci.empty.v1+json";
        let image_config = "application/vnd.oci.image.config.v1+json";
        let top = |artifact_type: Option<&str>, config: Option<&str>, subject: Option<u8>| Top {
            artifact_type: artifact_type.map(str::to_owned),
            config_type: config.map(str::to_owned),
            subject: subject.map(d),
            annotations: BTreeMap::new(),
        };
        assert_eq!(top(None, Some(image_config), None).kind(true), Kind::Image);
        let docker = "application/vnd.docker.container.image.v1+json";
        assert_eq!(top(None, Some(docker), None).kind(true), Kind::Image);
        // An index holding images is one; an index of no image is not.
        assert_eq!(top(None, None, None).kind(true), Kind::Image);
        assert_eq!(top(None, None, None).kind(false), Kind::Artifact);
        assert_eq!(top(None, Some(empty), None).kind(false), Kind::Artifact);
        let spdx = Some("application/spdx+json");
        assert_eq!(
            top(spdx, Some(image_config), None).kind(true),
            Kind::Artifact
        );
        assert_eq!(
            top(None, Some(image_config), Some(1)).kind(true),
            Kind::Referrer(d(1))
        );
        let sbom = top(spdx, Some(empty), Some(2));
        assert_eq!(sbom.kind(false), Kind::Referrer(d(2)));
        assert_eq!(sbom.reported_type().as_deref(), spdx);
        // Without an artifactType, the referrers API reports the config's media type.
        let sig = top(None, Some(empty), Some(1));
        assert_eq!(sig.reported_type().as_deref(), Some(empty));
    }

    #[test]
    fn referrers_travel_transitively_breadth_first_in_digest_order() {
        // 10 and 11 describe image manifest 1; 12 describes 11; 13 describes a manifest 2 inside
        // the image; 14 describes something else.
        let rs = map(&[
            referrer(12, 11, "sig"),
            referrer(11, 1, "sbom"),
            referrer(10, 1, "sig"),
            referrer(13, 2, "att"),
            referrer(14, 9, "sig"),
        ]);
        let got: Vec<Digest> = travelling(&rs, &[&d(1), &d(2)])
            .into_iter()
            .map(|r| r.digest.clone())
            .collect();
        let mut direct = [d(10), d(11)];
        direct.sort();
        assert_eq!(got[..2], direct[..]);
        assert_eq!(got[2..], [d(13), d(12)]);
        assert!(travelling(&rs, &[]).is_empty());
    }

    #[test]
    fn the_referrers_index_lists_descriptors_filtered_by_artifact_type() {
        let rs = [referrer(11, 1, "sbom"), referrer(12, 1, "sig")];
        let all: Value = serde_json::from_slice(&index_json(&rs, None)).unwrap();
        assert_eq!(all["mediaType"], OCI_INDEX);
        assert_eq!(all["schemaVersion"], 2);
        assert_eq!(all["manifests"].as_array().unwrap().len(), 2);
        assert_eq!(
            all["manifests"][0],
            json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": d(11).to_string(),
                "size": 111,
                "artifactType": "sbom",
                "annotations": {"n": "11"},
            })
        );
        let sigs: Value = serde_json::from_slice(&index_json(&rs, Some("sig"))).unwrap();
        assert_eq!(sigs["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(sigs["manifests"][0]["digest"], d(12).to_string());
        let none: Value = serde_json::from_slice(&index_json(&rs, Some("x"))).unwrap();
        assert_eq!(none["manifests"], json!([]));
    }
}
