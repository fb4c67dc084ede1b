//! Saves: resolve the images, pin their blobs, then stream the archive.

use tokio::io::AsyncWrite;
use tokio_util::sync::CancellationToken;

use super::{Images, Store};
use crate::blob::{Lease, Threads};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::export::{self, Direct, Item, Out, Streamed};
use crate::image::Platform;
use crate::meta::{Reader, View};
use crate::ops::{self, Target};
use crate::progress::Progress;
use crate::referrer::{ReferrerRecord, Referrers};

/// What to save and under which name.
#[derive(Clone, Debug)]
pub struct SaveItem {
    /// A name, ID or ID prefix.
    pub image: String,
    /// The name the archive gives it (`-r IMAGE=REFNAME`).
    pub ref_name: Option<String>,
}

/// Archive format, with the options that format takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCI image layout: every image whole, a multi-platform index with all its platforms.
    Oci {
        /// Whether every referrer of the images (signatures, SBOMs, …) goes too, transitively,
        /// listed in index.json without a name.
        referrers: Referrers,
    },
    /// docker-archive (`docker save`): one manifest per image.
    Docker {
        /// Which manifest of a multi-platform image to write; `None`: the host's.
        platform: Option<Platform>,
    },
}

/// A save whose images are resolved and whose blobs are pinned until it is dropped.
pub struct SaveJob {
    store: Store,
    items: Vec<Item>,
    referrers: Vec<ReferrerRecord>,
    format: Format,
    lease: Lease,
}

impl SaveJob {
    /// The top-level digest of each image the save was asked for, in the order asked.
    pub fn digests(&self) -> Vec<Digest> {
        self.items.iter().map(|i| i.record.digest.clone()).collect()
    }

    /// Streams the archive to `writer`.
    pub async fn write<W: AsyncWrite + Unpin + Send>(self, writer: W) -> Result<W> {
        self.write_to(Streamed(writer)).await.map(|s| s.0)
    }

    /// Writes the archive into a file a client handed over, from offset 0: blob bodies are
    /// copied file to file by the kernel, the file is cut to the archive's length and synced
    /// once. The bytes are those [`SaveJob::write`] streams. `progress` counts the bytes written.
    /// Only a regular file open for writing, not for appending, is accepted; a failure writing
    /// it is [`Error::FileUnwritable`]. Cancelling `stop` ends the save with
    /// [`Error::Cancelled`], which returns only once its copies have stopped.
    pub async fn write_file(
        self,
        file: std::fs::File,
        progress: &Progress,
        stop: CancellationToken,
    ) -> Result<u64> {
        let store = self.store.clone();
        let threads = Threads::new(stop);
        let out = Direct::open(file, progress.clone(), threads.clone())?;
        let written = threads
            .bound(async move { self.write_to(out).await?.finish().await })
            .await
            .map_err(export::blame);
        if matches!(written, Err(Error::Cancelled)) {
            // Dropped before it could collect what its pins held back.
            store.collect_deferred().await;
        }
        written
    }

    async fn write_to<W: Out>(self, writer: W) -> Result<W> {
        let blobs = &self.store.inner.blobs;
        let result = match &self.format {
            Format::Oci { .. } => {
                export::oci::write(blobs, &self.items, &self.referrers, writer).await
            }
            Format::Docker { platform } => {
                let platform = platform.clone().unwrap_or_else(Platform::host);
                export::docker::write(blobs, &self.items, &platform, writer).await
            }
        };
        let store = self.store.clone();
        drop(self);
        store.collect_deferred().await;
        result
    }
}

impl Images<'_> {
    /// Resolves the images to save and pins their blobs, so that what is missing is reported
    /// before a byte is written and nothing is collected while the archive streams.
    pub async fn prepare_save(self, items: &[SaveItem], format: Format) -> Result<SaveJob> {
        let travel = match format {
            Format::Oci { referrers } => referrers,
            Format::Docker { .. } => Referrers::Omit,
        };
        let inner = &self.0.inner;
        let _guard = inner.commit.lock().await;
        let read = inner.meta.read()?;
        let mut job = SaveJob {
            store: self.0.clone(),
            items: Vec::new(),
            referrers: Vec::new(),
            format,
            lease: inner.blobs.lease(),
        };
        for item in items {
            job.pin(&read, item, travel)?;
        }
        job.items.iter().for_each(|i| self.used(&i.record.digest));
        Ok(job)
    }

    /// Writes the images to `writer` as one archive: [`Images::prepare_save`], then
    /// [`SaveJob::write`].
    pub async fn save<W>(self, items: &[SaveItem], format: Format, writer: W) -> Result<W>
    where
        W: AsyncWrite + Unpin + Send,
    {
        self.prepare_save(items, format).await?.write(writer).await
    }
}

impl SaveJob {
    /// Adds `item` to the save with its blobs pinned, and those of its referrers that no item
    /// before it brought. The caller holds the commit lock.
    fn pin(&mut self, read: &Reader, item: &SaveItem, travel: Referrers) -> Result<()> {
        let (name, digest) = match ops::lookup(read, &item.image)? {
            Target::Tag(n, d) => (Some(n), d),
            Target::Image(d) => (read.names_of(&d)?.into_iter().next(), d),
        };
        let record = read.record(&digest)?;
        let mut with = Vec::new();
        if travel == Referrers::Include {
            with = read.travelling(record.subjects())?;
            with.retain(|r| !self.referrers.iter().any(|t| t.digest == r.digest));
        }
        let blobs = &self.store.inner.blobs;
        for b in record
            .blobs
            .iter()
            .chain(with.iter().flat_map(|r| &r.blobs))
        {
            if !self.lease.pin(blobs, b) {
                return Err(Error::Corrupt(format!(
                    "blob {b} of {} is missing from the store",
                    item.image
                )));
            }
        }
        self.referrers.extend(with);
        let ref_name = item
            .ref_name
            .clone()
            .or_else(|| name.as_ref().map(ToString::to_string));
        self.items.push(Item {
            record,
            ref_name,
            name,
        });
        Ok(())
    }
}
