//! Import: one pass over an OCI image layout or docker-archive tar stream into staged blobs, then
//! resolution into images and names. Nothing here touches the metadata; the store commits.

mod archive;
mod docker;
mod entry;
mod file;
mod gate;
mod input;
mod naming;
mod oci;

pub(crate) use archive::{Ingested, ingest};
pub(crate) use input::Input;
pub use input::Piece;
pub(crate) use naming::assign;
pub(crate) use oci::{Source, image};

use crate::error::{Error, Result};
use crate::image::ImageRecord;

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

/// Turns what one pass found into images: an OCI index when there is one (docker save since v25
/// and ctr export carry both; the index wins and `manifest.json` only adds names), else
/// docker-archive's `manifest.json`.
pub(crate) async fn resolve(ingested: &mut Ingested) -> Result<Vec<Candidate>> {
    match (ingested.index_json.take(), ingested.manifest_json.take()) {
        (Some(_), None) if !ingested.has_layout_file => Err(Error::invalid(
            "archive has index.json but no oci-layout file, which an OCI image layout must have",
        )),
        (Some(index), manifest) => {
            let mut found = oci::resolve(ingested, &index)?;
            if let Some(manifest) = manifest {
                let tags = docker::repo_tags(ingested, &manifest)?;
                for c in &mut found {
                    if let Some((_, t)) = tags.iter().find(|(config, _)| *config == c.record.id) {
                        c.repo_tags = t.clone();
                    }
                }
            }
            Ok(found)
        }
        (None, Some(manifest)) => docker::resolve(ingested, &manifest).await,
        (None, None) => Err(Error::invalid(
            "archive holds neither index.json (OCI layout) nor manifest.json (docker-archive)",
        )),
    }
}
