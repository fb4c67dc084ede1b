//! How far a long job has got, for the caller to report while it runs: a load or save through a
//! handed-over file (bytes of the archive), a check (blobs re-hashed). Several threads advance
//! them; they only ever grow.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of the archive done so far. Cheap to clone; clones share the count.
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    /// Bytes done so far.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Records that the first `bytes` of the archive are done. Reading headers and copying a body
    /// report from different threads, each its own position, so the count is their maximum.
    pub(crate) fn reach(&self, bytes: u64) {
        self.0.fetch_max(bytes, Ordering::Relaxed);
    }
}

/// How far a `check` has got re-hashing the stored blobs. Cheap to clone; clones share the counts.
#[derive(Clone, Debug, Default)]
pub struct CheckProgress(Arc<CheckCounts>);

#[derive(Debug, Default)]
struct CheckCounts {
    blobs_total: AtomicU64,
    blobs_done: AtomicU64,
    bytes_done: AtomicU64,
}

/// A reading of [`CheckProgress`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckCounted {
    /// Blobs to re-hash; 0 until the check has listed them.
    pub blobs_total: u64,
    /// Blobs re-hashed so far.
    pub blobs_done: u64,
    /// Bytes re-hashed so far.
    pub bytes_done: u64,
}

impl CheckProgress {
    /// The counts now. Each only ever grows, and a reading that counts a blob done also has the
    /// total: the total is read last, and set before any blob is done.
    pub fn counted(&self) -> CheckCounted {
        let blobs_done = self.0.blobs_done.load(Ordering::SeqCst);
        let bytes_done = self.0.bytes_done.load(Ordering::SeqCst);
        CheckCounted {
            blobs_total: self.0.blobs_total.load(Ordering::SeqCst),
            blobs_done,
            bytes_done,
        }
    }

    pub(crate) fn set_total(&self, blobs: u64) {
        self.0.blobs_total.store(blobs, Ordering::SeqCst);
    }

    pub(crate) fn add_bytes(&self, bytes: u64) {
        self.0.bytes_done.fetch_add(bytes, Ordering::SeqCst);
    }

    pub(crate) fn blob_done(&self) {
        self.0.blobs_done.fetch_add(1, Ordering::SeqCst);
    }
}
