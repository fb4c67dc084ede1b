//! Image, tag and referrer metadata in redb: keyed reads in one read transaction (`read.rs`,
//! through the [`View`] the plans in `ops/` ask), one write transaction to change. Leases are in
//! `lease.rs`, the indexes in `index.rs`.
//!
//! Tables: `tags` (full name to top-level digest), `images` (top-level digest to a JSON
//! `ImageRecord`), `referrers` (referrer digest to a JSON `ReferrerRecord`) and
//! `referrers_by_subject` (one empty-valued key `<subject hex>/<referrer hex>` per referrer); in
//! `index.rs`, the names of each image, images by ID, the images holding each manifest and the
//! listing in its order; in `lease.rs`, `lease_expiry` (lease ID to expiry), `lease_info` (lease
//! ID to when it was made and by which uid) and `lease_blobs` (`<lease ID>/<digest hex>` to
//! nothing, so adding a blob is one insert and deleting a lease one key range); in `used.rs`,
//! `image_last_used` and `image_pinned` (each image's last use and its pin, with how a read's
//! use waits in memory, `pending.rs`, before it is written).
//!
//! `apply` writes a change in one write transaction, the indexes with the records, and once it
//! commits updates the in-memory count of records listing each blob (the roots the records make)
//! and returns the blobs whose count reached zero: all a collection after that change looks at.
//! Callers hold the store's commit lock, so what a plan read is still true when its change
//! commits. Only start-up (counting each blob's records, checking the indexes) and `check`
//! (`audit.rs`, record by record) read every record.
//!
//! What the Referrers RPC reads (`referrers_of`, through `read.rs`), in one read transaction:
//! whether the subject is stored at all, to tell an absent subject (NOT_FOUND) from one without
//! referrers (the images holding it, a range of `image_manifests`, then `referrers`), then the
//! subject's key range of `referrers_by_subject`, and a point lookup in `referrers` for each key
//! found.

mod apply;
mod audit;
#[cfg(test)]
mod consistency;
mod index;
mod lease;
mod pending;
mod read;
mod used;
mod view;

pub(crate) use index::ListRow;
pub(crate) use lease::LeaseMade;
pub(crate) use read::Reader;
pub(crate) use used::{UsageTables, to_time};
pub(crate) use view::{AMBIGUOUS_SHOWN, View};

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::referrer::ReferrerRecord;

/// Full image name (`docker.io/library/busybox:latest`) -> top-level manifest or index digest.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
/// Top-level digest -> JSON [`ImageRecord`].
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Referrer digest -> JSON [`ReferrerRecord`].
const REFERRERS: TableDefinition<&str, &[u8]> = TableDefinition::new("referrers");
/// `<subject hex>/<referrer hex>` -> nothing: the referrers of a subject are one range of keys.
const BY_SUBJECT: TableDefinition<&str, ()> = TableDefinition::new("referrers_by_subject");
/// Lease ID -> when it expires, unix seconds.
const LEASE_EXPIRY: TableDefinition<&str, i64> = TableDefinition::new("lease_expiry");
/// Lease ID -> (when it was created, unix seconds; the uid that made it, `None` for hyperd's
/// own). A lease made before owners were recorded has no row: its maker is unknown.
const LEASE_INFO: TableDefinition<&str, (i64, Option<u32>)> = TableDefinition::new("lease_info");
/// `<lease ID>/<digest hex>` -> nothing: the blobs a lease keeps from collection. One key per
/// pair, so that adding a blob is one insert and deleting a lease one range of keys.
const LEASE_BLOBS: TableDefinition<&str, ()> = TableDefinition::new("lease_blobs");
/// Before the pre-release schema above, leases were one JSON document each under this name;
/// a store that still has the table drops it at open (and with it what it leased).
const OLD_LEASES: &str = "leases";

/// What redb may keep of the database in memory. Its default, 1 GiB, would hold most of the
/// database of a store of 100,000 images (about 600 MB) in hyperd's memory; every operation
/// but a listing or a check touches a few pages. Measured at 100,000 images: 32 MiB left hyperd
/// at 136 MiB after a listing, 8 MiB at 53 MiB, with listings, loads and single-image
/// operations as fast.
const CACHE_BYTES: usize = 8 * 1024 * 1024;

/// A consistent view of all images, tags and referrers, in memory: what the plans' tests give
/// them, and what they check the indexes against.
#[cfg(test)]
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) images: std::collections::BTreeMap<Digest, ImageRecord>,
    pub(crate) tags: std::collections::BTreeMap<String, Digest>,
    pub(crate) referrers: std::collections::BTreeMap<Digest, ReferrerRecord>,
}

/// A tag or lookup named the image `digest`, which has no record: the database is damaged.
pub(crate) fn no_record(digest: &Digest) -> Error {
    Error::Corrupt(format!(
        "image {digest} has no record; its tags point nowhere (remove them with rmi)"
    ))
}

/// One atomic change to the metadata.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) put_images: Vec<ImageRecord>,
    pub(crate) delete_images: Vec<Digest>,
    pub(crate) put_tags: Vec<(String, Digest)>,
    pub(crate) delete_tags: Vec<String>,
    pub(crate) put_referrers: Vec<ReferrerRecord>,
    pub(crate) delete_referrers: Vec<Digest>,
}

pub(crate) struct Meta {
    db: Database,
    /// How many image and referrer records list each blob: the roots the records make, kept in step with
    /// every committed change so that a write can ask in O(1) whether a blob is one.
    referenced: Mutex<HashMap<Digest, u32>>,
    /// Uses of images not yet written (`used.rs`).
    pending: Mutex<pending::Pending>,
    /// Wakes the writer of the waiting uses when they are due (`used.rs`).
    uses_due: tokio::sync::Notify,
}

impl Drop for Meta {
    /// The uses waiting in memory are written when the store closes.
    fn drop(&mut self) {
        if let Err(e) = self.flush_uses() {
            tracing::warn!(error = %e, "writing images' last uses at close");
        }
    }
}

impl Meta {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    Error::Locked(path.display().to_string())
                }
                e => Error::Database(format!("opening {}: {e}", path.display())),
            })?;
        let tx = db.begin_write()?;
        tx.open_table(TAGS)?;
        tx.open_table(IMAGES)?;
        tx.open_table(REFERRERS)?;
        tx.open_table(BY_SUBJECT)?;
        tx.open_table(LEASE_EXPIRY)?;
        tx.open_table(LEASE_BLOBS)?;
        tx.open_table(LEASE_INFO)?;
        tx.open_table(used::LAST_USED)?;
        tx.open_table(used::PINNED)?;
        used::drop_orphans(&tx)?;
        tx.delete_table(TableDefinition::<&str, &[u8]>::new(OLD_LEASES))?;
        lease::ensure(&tx)?;
        tx.commit()?;
        index::ensure(&db)?;
        let referenced = Mutex::new(count_references(&db)?);
        let pending = Mutex::new(pending::Pending::new(std::time::Instant::now()));
        Ok(Meta {
            db,
            referenced,
            pending,
            uses_due: tokio::sync::Notify::new(),
        })
    }

    fn referenced(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, u32>> {
        self.referenced
            .lock()
            .expect("referenced blobs lock poisoned")
    }

    /// Whether some image or referrer record lists `digest`, as of the last committed change.
    pub(crate) fn is_referenced(&self, digest: &Digest) -> bool {
        self.referenced().contains_key(digest)
    }

    /// Whether the indexes agree with the records (see `index::agree`).
    pub(crate) fn indexes_agree(&self) -> Result<bool> {
        index::agree(&self.db.begin_read()?)
    }

    /// Every blob some image or referrer record lists, as of the last committed change.
    pub(crate) fn referenced_blobs(&self) -> std::collections::HashSet<Digest> {
        self.referenced().keys().cloned().collect()
    }

    #[cfg(test)]
    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let tx = self.db.begin_read()?;
        let mut snap = Snapshot::default();
        for row in tx.open_table(IMAGES)?.iter()? {
            let rec = parse_image(row?.1.value())?;
            snap.images.insert(rec.digest.clone(), rec);
        }
        for row in tx.open_table(TAGS)?.iter()? {
            let (k, v) = row?;
            let digest = v.value().parse()?;
            snap.tags.insert(k.value().to_owned(), digest);
        }
        for row in tx.open_table(REFERRERS)?.iter()? {
            let rec: ReferrerRecord = parse(row?.1.value(), "referrer")?;
            snap.referrers.insert(rec.digest.clone(), rec);
        }
        Ok(snap)
    }

    /// The referrers of `subject`, by digest, or `None` when no stored image or referrer has that
    /// manifest. One read transaction: a range of the subject index, then each record.
    pub(crate) fn referrers_of(&self, subject: &Digest) -> Result<Option<Vec<ReferrerRecord>>> {
        let read = self.read()?;
        if !read.holds_manifest(subject)? {
            return Ok(None);
        }
        read.referrers_of(subject).map(Some)
    }

    /// Commits `changes` in one transaction, indexes included. Returns the blobs no record lists
    /// any more: what a collection after this change has to look at.
    pub(crate) fn apply(&self, changes: &Changes) -> Result<Vec<Digest>> {
        let tx = self.db.begin_write()?;
        let touched = apply::touched(&tx, changes)?;
        index::unlist(&tx, &touched)?;
        let gone = apply::images(&tx, changes)?;
        apply::tags(&tx, changes)?;
        index::relist(&tx, &touched)?;
        let gone_referrers = apply::referrers(&tx, changes)?;
        apply::stamp_used(&tx, changes)?;
        tx.commit()?;
        let mut referenced = self.referenced();
        for rec in &changes.put_images {
            count(&mut referenced, &rec.blobs, 1);
        }
        for rec in &changes.put_referrers {
            count(&mut referenced, &rec.blobs, 1);
        }
        for rec in &gone {
            count(&mut referenced, &rec.blobs, -1);
        }
        let mut freed = BTreeSet::new();
        for rec in &gone_referrers {
            count(&mut referenced, &rec.blobs, -1);
        }
        let lost = gone.iter().map(|r| &r.blobs);
        for b in lost
            .chain(gone_referrers.iter().map(|r| &r.blobs))
            .flatten()
        {
            if !referenced.contains_key(b) {
                freed.insert(b.clone());
            }
        }
        Ok(freed.into_iter().collect())
    }
}

/// How many image and referrer records list each blob, read row by row.
fn count_references(db: &Database) -> Result<HashMap<Digest, u32>> {
    let tx = db.begin_read()?;
    let mut referenced = HashMap::new();
    for row in tx.open_table(IMAGES)?.iter()? {
        count(&mut referenced, &parse_image(row?.1.value())?.blobs, 1);
    }
    for row in tx.open_table(REFERRERS)?.iter()? {
        let rec: ReferrerRecord = parse(row?.1.value(), "referrer")?;
        count(&mut referenced, &rec.blobs, 1);
    }
    Ok(referenced)
}

/// Adds `by` to the count of each of `blobs`, forgetting a blob whose count reaches zero.
fn count(referenced: &mut HashMap<Digest, u32>, blobs: &[Digest], by: i32) {
    for b in blobs {
        let n = referenced.entry(b.clone()).or_default();
        *n = n.saturating_add_signed(by);
        if *n == 0 {
            referenced.remove(b);
        }
    }
}

fn parse_image(bytes: &[u8]) -> Result<ImageRecord> {
    parse(bytes, "image")
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::Database(format!("corrupt {what} record: {e}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use redb::ReadableTableMetadata;

    use super::*;

    pub(super) fn open() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("meta.redb")).unwrap();
        (dir, meta)
    }

    pub(crate) fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    /// An image record `n` listing these blobs and manifests, by their numbers.
    pub(crate) fn image(n: u8, blobs: &[u8], manifests: &[u8]) -> ImageRecord {
        ImageRecord {
            digest: d(n),
            media_type: String::new(),
            size: 0,
            id: d(n),
            created: None,
            total_size: 0,
            platforms: vec![],
            blobs: blobs.iter().map(|b| d(*b)).collect(),
            manifests: manifests.iter().map(|m| d(*m)).collect(),
            artifact: false,
        }
    }

    /// A referrer record `n` of `subject`, listing these blobs.
    pub(crate) fn referrer(n: u8, subject: u8, blobs: &[u8]) -> ReferrerRecord {
        ReferrerRecord {
            digest: d(n),
            media_type: String::new(),
            size: 0,
            artifact_type: None,
            annotations: std::collections::BTreeMap::new(),
            subject: d(subject),
            blobs: blobs.iter().map(|b| d(*b)).collect(),
        }
    }

    #[test]
    fn referenced_blobs_follow_the_committed_records() {
        let (dir, meta) = open();
        let rec = |n: u8, blobs: &[u8]| image(n, blobs, &[n]);
        let put = |recs: Vec<ImageRecord>| Changes {
            put_images: recs,
            ..Changes::default()
        };
        meta.apply(&put(vec![rec(10, &[1, 2]), rec(11, &[2, 3])]))
            .unwrap();
        assert!([1, 2, 3].iter().all(|n| meta.is_referenced(&d(*n))));
        // Replacing a record drops what only its old version listed.
        meta.apply(&put(vec![rec(10, &[2])])).unwrap();
        assert!(!meta.is_referenced(&d(1)));
        meta.apply(&Changes {
            delete_images: vec![d(11)],
            ..Changes::default()
        })
        .unwrap();
        assert!(meta.is_referenced(&d(2)) && !meta.is_referenced(&d(3)));
        // And a reopened store counts from the records.
        drop(meta);
        let meta = Meta::open(&dir.path().join("meta.redb")).unwrap();
        assert!(meta.is_referenced(&d(2)) && !meta.is_referenced(&d(3)));
    }

    #[test]
    fn referrers_are_found_by_subject_and_their_blobs_counted() {
        let (_dir, meta) = open();
        let image = image(1, &[1, 2], &[1, 2]);
        let referrer = |n: u8, subject: u8| referrer(n, subject, &[n, 50]);
        meta.apply(&Changes {
            put_images: vec![image],
            put_referrers: vec![referrer(10, 1), referrer(11, 2), referrer(12, 10)],
            ..Changes::default()
        })
        .unwrap();
        let of = |n: u8| -> Option<Vec<Digest>> {
            let found = meta.referrers_of(&d(n)).unwrap();
            found.map(|v| v.into_iter().map(|r| r.digest).collect())
        };
        assert_eq!(of(1), Some(vec![d(10)]));
        // A manifest inside the image, and a referrer, are subjects too.
        assert_eq!(of(2), Some(vec![d(11)]));
        assert_eq!(of(10), Some(vec![d(12)]));
        assert_eq!(of(12), Some(vec![]));
        assert_eq!(of(3), None);
        assert!(meta.is_referenced(&d(50)));
        meta.apply(&Changes {
            delete_referrers: vec![d(10), d(11), d(12)],
            ..Changes::default()
        })
        .unwrap();
        assert_eq!(of(1), Some(vec![]));
        assert!(meta.snapshot().unwrap().referrers.is_empty());
        assert!(!meta.is_referenced(&d(50)));
        let tx = meta.db.begin_read().unwrap();
        assert!(tx.open_table(BY_SUBJECT).unwrap().is_empty().unwrap());
    }
}
