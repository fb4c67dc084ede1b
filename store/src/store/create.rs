//! Images made from blobs the store already holds (written through the content API): the graph
//! is walked and checked exactly as a load checks an archive's, then named in one transaction.

use oci_spec::image::{DescriptorBuilder, MediaType};

use super::{LoadedImage, Store};
use crate::blob::{Blobs, Lease};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{ImageRecord, is_index, is_manifest};
use crate::import::{self, Source};
use crate::limits::MAX_JSON;
use crate::ops;
use crate::reference::ImageName;

/// The store's blobs as a walk sees them. Each blob is pinned first and looked at second, and
/// stays pinned until the image is committed, so no collection can slip in between. Its methods
/// block on files: the walk runs off the async threads.
struct Stored {
    blobs: Blobs,
    lease: Lease,
}

impl Source for Stored {
    const WHERE: &'static str = "stored";

    fn size(&mut self, digest: &Digest) -> Result<Option<u64>> {
        if !self.lease.pin(&self.blobs, digest) {
            return Ok(None);
        }
        self.blobs.size(digest)
    }

    fn read_json(&self, digest: &Digest) -> Result<Vec<u8>> {
        // A client wrote these bytes: too large is its mistake, not damage to the store.
        match self.blobs.size(digest)? {
            Some(size) if size > MAX_JSON => Err(Error::invalid(format!(
                "blob {digest} is {size} bytes, over the {MAX_JSON}-byte limit for JSON documents"
            ))),
            _ => self.blobs.read_json_now(digest),
        }
    }
}

/// The `mediaType` field a manifest or index may carry.
#[derive(serde::Deserialize)]
struct OwnType {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
}

impl Store {
    /// Creates, or names, the image whose top-level manifest or index `digest` the store holds
    /// with its whole graph, checked as a load checks an archive. `media_type` `None` takes the
    /// blob's own `mediaType`. Names move from wherever they pointed, as on load; no names leave
    /// the image untagged. All of it is one metadata transaction, or nothing.
    pub async fn create_image(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
        names: &[ImageName],
    ) -> Result<LoadedImage> {
        let result = self.create_pinned(digest, media_type, names).await;
        self.collect_deferred().await?;
        result.map_err(|e| match e {
            // The walk speaks of archives; here the client's request is what is wrong.
            Error::InvalidArchive(m) => Error::InvalidArgument(m),
            e => e,
        })
    }

    async fn create_pinned(
        &self,
        digest: &Digest,
        media_type: Option<&str>,
        names: &[ImageName],
    ) -> Result<LoadedImage> {
        let mut source = Stored {
            blobs: self.inner.blobs.clone(),
            lease: self.inner.blobs.lease(),
        };
        // The walk reads up to 4 MiB per JSON document and looks at every blob of the graph.
        let (top, media_type) = (digest.clone(), media_type.map(str::to_owned));
        let (source, record) = tokio::task::spawn_blocking(move || {
            let record = walk(&mut source, &top, media_type);
            (source, record)
        })
        .await
        .expect("image walk thread panicked");
        let record = record?;
        let images = [(record, names.to_vec())];
        let changes = {
            let _guard = self.inner.commit.lock().await;
            let changes = ops::plan_load(&self.inner.meta.snapshot()?, &images);
            self.inner.meta.apply(&changes)?;
            changes
        };
        drop(source);
        if !changes.delete_images.is_empty() {
            self.gc().await?;
        }
        let [(record, names)] = images;
        let shown: Vec<String> = names.iter().map(ToString::to_string).collect();
        tracing::info!(digest = %record.digest, id = %record.id, names = ?shown, "created image");
        Ok(LoadedImage {
            names,
            id: record.id,
            digest: record.digest,
        })
    }
}

/// Checks the graph under `digest` as a load checks an archive's, pinning every blob in it.
fn walk(source: &mut Stored, digest: &Digest, media_type: Option<String>) -> Result<ImageRecord> {
    let size = source
        .size(digest)?
        .ok_or_else(|| Error::InvalidArgument(format!("{digest} is not stored")))?;
    let media_type = match media_type {
        Some(m) => m,
        None => own_media_type(source, digest)?,
    };
    if !is_index(&media_type) && !is_manifest(&media_type) {
        return Err(Error::InvalidArgument(format!(
            "media type {media_type:?} is neither an image manifest nor an image index"
        )));
    }
    let desc = DescriptorBuilder::default()
        .media_type(MediaType::from(media_type.as_str()))
        .digest(oci_spec::image::Digest::from(digest))
        .size(size)
        .build()
        .map_err(|e| Error::InvalidArgument(format!("descriptor of {digest}: {e}")))?;
    Ok(import::image(source, &desc)?.record)
}

fn own_media_type(source: &Stored, digest: &Digest) -> Result<String> {
    let own: OwnType = serde_json::from_slice(&source.read_json(digest)?)
        .map_err(|e| Error::InvalidArgument(format!("{digest} is not a JSON document: {e}")))?;
    own.media_type.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{digest} carries no mediaType of its own; name the media type in the request"
        ))
    })
}
