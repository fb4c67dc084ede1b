//! Images and referrers made from blobs the store already holds (written through the content
//! API, as registry pulls write them): the graph is walked and checked exactly as a load checks
//! an archive's, then committed in one transaction.

use bytes::Bytes;
use futures_util::FutureExt;

use super::Images;
use super::load::LoadedImage;
use crate::blob::{Blobs, Lease};
use crate::digest::Digest;
use crate::document::{self, BlobRef, own_media_type};
use crate::error::{Error, Result};
use crate::image::{ImageRecord, is_index, is_manifest};
use crate::import::{self, Found};
use crate::limits::MAX_JSON;
use crate::ops::{self, Arriving};
use crate::reference::ImageName;
use crate::referrer::ReferrerRecord;
use crate::walk::Source;

/// What [`Images::create_image`] made of a manifest or index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// An image, or an artifact kept under the names given.
    Image(LoadedImage),
    /// A referrer (its manifest has a `subject`) of a manifest the store holds.
    Referrer(ReferrerRecord),
}

/// The store's blobs as a walk sees them. Each blob is pinned first and looked at second, and
/// stays pinned until the image is committed, so no collection can slip in between. Its methods
/// block on files: the walk runs off the async threads.
struct Stored {
    blobs: Blobs,
    lease: Lease,
}

impl Stored {
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

/// Answers at once: its files are read in place, the walk being off the async threads.
impl Source for Stored {
    type Error = Error;
    const WHERE: &'static str = "stored";

    async fn size(&mut self, blob: &BlobRef) -> Result<Option<u64>> {
        Stored::size(self, &blob.digest)
    }

    async fn json(&mut self, digest: &Digest) -> Result<Bytes> {
        self.read_json(digest).map(Bytes::from)
    }
}

impl Images<'_> {
    /// Creates, or names, the image whose top-level manifest or index `digest` the store holds
    /// with its whole graph, checked as a load checks an archive. `media_type` `None` takes the
    /// blob's own `mediaType`. Names move from wherever they pointed, as on load; no names leave
    /// the image untagged. All of it is one metadata transaction, or nothing.
    ///
    /// A manifest with a `subject` becomes a referrer of it, as [`Images::create_referrer`]
    /// makes one; it takes no names. An artifact that describes nothing is kept only under a name.
    pub async fn create_image(
        self,
        digest: &Digest,
        media_type: Option<&str>,
        names: &[ImageName],
    ) -> Result<Created> {
        self.creating(async {
            let (found, pins) = self.walk_stored(digest, media_type).await?;
            match found {
                Found::Referrer(r, _) if !names.is_empty() => Err(Error::InvalidArgument(format!(
                    "{digest} is a referrer of {}: it takes no names and lives with its subject",
                    r.subject
                ))),
                Found::Referrer(r, _) => {
                    self.commit(pins, &[], std::slice::from_ref(&r)).await?;
                    Ok(Created::Referrer(r))
                }
                Found::Image(c) if c.record.artifact && names.is_empty() => {
                    Err(Error::InvalidArgument(format!(
                        "{digest} is an artifact that describes no image (it has no subject): \
                         it is kept only under a name"
                    )))
                }
                Found::Image(c) => {
                    let image = [(c.record, names.to_vec())];
                    self.commit(pins, &image, &[]).await?;
                    let [(record, names)] = image;
                    Ok(Created::Image(LoadedImage {
                        names,
                        id: record.id,
                        digest: record.digest,
                    }))
                }
            }
        })
        .await
    }

    /// Stores the referrer whose manifest (or index) `digest` the store holds with every blob it
    /// references, as a registry pull of a signature or an SBOM does after writing its blobs
    /// through the content API. Its subject must be stored ([`Error::Conflict`] otherwise); a
    /// manifest without a `subject` is [`Error::InvalidArgument`]. The referrer then lives, and
    /// travels in saves, with its subject.
    pub async fn create_referrer(
        self,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<ReferrerRecord> {
        self.creating(async {
            match self.walk_stored(digest, media_type).await? {
                (Found::Referrer(r, _), pins) => {
                    self.commit(pins, &[], std::slice::from_ref(&r)).await?;
                    Ok(r)
                }
                (Found::Image(_), _) => Err(Error::InvalidArgument(format!(
                    "{digest} has no subject: it is not a referrer"
                ))),
            }
        })
        .await
    }

    /// Runs a create, whose pins are dropped by the time it ends, then the collection its pins
    /// deferred.
    async fn creating<T>(self, create: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let result = create.await;
        self.0.collect_deferred().await;
        result.map_err(|e| match e {
            // The walk speaks of archives; here the client's request is what is wrong.
            Error::InvalidArchive(m) => Error::InvalidArgument(m),
            e => e,
        })
    }

    /// Walks and checks the graph under `digest`, returning what it found with every blob of it
    /// pinned.
    async fn walk_stored(
        self,
        digest: &Digest,
        media_type: Option<&str>,
    ) -> Result<(Found, Stored)> {
        let mut source = Stored {
            blobs: self.0.inner.blobs.clone(),
            lease: self.0.inner.blobs.lease(),
        };
        // The walk reads up to 4 MiB per JSON document and looks at every blob of the graph.
        let (top, media_type) = (digest.clone(), media_type.map(str::to_owned));
        let (source, found) = tokio::task::spawn_blocking(move || {
            let found = walk(&mut source, &top, media_type);
            (source, found)
        })
        .await
        .expect("image walk thread panicked");
        Ok((found?, source))
    }

    /// Commits what a create found in one transaction, then drops its pins and collects what
    /// the change left unreferenced.
    async fn commit(
        self,
        pins: Stored,
        images: &[(ImageRecord, Vec<ImageName>)],
        referrers: &[ReferrerRecord],
    ) -> Result<()> {
        let inner = &self.0.inner;
        let arriving = Arriving {
            referrers,
            archive: None,
        };
        let freed = {
            let _guard = inner.commit.lock().await;
            let changes = ops::plan_load(&inner.meta.read()?, images, arriving)?;
            inner.meta.apply(&changes)?
        };
        drop(pins);
        self.0.collect_committed(&freed).await;
        for r in referrers {
            tracing::info!(digest = %r.digest, subject = %r.subject, "created referrer");
        }
        for (record, names) in images {
            let shown: Vec<String> = names.iter().map(ToString::to_string).collect();
            tracing::info!(digest = %record.digest, id = %record.id, names = ?shown, "created image");
        }
        Ok(())
    }
}

/// Checks the graph under `digest` as a load checks an archive's, pinning every blob in it.
fn walk(source: &mut Stored, digest: &Digest, media_type: Option<String>) -> Result<Found> {
    let size = source
        .size(digest)?
        .ok_or_else(|| Error::InvalidArgument(format!("{digest} is not stored")))?;
    let media_type = match media_type {
        Some(m) => m,
        None => own_type(source, digest)?,
    };
    if !is_index(&media_type) && !is_manifest(&media_type) {
        return Err(Error::InvalidArgument(format!(
            "media type {media_type:?} is neither an image manifest nor an image index"
        )));
    }
    let top = BlobRef {
        digest: digest.clone(),
        size,
    };
    let desc = document::descriptor(&top, &media_type)?;
    import::image(source, &desc)
        .now_or_never()
        .expect("a stored source answers at once")
}

fn own_type(source: &Stored, digest: &Digest) -> Result<String> {
    own_media_type(digest, &source.read_json(digest)?)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "{digest} carries no mediaType of its own; name the media type in the request"
        ))
    })
}
