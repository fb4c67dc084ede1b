//! How far a load or save through a handed-over file has got, for the caller to report while it
//! runs. Several threads advance it; it only ever grows.

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
