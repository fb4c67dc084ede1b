//! Import: one pass over an OCI image layout or docker-archive tar stream into staged blobs, then
//! resolution into images and names. Nothing here touches the metadata; the store commits.

mod archive;
mod docker;
mod entry;
mod file;
mod gate;
mod head;
mod input;
mod naming;
mod oci;

pub(crate) use archive::{Ingested, ingest};
pub(crate) use input::Input;
pub use input::Piece;
pub(crate) use naming::{assign, refuse_naming_referrers};
pub(crate) use oci::image;

use std::collections::HashSet;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::referrer::ReferrerRecord;

/// An image found in an archive, with every name the archive gave it.
#[derive(Clone, Debug)]
pub(crate) struct Candidate {
    pub(crate) record: ImageRecord,
    /// `org.opencontainers.image.ref.name` (or the pre-1.0 key) values.
    pub(crate) ref_names: Vec<String>,
    pub(crate) containerd_name: Option<String>,
    /// docker-archive `RepoTags`.
    pub(crate) repo_tags: Vec<String>,
}

/// What one top-level manifest or index is.
#[derive(Clone, Debug)]
pub(crate) enum Found {
    /// An image, or an artifact that only a name keeps (`record.artifact`).
    Image(Candidate),
    /// A referrer, with the ref names index.json gave it (which name nothing).
    Referrer(ReferrerRecord, Vec<String>),
}

/// What an archive holds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resolved {
    pub(crate) images: Vec<Candidate>,
    pub(crate) referrers: Vec<ReferrerRecord>,
    /// Each ref name index.json gives a referrer, with the referrer's digest.
    pub(crate) referrer_names: Vec<(String, Digest)>,
    /// Every manifest and index the archive lists, of images and referrers alike: the subjects
    /// that arrive with it.
    pub(crate) documents: HashSet<Digest>,
}

/// Turns what one pass found into images and referrers: an OCI index when there is one (docker
/// save since v25 and ctr export carry both; the index wins and `manifest.json` only adds names),
/// else docker-archive's `manifest.json`, which holds images only.
pub(crate) async fn resolve(ingested: &mut Ingested) -> Result<Resolved> {
    match (ingested.index_json.take(), ingested.manifest_json.take()) {
        (Some(_), None) if !ingested.has_layout_file => Err(Error::invalid(
            "archive has index.json but no oci-layout file, which an OCI image layout must have",
        )),
        (Some(index), manifest) => {
            let mut found = oci::resolve(ingested, &index).await?;
            if let Some(manifest) = manifest {
                let tags = docker::repo_tags(ingested, &manifest)?;
                for c in &mut found.images {
                    if let Some((_, t)) = tags.iter().find(|(config, _)| *config == c.record.id) {
                        c.repo_tags = t.clone();
                    }
                }
            }
            Ok(found)
        }
        (None, Some(manifest)) => {
            let images = docker::resolve(ingested, &manifest).await?;
            Ok(Resolved {
                documents: images.iter().map(|c| c.record.digest.clone()).collect(),
                images,
                ..Resolved::default()
            })
        }
        (None, None) => Err(Error::invalid(
            "archive holds neither index.json (OCI layout) nor manifest.json (docker-archive)",
        )),
    }
}
