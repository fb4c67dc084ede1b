//! Referrers as the API shows them: the distribution spec's referrers index of one subject, and
//! those that travel with an image.

use super::Images;
use crate::blob::Blobs;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::referrer::index_json;

/// The `config` field of a manifest, which is all an artifact's inspection needs of it.
#[derive(serde::Deserialize)]
struct WithConfig {
    config: Option<oci_spec::image::Descriptor>,
}

impl Images<'_> {
    /// The referrers of the manifest or index `subject` (an image's, one inside an image's index,
    /// or a referrer's), as the distribution spec's referrers endpoint answers: the bytes of an
    /// OCI image index with a descriptor of each, those of `artifact_type` when one is given.
    /// [`Error::NotFound`] when the store holds no such manifest; an empty index when it has no
    /// referrers.
    pub fn referrers_index(self, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<u8>> {
        let referrers = self
            .0
            .inner
            .meta
            .referrers_of(subject)?
            .ok_or_else(|| Error::NotFound(format!("no stored manifest {subject}")))?;
        Ok(index_json(&referrers, artifact_type))
    }
}

/// An artifact's config is its manifest's, whatever its type (its ID is its own digest);
/// an index has none.
pub(super) async fn artifact_config(
    blobs: &Blobs,
    digest: &Digest,
    manifest: &[u8],
) -> Result<Vec<u8>> {
    let parsed: WithConfig = serde_json::from_slice(manifest)
        .map_err(|e| Error::Corrupt(format!("stored manifest {digest} does not parse: {e}")))?;
    match parsed.config {
        Some(config) => {
            let config = Digest::try_from(config.digest())?;
            blobs.read_json(&config).await
        }
        None => Ok(b"null".to_vec()),
    }
}
