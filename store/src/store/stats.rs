//! [`Store::stats`]: what the store holds and has done, from counts it keeps anyway, for a
//! metrics scrape: nothing here reads the disk or the database.

use super::Store;
use crate::blob::{BlobCounts, Collected};
use crate::content::rules;

/// The store's counts at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blobs stored, their bytes, and what collections deleted.
    pub blobs: BlobCounts,
    /// Leases clients and transfers made (not the shared leases of writes without one).
    pub leases: u64,
    /// Content writes open (streaming or waiting to be resumed).
    pub open_writes: u64,
}

impl Store {
    /// The store's counts now.
    pub fn stats(&self) -> Stats {
        let leases = self.inner.expiries.count(rules::is_shared_lease);
        Stats {
            blobs: self.inner.blobs.counts(),
            leases,
            open_writes: self.inner.writes.count(),
        }
    }

    /// Each collection that deletes blobs from now on (a change's own, the janitor's, a
    /// prune's), told as it happens: what hyperd's events report. A receiver that falls more
    /// than 64 collections behind misses the oldest (`RecvError::Lagged`).
    pub fn collections(&self) -> tokio::sync::broadcast::Receiver<Collected> {
        self.inner.blobs.collections()
    }
}
