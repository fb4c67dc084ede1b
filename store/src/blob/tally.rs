//! How many blobs the store holds and their bytes, and what collections deleted: counted at open
//! (one pass over `blobs/sha256/`, with a stat of each) and then at each blob placed or deleted,
//! so that reading them (a metrics scrape) never walks the directory. Each collection that freed
//! something is also told to whoever listens ([`Collected`]), so no one polls the counts.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::broadcast;

use crate::digest::Digest;
use crate::error::{IoContext, Result};

#[derive(Debug)]
pub(crate) struct Tally {
    blobs: AtomicU64,
    bytes: AtomicU64,
    collections: AtomicU64,
    collected_blobs: AtomicU64,
    collected_bytes: AtomicU64,
    /// Held from the check whether a blob is in place to its rename: two writers of the same
    /// blob would otherwise both see it absent, both rename, and count it twice.
    placing: Mutex<()>,
    /// Where each collection that deleted blobs is told; nobody listening costs nothing.
    told: broadcast::Sender<Collected>,
}

/// What one collection deleted: told to the receivers of [`Tally::collections`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Collected {
    /// Blobs deleted.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Collections a slow listener may fall behind by before it misses some.
const COLLECTIONS_QUEUED: usize = 64;

impl Default for Tally {
    fn default() -> Self {
        Tally {
            blobs: AtomicU64::default(),
            bytes: AtomicU64::default(),
            collections: AtomicU64::default(),
            collected_blobs: AtomicU64::default(),
            collected_bytes: AtomicU64::default(),
            placing: Mutex::default(),
            told: broadcast::channel(COLLECTIONS_QUEUED).0,
        }
    }
}

/// A reading of the [`Tally`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlobCounts {
    /// Blobs stored.
    pub blobs: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Collections run since the store was opened, the one at open included.
    pub collections: u64,
    /// Blobs they deleted.
    pub collected_blobs: u64,
    /// Bytes they freed.
    pub collected_bytes: u64,
}

impl Tally {
    /// The blobs in `dir` now: every file named by a digest, as [`super::Blobs::all`] lists them.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let tally = Tally::default();
        let listing = || format!("counting {}", dir.display());
        for entry in fs::read_dir(dir).context(listing)? {
            let entry = entry.context(listing)?;
            let named = entry
                .file_name()
                .to_str()
                .is_some_and(|n| Digest::from_hex(n).is_ok());
            let meta = entry.metadata().context(listing)?;
            if named && meta.is_file() {
                tally.placed(meta.len());
            }
        }
        Ok(tally)
    }

    /// Held while a blob is looked for and placed.
    pub(crate) fn placing(&self) -> MutexGuard<'_, ()> {
        self.placing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn placed(&self, size: u64) {
        self.blobs.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(size, Ordering::Relaxed);
    }

    /// A collection deleted blobs of `sizes`.
    pub(crate) fn collected(&self, sizes: &[u64]) {
        let bytes: u64 = sizes.iter().sum();
        self.collections.fetch_add(1, Ordering::Relaxed);
        self.collected_blobs
            .fetch_add(sizes.len() as u64, Ordering::Relaxed);
        self.collected_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.blobs.fetch_sub(sizes.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
        if !sizes.is_empty() {
            let blobs = sizes.len() as u64;
            // An error only says that nobody listens.
            let _ = self.told.send(Collected { blobs, bytes });
        }
    }

    /// Each collection that deletes blobs from now on.
    pub(crate) fn collections(&self) -> broadcast::Receiver<Collected> {
        self.told.subscribe()
    }

    pub(crate) fn counts(&self) -> BlobCounts {
        BlobCounts {
            blobs: self.blobs.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            collections: self.collections.load(Ordering::Relaxed),
            collected_blobs: self.collected_blobs.load(Ordering::Relaxed),
            collected_bytes: self.collected_bytes.load(Ordering::Relaxed),
        }
    }
}
