//! Last use and pins, the facade's side: a read's use noted in memory, a pin set under the
//! commit lock. How they are kept and when waiting uses are written: `meta/used.rs`.

use std::time::SystemTime;

use super::{Images, Store};
use crate::digest::Digest;
use crate::error::Result;
use crate::meta::{Reader, UsageTables, to_time};
use crate::ops::{self, Target};

/// When an image was last used and whether it is pinned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// When it was last loaded, saved, pulled, pushed, served or tagged; `None` when the store
    /// has no record of a use (an image stored by a version that did not record them).
    pub last_used: Option<SystemTime>,
    /// Pinned: prune (and the GC policy) keeps it.
    pub pinned: bool,
}

impl Images<'_> {
    /// Notes that the image `digest` was read whole (saved, pushed, served): kept in memory and
    /// written with others by hyperd's flusher ([`Store::uses_due`]), so that a read costs no
    /// write transaction. A digest that is no image (a referrer, a platform's manifest) is
    /// not noted.
    pub fn used(self, digest: &Digest) {
        if let Err(e) = self.0.inner.meta.note_use(digest) {
            tracing::warn!(error = %e, "noting an image's last use");
        }
    }

    /// Pins (`pinned`) or unpins the image `image` names (a name, ID or ID prefix); returns
    /// its top-level digest.
    pub async fn set_pinned(self, image: &str, pinned: bool) -> Result<Digest> {
        let inner = &self.0.inner;
        let _guard = inner.commit.lock().await;
        let digest = match ops::lookup(&inner.meta.read()?, image)? {
            Target::Tag(_, d) | Target::Image(d) => d,
        };
        inner.meta.set_pinned(&digest, pinned)?;
        Ok(digest)
    }

    /// The last use and pin of the image `digest`, as `read` sees them with the uses waiting.
    pub(super) fn usage_in(self, read: &Reader, digest: &Digest) -> Result<Usage> {
        self.usage_with(&read.usage_tables()?, digest)
    }

    /// The last use and pin of the image `digest`, as `tables` hold them with the uses waiting:
    /// for many images, with the tables opened once.
    pub(super) fn usage_with(self, tables: &UsageTables, digest: &Digest) -> Result<Usage> {
        let (last_used, pinned) = self.0.inner.meta.usage(tables, digest)?;
        Ok(Usage {
            last_used: last_used.map(to_time),
            pinned,
        })
    }
}

impl Store {
    /// Writes the uses waiting in memory now, in one write transaction: blocking, so hyperd
    /// calls it off the async threads (its flusher; the store does it when it closes).
    pub fn flush_uses(&self) -> Result<()> {
        self.inner.meta.flush_uses()
    }

    /// Returns once the waiting uses are due to be written: `MAX_PENDING_USES` images wait, or
    /// `USES_FLUSH_EVERY` has passed since the last write (checked at each use).
    pub async fn uses_due(&self) {
        self.inner.meta.uses_due().await;
    }
}
