//! The [`Store`] facade: one root directory, its blobs and its metadata.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

mod check;
mod content;
mod create;
mod referrers;
mod save;

use futures_util::Stream;
use tokio::io::AsyncRead;
use tokio::sync::Mutex;

pub use check::CheckReport;
pub use content::{Began, ContentWrite, WriteStart, Written};
pub use create::Created;
pub use save::{Format, SaveItem, SaveJob};

use crate::blob::Blobs;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::import::{self, Input, Piece};
use crate::meta::{Meta, Snapshot};
use crate::ops::{self, Arriving, Removed, Target};
use crate::progress::Progress;
use crate::reference::ImageName;
use crate::referrer::ReferrerRecord;

/// An image store rooted at one directory. Cheap to clone; all clones share the same state.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    blobs: Blobs,
    meta: Meta,
    /// Serialises metadata writes and collection, so a collection never sees half a commit.
    commit: Mutex<()>,
    /// A collection left unreferenced blobs because a load or save had them pinned; the next
    /// load or save to finish collects again.
    gc_deferred: AtomicBool,
    content: content::Content,
}

/// An image as `images` lists it: one row per tag, or one `<none>` row for an untagged image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// The tag, or `None` for an untagged image.
    pub name: Option<ImageName>,
    /// The image ID: config digest.
    pub id: Digest,
    /// Top-level manifest or index digest.
    pub digest: Digest,
    /// `created` from the config.
    pub created: Option<String>,
    /// Bytes of all blobs the image references.
    pub size: u64,
    /// `os/arch[/variant]` of each manifest.
    pub platforms: Vec<String>,
}

impl ImageSummary {
    /// The row for `record` under `name`.
    pub fn new(record: &ImageRecord, name: Option<ImageName>) -> Self {
        ImageSummary {
            name,
            id: record.id.clone(),
            digest: record.digest.clone(),
            created: record.created.clone(),
            size: record.total_size,
            platforms: record.platforms.clone(),
        }
    }
}

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

/// An image's manifest and config, as stored.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The stored record.
    pub record: ImageRecord,
    /// Tags pointing at it.
    pub names: Vec<ImageName>,
    /// The top-level manifest or index bytes.
    pub manifest: Vec<u8>,
    /// The config bytes (of the image ID; of its manifest's config for an artifact, `null` for
    /// an artifact index).
    pub config: Vec<u8>,
    /// Every referrer that travels with it: of its manifests, and of those referrers, in turn.
    pub referrers: Vec<ReferrerRecord>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, takes its lock, drops what a crash left
    /// behind and collects unreferenced blobs.
    pub async fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        create_private_dir(&root)?;
        // The database lock comes first: only its holder may clean ingest/.
        let meta = Meta::open(&root.join("meta.redb"))?;
        let blobs = Blobs::open(&root)?;
        let content = content::Content::open(&blobs, &meta)?;
        let store = Store {
            inner: Arc::new(Inner {
                blobs,
                meta,
                commit: Mutex::new(()),
                gc_deferred: AtomicBool::new(false),
                content,
            }),
        };
        store.gc().await?;
        Ok(store)
    }

    /// Imports an OCI image layout or docker-archive tar stream (optionally gzip or zstd
    /// compressed). `map` picks images by ref name and names them (`NAME:TAG=REFNAME`). All of the
    /// load's images and tags are committed together, or none.
    pub async fn load<R>(&self, reader: R, map: &[(ImageName, String)]) -> Result<Vec<LoadedImage>>
    where
        R: AsyncRead + Send + 'static,
    {
        let result = self.load_pinned(Input::plain(reader), map).await;
        self.collect_deferred().await?;
        result
    }

    /// [`Store::load`] from pieces, in which the client may have left out the bodies of
    /// `blobs/sha256/<hex>` entries the store holds. A left-out body anywhere else refuses the
    /// load; one whose blob is no longer stored is [`Error::Conflict`].
    pub async fn load_pieces<S>(
        &self,
        pieces: S,
        map: &[(ImageName, String)],
    ) -> Result<Vec<LoadedImage>>
    where
        S: Stream<Item = std::io::Result<Piece>> + Send + Unpin + 'static,
    {
        let result = self.load_pinned(Input::pieces(pieces), map).await;
        self.collect_deferred().await?;
        result
    }

    /// [`Store::load`] from a file a client handed over, the archive starting at byte `start`:
    /// the same import, with each kept body copied by the kernel from the file and hashed from
    /// the copy. `progress` counts the archive's bytes as they are done. Only a regular file
    /// open for reading is accepted; its offset is left alone.
    pub async fn load_file(
        &self,
        file: std::fs::File,
        start: u64,
        map: &[(ImageName, String)],
        progress: &Progress,
    ) -> Result<Vec<LoadedImage>> {
        let input = Input::file(file, start, progress.clone())?;
        let result = self.load_pinned(input, map).await;
        self.collect_deferred().await?;
        result
    }

    /// The load proper; its pins are released when it returns.
    async fn load_pinned(
        &self,
        input: Input,
        map: &[(ImageName, String)],
    ) -> Result<Vec<LoadedImage>> {
        let mut ingested = import::ingest(&self.inner.blobs, input).await?;
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
        let guard = self.inner.commit.lock().await;
        let changes = ops::plan_load(&self.inner.meta.snapshot()?, &images, arriving)?;
        let needed: Vec<Digest> = images
            .iter()
            .flat_map(|(r, _)| r.blobs.iter())
            .chain(changes.put_referrers.iter().flat_map(|r| r.blobs.iter()))
            .cloned()
            .collect();
        self.inner.blobs.publish(&ingested.staging, &needed)?;
        self.inner.meta.apply(&changes)?;
        drop(guard);
        if !changes.delete_images.is_empty() || !changes.delete_referrers.is_empty() {
            self.gc().await?;
        }
        for (rec, names) in &images {
            let names: Vec<String> = names.iter().map(ToString::to_string).collect();
            tracing::info!(digest = %rec.digest, id = %rec.id, names = ?names, "loaded image");
        }
        for r in &changes.put_referrers {
            tracing::info!(digest = %r.digest, subject = %r.subject, "loaded referrer");
        }
        Ok(images
            .into_iter()
            .map(|(r, names)| LoadedImage {
                names,
                id: r.id,
                digest: r.digest,
            })
            .collect())
    }

    /// All images, one entry per tag and one per untagged image, newest first.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let snap = self.inner.meta.snapshot()?;
        let mut out = Vec::new();
        for rec in snap.images.values() {
            let mut names: Vec<Option<ImageName>> =
                snap.names_of(&rec.digest).into_iter().map(Some).collect();
            if names.is_empty() {
                names.push(None);
            }
            out.extend(names.into_iter().map(|name| ImageSummary::new(rec, name)));
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
        Ok(out)
    }

    /// The stored manifest and config of an image.
    pub async fn inspect(&self, image: &str) -> Result<Inspection> {
        let snap = self.inner.meta.snapshot()?;
        let digest = match ops::lookup(&snap, image)? {
            Target::Tag(_, d) | Target::Image(d) => d,
        };
        let record = snap.record(&digest)?.clone();
        let manifest = self.inner.blobs.read_json(&record.digest).await?;
        let config = match record.artifact {
            false => self.inner.blobs.read_json(&record.id).await?,
            true => self.artifact_config(&record.digest, &manifest).await?,
        };
        Ok(Inspection {
            names: snap.names_of(&digest),
            referrers: referrers::of_image(&snap, &record),
            manifest,
            config,
            record,
        })
    }

    /// Points `target` at the image `source` names.
    pub async fn tag(&self, source: &str, target: &ImageName) -> Result<()> {
        let _guard = self.inner.commit.lock().await;
        let snap = self.inner.meta.snapshot()?;
        self.inner
            .meta
            .apply(&ops::plan_tag(&snap, source, target)?)
    }

    /// Removes a tag, deleting the image with its last tag; by ID with `force`, all its tags.
    /// Deletes, in the same transaction, the referrers left without a subject. Frees the blobs
    /// nothing else uses.
    pub async fn remove(&self, image: &str, force: bool) -> Result<Vec<Removed>> {
        let removed = {
            let _guard = self.inner.commit.lock().await;
            let snap = self.inner.meta.snapshot()?;
            let (changes, removed) = ops::plan_remove(&snap, image, force)?;
            self.inner.meta.apply(&changes)?;
            removed
        };
        self.gc().await?;
        Ok(removed)
    }

    /// Deletes every blob no image references, no lease holds and no load or save in flight has
    /// pinned.
    pub async fn gc(&self) -> Result<Vec<Digest>> {
        let _guard = self.inner.commit.lock().await;
        let snap = self.inner.meta.snapshot()?;
        let mut keep = reachable(&snap);
        keep.extend(self.inner.meta.leased()?);
        let (removed, deferred) = self.inner.blobs.collect(&keep)?;
        if deferred > 0 {
            self.inner.gc_deferred.store(true, Ordering::SeqCst);
        }
        if !removed.is_empty() {
            tracing::info!(
                count = removed.len(),
                deferred,
                "collected unreferenced blobs"
            );
        }
        Ok(removed)
    }

    async fn collect_deferred(&self) -> Result<()> {
        if self.inner.gc_deferred.swap(false, Ordering::SeqCst) {
            self.gc().await?;
        }
        Ok(())
    }
}

fn reachable(snap: &Snapshot) -> HashSet<Digest> {
    let images = snap.images.values().flat_map(|r| r.blobs.iter());
    let referrers = snap.referrers.values().flat_map(|r| r.blobs.iter());
    images.chain(referrers).cloned().collect()
}

fn create_private_dir(root: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .and_then(|()| std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::Io {
            context: format!("creating store root {}", root.display()),
            source: e,
        })
}
