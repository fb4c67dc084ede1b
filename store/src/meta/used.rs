//! When each image was last used, and which images are pinned.
//!
//! Tables: `image_last_used` (top-level digest to unix nanoseconds) and `image_pinned`
//! (top-level digest to nothing). Both are keyed like `images`, and a row is deleted with its
//! image in the same transaction. A store written before these tables existed opens with them
//! empty: its images show no last use ("never") until they are next used, and none is pinned.
//! A row left without its image (an older version's `rmi` kept them) is dropped at open, so
//! that the same digest stored again starts unpinned and unused (`drop_orphans`).
//!
//! A change that commits anyway (a load, a tag, a created image) stamps the images it puts or
//! names in its own transaction (`apply`). A read (a save, a push, a registry GET) never
//! writes: its use waits in memory (`pending.rs`), one entry per image (the latest), and noting
//! it only wakes the writer (hyperd's flusher, through [`Meta::uses_due`]) when
//! `MAX_PENDING_USES` images wait or `USES_FLUSH_EVERY` has passed since the last write. The
//! writer also runs on its own timer and when the store closes. Past `MAX_WAITING_USES`
//! images (a writer that keeps failing), a use of an image not already waiting is refused:
//! that image keeps its older stamp. Reads of the time merge what waits with what is stored.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{ReadOnlyTable, ReadableTable, TableDefinition, WriteTransaction};

use super::pending::Pending;
use super::{IMAGES, Meta, Reader};
use crate::digest::Digest;
use crate::error::Result;

/// Top-level digest -> when the image was last used, unix nanoseconds.
pub(super) const LAST_USED: TableDefinition<&str, i64> = TableDefinition::new("image_last_used");
/// Top-level digest -> nothing: the images prune (and, later, the GC policy) must keep.
pub(super) const PINNED: TableDefinition<&str, ()> = TableDefinition::new("image_pinned");

/// Now, in unix nanoseconds (0 for a clock before 1970, which never happens here).
pub(crate) fn now_nanos() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A stored time as a [`SystemTime`].
pub(crate) fn to_time(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(nanos).unwrap_or(0))
}

/// Stamps each of `digests` that has an image record as used at `at`, never moving a stamp
/// back (the clock may step backwards; an earlier flush may land after a later commit).
pub(super) fn stamp<'a>(
    tx: &WriteTransaction,
    digests: impl IntoIterator<Item = (&'a Digest, i64)>,
) -> Result<()> {
    let images = tx.open_table(IMAGES)?;
    let mut used = tx.open_table(LAST_USED)?;
    for (d, at) in digests {
        let key = d.to_string();
        if images.get(key.as_str())?.is_none() {
            continue;
        }
        let old = used.get(key.as_str())?.map(|v| v.value());
        if old.is_none_or(|old| old < at) {
            used.insert(key.as_str(), at)?;
        }
    }
    Ok(())
}

/// Deletes the rows of both tables whose image has no record: what an older version's `rmi`
/// left behind, which would pin (or date) the same digest stored again. One pass over each
/// table in key order, a point lookup in `images` per row.
pub(super) fn drop_orphans(tx: &WriteTransaction) -> Result<()> {
    let last_used = drop_orphans_of(tx, LAST_USED)?;
    let pinned = drop_orphans_of(tx, PINNED)?;
    if last_used + pinned > 0 {
        tracing::info!(
            last_used,
            pinned,
            "dropped last uses and pins of removed images"
        );
    }
    Ok(())
}

/// Deletes the rows of `table` whose key is no image's; how many.
fn drop_orphans_of<V: redb::Value + 'static>(
    tx: &WriteTransaction,
    table: TableDefinition<&str, V>,
) -> Result<usize> {
    let images = tx.open_table(IMAGES)?;
    let mut table = tx.open_table(table)?;
    let mut orphans = Vec::new();
    for row in table.iter()? {
        let key = row?.0.value().to_owned();
        if images.get(key.as_str())?.is_none() {
            orphans.push(key);
        }
    }
    for key in &orphans {
        table.remove(key.as_str())?;
    }
    Ok(orphans.len())
}

/// Drops what is kept of a deleted image.
pub(super) fn forget(tx: &WriteTransaction, digest: &Digest) -> Result<()> {
    let key = digest.to_string();
    tx.open_table(LAST_USED)?.remove(key.as_str())?;
    tx.open_table(PINNED)?.remove(key.as_str())?;
    Ok(())
}

impl Meta {
    /// Notes a use of `digest` now, if it is an image's top-level digest (one read, no write);
    /// wakes the writer when the waiting uses are due.
    pub(crate) fn note_use(&self, digest: &Digest) -> Result<()> {
        if !self.read()?.is_image(digest)? {
            return Ok(());
        }
        if self.pending().note(digest, now_nanos(), Instant::now()) {
            self.uses_due.notify_one();
        }
        Ok(())
    }

    /// Returns once the waiting uses are due to be written (at once if they became due since
    /// the last call).
    pub(crate) async fn uses_due(&self) {
        self.uses_due.notified().await;
    }

    /// Writes the waiting uses in one transaction (none when nothing waits).
    pub(crate) fn flush_uses(&self) -> Result<()> {
        let uses = self.pending().writing(Instant::now());
        if uses.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write()?;
        stamp(&tx, uses.iter().map(|(d, at)| (d, *at)))?;
        tx.commit()?;
        self.pending().written(&uses);
        Ok(())
    }

    /// When the image `digest` was last used, merging what waits with what `tables` hold, and
    /// whether it is pinned.
    pub(crate) fn usage(
        &self,
        tables: &UsageTables,
        digest: &Digest,
    ) -> Result<(Option<i64>, bool)> {
        let (stored, pinned) = tables.stored(digest)?;
        Ok((stored.max(self.pending().get(digest)), pinned))
    }

    /// Pins or unpins the image `digest`, which has a record. The caller holds the commit lock.
    pub(crate) fn set_pinned(&self, digest: &Digest, pinned: bool) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(PINNED)?;
            let key = digest.to_string();
            if pinned {
                table.insert(key.as_str(), ())?;
            } else {
                table.remove(key.as_str())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().expect("pending uses lock poisoned")
    }

    /// How many images' uses wait in memory.
    #[cfg(test)]
    pub(crate) fn pending_uses(&self) -> usize {
        self.pending().len()
    }
}

/// The tables of last uses and pins, opened once for the lookups of many images (a listing,
/// df) rather than once for each.
pub(crate) struct UsageTables {
    last_used: ReadOnlyTable<&'static str, i64>,
    pinned: ReadOnlyTable<&'static str, ()>,
}

impl UsageTables {
    /// When the image `digest` was last used, as stored (without what waits in memory), and
    /// whether it is pinned.
    pub(crate) fn stored(&self, digest: &Digest) -> Result<(Option<i64>, bool)> {
        let key = digest.to_string();
        let last_used = self.last_used.get(key.as_str())?.map(|v| v.value());
        Ok((last_used, self.pinned.get(key.as_str())?.is_some()))
    }
}

impl Reader {
    /// The tables of last uses and pins, as this reader sees them.
    pub(crate) fn usage_tables(&self) -> Result<UsageTables> {
        Ok(UsageTables {
            last_used: self.tx().open_table(LAST_USED)?,
            pinned: self.tx().open_table(PINNED)?,
        })
    }

    /// Whether `digest` is an image's top-level digest (its record is not read).
    fn is_image(&self, digest: &Digest) -> Result<bool> {
        let table = self.tx().open_table(IMAGES)?;
        Ok(table.get(digest.to_string().as_str())?.is_some())
    }
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, ReadableTableMetadata};

    use super::*;
    use crate::image::ImageRecord;
    use crate::limits::MAX_PENDING_USES as MAX_PENDING;
    use crate::meta::Changes;
    use crate::meta::tests::{d, image, open};

    fn stored(meta: &Meta, digest: &Digest) -> Option<i64> {
        let tables = meta.read().unwrap().usage_tables().unwrap();
        tables.stored(digest).unwrap().0
    }

    fn pinned(meta: &Meta, digest: &Digest) -> bool {
        let tables = meta.read().unwrap().usage_tables().unwrap();
        tables.stored(digest).unwrap().1
    }

    /// Whether the writer would be woken now (taking the wake-up).
    fn woken(meta: &Meta) -> bool {
        use std::future::Future;
        let mut due = std::pin::pin!(meta.uses_due());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        due.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn noting_never_writes_and_wakes_the_writer_when_a_thousand_images_wait() {
        let (_dir, meta) = open();
        let other = |n: usize| Digest::of(&n.to_le_bytes());
        let images: Vec<ImageRecord> = (0..MAX_PENDING)
            .map(|n| ImageRecord {
                digest: other(n),
                ..image(0, &[], &[])
            })
            .collect();
        meta.apply(&Changes {
            put_images: images,
            ..Changes::default()
        })
        .unwrap();
        let before = stored(&meta, &other(0)).unwrap();
        // A digest that is no image's is not noted.
        meta.note_use(&d(7)).unwrap();
        assert_eq!(meta.pending_uses(), 0);
        for n in 0..MAX_PENDING - 1 {
            meta.note_use(&other(n)).unwrap();
        }
        assert_eq!(meta.pending_uses(), MAX_PENDING - 1);
        assert!(!woken(&meta));
        let tables = meta.read().unwrap().usage_tables().unwrap();
        let shown = meta.usage(&tables, &other(0)).unwrap().0.unwrap();
        assert!(shown > before);
        meta.note_use(&other(MAX_PENDING - 1)).unwrap();
        // Due: the writer is woken, and nothing was written yet.
        assert_eq!(stored(&meta, &other(0)), Some(before));
        assert!(woken(&meta) && !woken(&meta));
        meta.flush_uses().unwrap();
        assert_eq!(meta.pending_uses(), 0);
        assert_eq!(stored(&meta, &other(0)), Some(shown));
        assert_eq!(stored(&meta, &d(7)), None);
    }

    #[test]
    fn rows_an_older_rmi_left_behind_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let meta = Meta::open(&path).unwrap();
        meta.apply(&Changes {
            put_images: vec![image(1, &[1], &[1]), image(2, &[2], &[2])],
            ..Changes::default()
        })
        .unwrap();
        meta.set_pinned(&d(1), true).unwrap();
        meta.set_pinned(&d(2), true).unwrap();
        // What an older version's rmi did: the record went, its two rows stayed.
        let tx = meta.db.begin_write().unwrap();
        tx.open_table(IMAGES)
            .unwrap()
            .remove(d(1).to_string().as_str())
            .unwrap();
        tx.commit().unwrap();
        drop(meta);
        let meta = Meta::open(&path).unwrap();
        let tx = meta.db.begin_read().unwrap();
        let keys = |t: TableDefinition<&str, ()>| -> Vec<String> {
            let table = tx.open_table(t).unwrap();
            let rows = table.iter().unwrap();
            rows.map(|r| r.unwrap().0.value().to_owned()).collect()
        };
        assert_eq!(keys(PINNED), [d(2).to_string()]);
        let used = tx.open_table(LAST_USED).unwrap();
        assert_eq!(used.len().unwrap(), 1);
        assert!(used.get(d(2).to_string().as_str()).unwrap().is_some());
    }

    #[test]
    fn a_store_from_before_last_uses_opens_with_none_and_deletes_forget() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let meta = Meta::open(&path).unwrap();
        let put = Changes {
            put_images: vec![image(1, &[1], &[1]), image(2, &[2], &[2])],
            ..Changes::default()
        };
        meta.apply(&put).unwrap();
        meta.set_pinned(&d(1), true).unwrap();
        // What the previous version wrote: the same tables, without these two.
        let tx = meta.db.begin_write().unwrap();
        assert!(tx.delete_table(LAST_USED).unwrap() && tx.delete_table(PINNED).unwrap());
        tx.commit().unwrap();
        drop(meta);
        let meta = Meta::open(&path).unwrap();
        assert_eq!(stored(&meta, &d(1)), None);
        assert!(!pinned(&meta, &d(1)));
        assert!(meta.snapshot().unwrap().images.len() == 2);
        // A delete takes the image's rows with it.
        meta.set_pinned(&d(2), true).unwrap();
        meta.apply(&put).unwrap();
        meta.apply(&Changes {
            delete_images: vec![d(2)],
            ..Changes::default()
        })
        .unwrap();
        let tx = meta.db.begin_read().unwrap();
        assert_eq!(tx.open_table(PINNED).unwrap().len().unwrap(), 0);
        let used = tx.open_table(LAST_USED).unwrap();
        assert!(used.get(d(1).to_string().as_str()).unwrap().is_some());
        assert!(used.get(d(2).to_string().as_str()).unwrap().is_none());
    }
}
