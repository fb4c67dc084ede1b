//! The [`Store`] facade: one root directory, its blobs and its metadata, seen through narrow
//! views that borrow it: [`Store::images`] (list, inspect, tag, remove, loads, creates, saves,
//! referrers, and the direct queries `blobs_of` and `graph`), [`Store::content`] (blobs by
//! digest, writes in pieces) and [`Store::leases`] (leases and the janitor's timing). Whole-store
//! upkeep, [`Store::gc`] and [`Store::check`], stays on the store itself.
//!
//! Every metadata write and every collection holds the one commit mutex, so a collection never
//! sees half a commit; loads, creates and saves pin the blobs they are about to commit or read.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

mod check;
mod content;
mod create;
mod images;
mod leases;
mod load;
mod policy;
mod referrers;
mod save;
mod serve;
mod stats;
mod upload;
mod usage;
mod used;
mod write;

use tokio::sync::Mutex;

pub use check::CheckReport;
pub use content::{BlobRead, Content};
pub use create::Created;
pub use images::{ImageGraph, ImageSummary, Images, Inspection, ListPage};
pub use leases::{Lease, LeaseInfo, Leases};
pub use load::{Loaded, LoadedImage};
pub use policy::{Enforced, Enforcement};
pub use save::{Format, SaveItem, SaveJob};
pub use serve::NamePage;
pub use stats::Stats;
pub use upload::Upload;
pub use usage::{PruneOptions, Pruned};
pub use used::Usage;
pub use write::{Began, ContentWrite, WriteOutcome, WriteStart, Written};

use crate::blob::Blobs;
use crate::content::{Uploads, Writes};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::meta::Meta;

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
    /// Blobs a collection left because a load or save had them pinned (or a load published and
    /// failed to commit): the next load or save to finish looks at them again. See
    /// [`Store::defer`].
    deferred: std::sync::Mutex<HashSet<Digest>>,
    /// Content writes in progress.
    writes: Arc<Writes>,
    /// Uploads in progress (pushes to the registry endpoint).
    uploads: Arc<Uploads>,
    /// When each lease expires, for the janitor.
    expiries: leases::Expiries,
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
        let writes = Writes::new(blobs.content_ingest());
        let uploads = Uploads::new(blobs.content_ingest());
        let expiries = leases::Expiries::open(&meta)?;
        let store = Store {
            inner: Arc::new(Inner {
                blobs,
                meta,
                commit: Mutex::new(()),
                deferred: std::sync::Mutex::default(),
                writes,
                uploads,
                expiries,
            }),
        };
        store.gc().await?;
        Ok(store)
    }

    /// The images and referrers, by name, ID or digest.
    pub fn images(&self) -> Images<'_> {
        Images(self)
    }

    /// The blobs, by digest, and writes of new ones.
    pub fn content(&self) -> Content<'_> {
        Content(self)
    }

    /// The leases that keep blobs from collection, and when the next one expires.
    pub fn leases(&self) -> Leases<'_> {
        Leases(self)
    }

    /// The size of the filesystem the store is on, and what is available of it.
    pub fn filesystem(&self) -> Result<crate::blob::Filesystem> {
        self.inner.blobs.filesystem()
    }

    /// Deletes every blob no image references, no lease holds and no load or save in flight has
    /// pinned.
    pub async fn gc(&self) -> Result<Vec<Digest>> {
        let _guard = self.inner.commit.lock().await;
        let mut keep = self.inner.meta.referenced_blobs();
        keep.extend(self.inner.meta.leased()?);
        let candidates: Vec<Digest> = self
            .inner
            .blobs
            .all()?
            .into_iter()
            .filter(|d| !keep.contains(d))
            .collect();
        self.delete_unpinned(&candidates)
    }

    /// Deletes those of `freed` (the blobs a change left without a record listing them) that
    /// no lease holds: what a change can have made unreferenced, without reading the rest of
    /// the store. The caller holds no commit lock.
    pub(crate) async fn collect(&self, freed: &[Digest]) -> Result<Vec<Digest>> {
        if freed.is_empty() {
            return Ok(Vec::new());
        }
        let _guard = self.inner.commit.lock().await;
        let meta = &self.inner.meta;
        let mut candidates = Vec::new();
        for d in freed {
            if !meta.is_referenced(d) && !meta.is_leased(d)? {
                candidates.push(d.clone());
            }
        }
        self.delete_unpinned(&candidates)
    }

    /// Collects what a committed change freed. The change stands whatever happens here, so a
    /// failure is logged, not returned: the caller reports the change it made, and the blobs
    /// are looked at again when the next load or save ends (or at the next start).
    pub(crate) async fn collect_committed(&self, freed: &[Digest]) {
        if let Err(e) = self.collect(freed).await {
            tracing::warn!(error = %e, blobs = freed.len(), "collecting what a change freed");
            self.defer(freed.iter().cloned());
        }
    }

    /// Deletes `candidates`, but for those a load or save in flight pinned, which wait for the
    /// next collection. The caller holds the commit lock.
    fn delete_unpinned(&self, candidates: &[Digest]) -> Result<Vec<Digest>> {
        let (removed, deferred) = self.inner.blobs.delete_unpinned(candidates)?;
        if !removed.is_empty() {
            tracing::info!(
                count = removed.len(),
                deferred = deferred.len(),
                "collected unreferenced blobs"
            );
        }
        self.defer(deferred);
        Ok(removed)
    }

    /// Blobs to look at again once the pins in flight are gone: pinned when a collection wanted
    /// them, or published by a load whose commit then failed.
    pub(crate) fn defer(&self, blobs: impl IntoIterator<Item = Digest>) {
        self.deferred().extend(blobs);
    }

    fn deferred(&self) -> std::sync::MutexGuard<'_, HashSet<Digest>> {
        self.inner
            .deferred
            .lock()
            .expect("deferred blobs lock poisoned")
    }

    /// Collects the deferred blobs, each looked at as a change's freed blobs are. It ends a
    /// load, save or create whose own result stands whatever happens here: a failure is
    /// logged, and the blobs stay deferred.
    async fn collect_deferred(&self) {
        let blobs: Vec<Digest> = std::mem::take(&mut *self.deferred()).into_iter().collect();
        self.collect_committed(&blobs).await;
    }
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
