//! Loads: an archive's images and referrers, committed together or not at all.

use std::collections::HashSet;

use futures_util::Stream;
use tokio::io::AsyncRead;
use tokio_util::sync::CancellationToken;

use super::Images;
use crate::blob::Threads;
use crate::digest::Digest;
use crate::error::Result;
use crate::image::ImageRecord;
use crate::import::{self, Ingested, Input, Piece};
use crate::ops::{self, Arriving};
use crate::progress::Progress;
use crate::reference::ImageName;

/// An image that a load committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// The names it was given; empty when the archive gave it none.
    pub names: Vec<ImageName>,
    /// The image ID.
    pub id: Digest,
    /// Top-level manifest or index digest.
    pub digest: Digest,
}

/// What a load committed, and how much of it the store held before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The images, in archive order.
    pub images: Vec<LoadedImage>,
    /// The blobs the loaded images and referrers use, each once.
    pub blobs: u32,
    /// Of those, the ones the store already held: their bytes were neither hashed nor written.
    pub already_stored: u32,
    /// Their size.
    pub already_stored_bytes: u64,
}

impl Images<'_> {
    /// Imports an OCI image layout or docker-archive tar stream (optionally gzip or zstd
    /// compressed). `map` picks images by ref name and names them (`NAME:TAG=REFNAME`). All of the
    /// load's images and tags are committed together, or none.
    pub async fn load<R>(self, reader: R, map: &[(ImageName, String)]) -> Result<Loaded>
    where
        R: AsyncRead + Send + 'static,
    {
        let result = self.load_pinned(Input::plain(reader), map).await;
        self.0.collect_deferred().await;
        result
    }

    /// [`Images::load`] from pieces, in which the client may have left out the bodies of
    /// `blobs/sha256/<hex>` entries the store holds. A left-out body anywhere else refuses the
    /// load; one whose blob is no longer stored is [`crate::Error::LeftOutBlobGone`].
    pub async fn load_pieces<S>(self, pieces: S, map: &[(ImageName, String)]) -> Result<Loaded>
    where
        S: Stream<Item = std::io::Result<Piece>> + Send + Unpin + 'static,
    {
        let result = self.load_pinned(Input::pieces(pieces), map).await;
        self.0.collect_deferred().await;
        result
    }

    /// [`Images::load`] from a file a client handed over, the archive starting at byte `start`:
    /// the same import, with each kept body copied by the kernel from the file and hashed from
    /// the copy. `progress` counts the archive's bytes as they are done. Only a regular file
    /// open for reading is accepted; its offset is left alone. Cancelling `stop` ends the load
    /// with [`crate::Error::Cancelled`], which returns only once its copies have stopped (each
    /// within one 8 MiB step) and its staging is gone.
    pub async fn load_file(
        self,
        file: std::fs::File,
        start: u64,
        map: &[(ImageName, String)],
        progress: &Progress,
        stop: CancellationToken,
    ) -> Result<Loaded> {
        let threads = Threads::new(stop);
        let input = Input::file(file, start, progress.clone(), threads.clone())?;
        let result = threads.bound(self.load_pinned(input, map)).await;
        self.0.collect_deferred().await;
        result
    }

    /// The load proper; its pins are released when it returns.
    async fn load_pinned(self, input: Input, map: &[(ImageName, String)]) -> Result<Loaded> {
        let inner = &self.0.inner;
        let mut ingested = import::ingest(&inner.blobs, input).await?;
        let found = import::resolve(&mut ingested).await?;
        import::refuse_naming_referrers(&found.images, &found.referrer_names, map)?;
        let named = import::assign(found.images, map)?;
        let images: Vec<(ImageRecord, Vec<ImageName>)> =
            named.into_iter().map(|(c, n)| (c.record, n)).collect();
        let blobs_of_images = images.iter().flat_map(|(r, _)| r.blobs.iter());
        // Every referrer's blobs are synced; only those of the referrers kept are published.
        let synced: Vec<Digest> = blobs_of_images
            .chain(found.referrers.iter().flat_map(|r| r.blobs.iter()))
            .cloned()
            .collect();
        ingested.staging.sync(&synced).await?;
        let arriving = Arriving {
            referrers: &found.referrers,
            archive: Some(&found.documents),
        };
        let guard = inner.commit.lock().await;
        let changes = ops::plan_load(&inner.meta.read()?, &images, arriving)?;
        let needed: Vec<Digest> = images
            .iter()
            .flat_map(|(r, _)| r.blobs.iter())
            .chain(changes.put_referrers.iter().flat_map(|r| r.blobs.iter()))
            .cloned()
            .collect();
        let counts = Counts::of(&needed, &ingested);
        let committed = inner
            .blobs
            .publish(&ingested.staging, &needed)
            .and_then(|()| inner.meta.apply(&changes));
        // Blobs published for a commit that failed are no one's: looked at once the pins go.
        let freed = committed.inspect_err(|_| self.0.defer(needed.iter().cloned()))?;
        drop(guard);
        self.0.collect_committed(&freed).await;
        for (rec, names) in &images {
            let names: Vec<String> = names.iter().map(ToString::to_string).collect();
            tracing::info!(digest = %rec.digest, id = %rec.id, names = ?names, "loaded image");
        }
        for r in &changes.put_referrers {
            tracing::info!(digest = %r.digest, subject = %r.subject, "loaded referrer");
        }
        let images = images
            .into_iter()
            .map(|(r, names)| LoadedImage {
                names,
                id: r.id,
                digest: r.digest,
            })
            .collect();
        Ok(counts.loaded(images))
    }
}

/// The blobs a load needed, each once, and those it found stored (pinned, never staged).
struct Counts {
    blobs: u32,
    already_stored: u32,
    already_stored_bytes: u64,
}

impl Counts {
    fn of(needed: &[Digest], ingested: &Ingested) -> Self {
        let unique: HashSet<&Digest> = needed.iter().collect();
        let stored: Vec<&Digest> = unique
            .iter()
            .copied()
            .filter(|d| !ingested.staging.contains(d))
            .collect();
        Counts {
            blobs: unique.len() as u32,
            already_stored: stored.len() as u32,
            already_stored_bytes: stored
                .iter()
                .filter_map(|d| ingested.present.get(*d))
                .map(|info| info.size)
                .sum(),
        }
    }

    fn loaded(self, images: Vec<LoadedImage>) -> Loaded {
        Loaded {
            images,
            blobs: self.blobs,
            already_stored: self.already_stored,
            already_stored_bytes: self.already_stored_bytes,
        }
    }
}
