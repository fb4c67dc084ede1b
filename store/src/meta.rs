//! Image and tag metadata in redb: a snapshot to read, one write transaction to change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::limits::MAX_LEASED_BLOBS;
use crate::reference::ImageName;

/// Full image name (`docker.io/library/busybox:latest`) -> top-level manifest or index digest.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
/// Top-level digest -> JSON [`ImageRecord`].
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Lease ID -> when it expires, unix seconds.
const LEASE_EXPIRY: TableDefinition<&str, i64> = TableDefinition::new("lease_expiry");
/// `<lease ID>/<digest hex>` -> nothing: the blobs a lease keeps from collection. One key per
/// pair, so that adding a blob is one insert and deleting a lease one range of keys.
const LEASE_BLOBS: TableDefinition<&str, ()> = TableDefinition::new("lease_blobs");
/// Before the pre-release schema above, leases were one JSON document each under this name;
/// a store that still has the table drops it at open (and with it what it leased).
const OLD_LEASES: &str = "leases";

/// A consistent view of all images and tags.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) images: BTreeMap<Digest, ImageRecord>,
    pub(crate) tags: BTreeMap<String, Digest>,
}

impl Snapshot {
    /// The record of the image `digest`, which a tag or lookup named. Its absence means the
    /// database is damaged (`hyperctl check` reports it), never a panic.
    pub(crate) fn record(&self, digest: &Digest) -> Result<&ImageRecord> {
        self.images.get(digest).ok_or_else(|| {
            Error::Corrupt(format!(
                "image {digest} has no record; its tags point nowhere (remove them with rmi)"
            ))
        })
    }

    /// The names pointing at the image `digest`, in name order.
    pub(crate) fn names_of(&self, digest: &Digest) -> Vec<ImageName> {
        self.tags
            .iter()
            .filter(|(_, d)| *d == digest)
            .filter_map(|(t, _)| t.parse().ok())
            .collect()
    }
}

/// One atomic change to the metadata.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    pub(crate) put_images: Vec<ImageRecord>,
    pub(crate) delete_images: Vec<Digest>,
    pub(crate) put_tags: Vec<(String, Digest)>,
    pub(crate) delete_tags: Vec<String>,
}

pub(crate) struct Meta {
    db: Database,
    /// How many image records list each blob: the roots the records make, kept in step with
    /// every committed change so that a write can ask in O(1) whether a blob is one.
    referenced: Mutex<HashMap<Digest, u32>>,
}

impl Meta {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked(path.display().to_string()),
            e => Error::Database(format!("opening {}: {e}", path.display())),
        })?;
        let tx = db.begin_write()?;
        tx.open_table(TAGS)?;
        tx.open_table(IMAGES)?;
        tx.open_table(LEASE_EXPIRY)?;
        tx.open_table(LEASE_BLOBS)?;
        tx.delete_table(TableDefinition::<&str, &[u8]>::new(OLD_LEASES))?;
        tx.commit()?;
        let meta = Meta {
            db,
            referenced: Mutex::new(HashMap::new()),
        };
        let mut referenced = HashMap::new();
        for rec in meta.snapshot()?.images.values() {
            count(&mut referenced, &rec.blobs, 1);
        }
        *meta.referenced() = referenced;
        Ok(meta)
    }

    fn referenced(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, u32>> {
        self.referenced
            .lock()
            .expect("referenced blobs lock poisoned")
    }

    /// Whether some image record lists `digest`, as of the last committed change.
    pub(crate) fn is_referenced(&self, digest: &Digest) -> bool {
        self.referenced().contains_key(digest)
    }

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
        Ok(snap)
    }

    pub(crate) fn apply(&self, changes: &Changes) -> Result<()> {
        let tx = self.db.begin_write()?;
        // The records this change replaces or deletes, whose blobs lose a reference.
        let mut gone = Vec::new();
        {
            let mut images = tx.open_table(IMAGES)?;
            for d in &changes.delete_images {
                if let Some(old) = images.remove(d.to_string().as_str())? {
                    gone.push(parse_image(old.value())?);
                }
            }
            for rec in &changes.put_images {
                let json = serde_json::to_vec(rec).expect("image record serialises");
                if let Some(old) =
                    images.insert(rec.digest.to_string().as_str(), json.as_slice())?
                {
                    gone.push(parse_image(old.value())?);
                }
            }
            let mut tags = tx.open_table(TAGS)?;
            for t in &changes.delete_tags {
                tags.remove(t.as_str())?;
            }
            for (t, d) in &changes.put_tags {
                tags.insert(t.as_str(), d.to_string().as_str())?;
            }
        }
        tx.commit()?;
        let mut referenced = self.referenced();
        for rec in &changes.put_images {
            count(&mut referenced, &rec.blobs, 1);
        }
        for rec in &gone {
            count(&mut referenced, &rec.blobs, -1);
        }
        Ok(())
    }
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
    serde_json::from_slice(bytes).map_err(|e| Error::Database(format!("corrupt image record: {e}")))
}

/// Leases: one small write transaction each, apart from the image metadata.
impl Meta {
    /// Every lease's expiry, by ID.
    pub(crate) fn lease_expiries(&self) -> Result<BTreeMap<String, i64>> {
        let tx = self.db.begin_read()?;
        let mut out = BTreeMap::new();
        for row in tx.open_table(LEASE_EXPIRY)?.iter()? {
            let (k, v) = row?;
            out.insert(k.value().to_owned(), v.value());
        }
        Ok(out)
    }

    /// Every digest some lease holds: roots for collection.
    pub(crate) fn leased(&self) -> Result<HashSet<Digest>> {
        let tx = self.db.begin_read()?;
        let mut out = HashSet::new();
        for row in tx.open_table(LEASE_BLOBS)?.iter()? {
            let key = row?.0;
            let hex = key.value().rsplit_once('/').map_or("", |(_, hex)| hex);
            let digest = Digest::from_hex(hex).map_err(|e| {
                Error::Database(format!("corrupt lease entry {:?}: {e}", key.value()))
            })?;
            out.insert(digest);
        }
        Ok(out)
    }

    pub(crate) fn put_lease(&self, id: &str, expires_at: i64) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(LEASE_EXPIRY)?.insert(id, expires_at)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes the leases `ids` and what they hold; says which of them existed.
    pub(crate) fn delete_leases(&self, ids: &[String]) -> Result<Vec<String>> {
        let tx = self.db.begin_write()?;
        let mut gone = Vec::new();
        {
            let mut leases = tx.open_table(LEASE_EXPIRY)?;
            let mut blobs = tx.open_table(LEASE_BLOBS)?;
            for id in ids {
                if leases.remove(id.as_str())?.is_some() {
                    gone.push(id.clone());
                }
                // '0' follows '/': the range is exactly the keys `<id>/…`.
                let (from, to) = (format!("{id}/"), format!("{id}0"));
                blobs.retain_in(from.as_str()..to.as_str(), |_, ()| false)?;
            }
        }
        tx.commit()?;
        Ok(gone)
    }

    /// Adds `digest` to the lease `id`, which must exist and not have expired at `now`. At most
    /// [`MAX_LEASED_BLOBS`] (lease, blob) pairs exist across all leases.
    pub(crate) fn add_to_lease(&self, id: &str, digest: &Digest, now: i64) -> Result<()> {
        let tx = self.db.begin_write()?;
        match tx.open_table(LEASE_EXPIRY)?.get(id)?.map(|v| v.value()) {
            None => return Err(Error::NotFound(format!("no lease {id:?}"))),
            Some(at) if at <= now => {
                return Err(Error::NotFound(format!("lease {id:?} has expired")));
            }
            Some(_) => {}
        }
        {
            let mut blobs = tx.open_table(LEASE_BLOBS)?;
            let key = format!("{id}/{}", digest.hex());
            if blobs.get(key.as_str())?.is_some() {
                // Held already: nothing to commit (the dropped transaction aborts).
                return Ok(());
            }
            if blobs.len()? >= MAX_LEASED_BLOBS {
                return Err(Error::ResourceExhausted(format!(
                    "leases hold {MAX_LEASED_BLOBS} blobs in all; delete some leases first"
                )));
            }
            blobs.insert(key.as_str(), ())?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open(&dir.path().join("meta.redb")).unwrap();
        (dir, meta)
    }

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn a_lease_holds_each_blob_once_and_deleting_it_frees_only_its_own() {
        let (_dir, meta) = open();
        // "ab" is a prefix of "abc": deleting one must leave the other's keys.
        for id in ["ab", "abc"] {
            meta.put_lease(id, 100).unwrap();
        }
        meta.add_to_lease("ab", &d(1), 50).unwrap();
        meta.add_to_lease("ab", &d(1), 50).unwrap();
        meta.add_to_lease("ab", &d(2), 50).unwrap();
        meta.add_to_lease("abc", &d(3), 50).unwrap();
        assert_eq!(meta.leased().unwrap(), HashSet::from([d(1), d(2), d(3)]));
        let tx = meta.db.begin_read().unwrap();
        assert_eq!(tx.open_table(LEASE_BLOBS).unwrap().len().unwrap(), 3);
        drop(tx);

        assert!(matches!(
            meta.add_to_lease("ab", &d(4), 100),
            Err(Error::NotFound(m)) if m.contains("expired")
        ));
        assert!(matches!(
            meta.add_to_lease("nope", &d(4), 0),
            Err(Error::NotFound(_))
        ));
        assert_eq!(
            meta.delete_leases(&["ab".into(), "x".into()]).unwrap(),
            ["ab"]
        );
        assert_eq!(meta.leased().unwrap(), HashSet::from([d(3)]));
        assert_eq!(
            meta.lease_expiries().unwrap(),
            BTreeMap::from([("abc".into(), 100)])
        );
    }

    #[test]
    fn all_leases_together_hold_at_most_the_cap() {
        let (_dir, meta) = open();
        meta.put_lease("full", 100).unwrap();
        let tx = meta.db.begin_write().unwrap();
        {
            let mut blobs = tx.open_table(LEASE_BLOBS).unwrap();
            for n in 0..MAX_LEASED_BLOBS {
                blobs
                    .insert(format!("other/{n:064x}").as_str(), ())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        let e = meta.add_to_lease("full", &d(1), 0).unwrap_err();
        assert!(matches!(e, Error::ResourceExhausted(_)), "{e}");
    }

    #[test]
    fn a_store_with_the_old_lease_table_opens_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let db = Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        let old: TableDefinition<&str, &[u8]> = TableDefinition::new(OLD_LEASES);
        let json = br#"{"expires_at":1,"digests":[]}"#;
        tx.open_table(old)
            .unwrap()
            .insert("id", json.as_slice())
            .unwrap();
        tx.commit().unwrap();
        drop(db);
        let meta = Meta::open(&path).unwrap();
        assert!(meta.lease_expiries().unwrap().is_empty());
        let tx = meta.db.begin_read().unwrap();
        assert!(tx.open_table(old).is_err());
    }

    #[test]
    fn referenced_blobs_follow_the_committed_records() {
        let (dir, meta) = open();
        let rec = |n: u8, blobs: &[u8]| ImageRecord {
            digest: d(n),
            media_type: String::new(),
            size: 0,
            id: d(n),
            created: None,
            total_size: 0,
            platforms: vec![],
            blobs: blobs.iter().map(|b| d(*b)).collect(),
        };
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
}
