//! Leases: each change one small write transaction, apart from the image metadata.

use std::collections::{BTreeMap, HashMap, HashSet};

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{LEASE_BLOBS, LEASE_EXPIRY, LEASE_INFO, Meta};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::limits::MAX_LEASED_BLOBS;

/// When a lease was made and by whom.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeaseMade {
    /// Unix seconds.
    pub(crate) created_at: i64,
    /// The uid of the client that asked for it; `None` for hyperd's own (a transfer's).
    pub(crate) owner: Option<u32>,
}

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

    /// Whether some lease holds `digest`: one range of the reverse index.
    pub(crate) fn is_leased(&self, digest: &Digest) -> Result<bool> {
        let tx = self.db.begin_read()?;
        let (from, to) = (format!("{}/", digest.hex()), format!("{}0", digest.hex()));
        let mut held = tx
            .open_table(BLOB_LEASES)?
            .range(from.as_str()..to.as_str())?;
        Ok(held.next().transpose()?.is_some())
    }

    /// Every digest some lease holds: roots for collection.
    pub(crate) fn leased(&self) -> Result<HashSet<Digest>> {
        let tx = self.db.begin_read()?;
        let mut out = HashSet::new();
        for row in tx.open_table(LEASE_BLOBS)?.iter()? {
            out.insert(leased_digest(row?.0.value())?);
        }
        Ok(out)
    }

    /// Who made each lease that says so, and when, by ID (see [`LeaseMade`]).
    pub(crate) fn lease_makers(&self) -> Result<HashMap<String, LeaseMade>> {
        let tx = self.db.begin_read()?;
        let mut out = HashMap::new();
        for row in tx.open_table(LEASE_INFO)?.iter()? {
            let (k, v) = row?;
            let (created_at, owner) = v.value();
            out.insert(k.value().to_owned(), LeaseMade { created_at, owner });
        }
        Ok(out)
    }

    /// How many blobs each lease holding any holds, by ID.
    pub(crate) fn lease_blob_counts(&self) -> Result<HashMap<String, u64>> {
        let tx = self.db.begin_read()?;
        let mut out: HashMap<String, u64> = HashMap::new();
        for row in tx.open_table(LEASE_BLOBS)?.iter()? {
            let key = row?.0;
            let id = key.value().rsplit_once('/').map_or("", |(id, _)| id);
            *out.entry(id.to_owned()).or_default() += 1;
        }
        Ok(out)
    }

    /// Stores lease `id`; `made` says when and by whom (the shared leases go without).
    pub(crate) fn put_lease(
        &self,
        id: &str,
        expires_at: i64,
        made: Option<LeaseMade>,
    ) -> Result<()> {
        let tx = self.db.begin_write()?;
        tx.open_table(LEASE_EXPIRY)?.insert(id, expires_at)?;
        if let Some(m) = made {
            tx.open_table(LEASE_INFO)?
                .insert(id, (m.created_at, m.owner))?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes the leases `ids`; returns those that existed and the blobs they held, which a
    /// collection then looks at.
    pub(crate) fn delete_leases(&self, ids: &[String]) -> Result<(Vec<String>, Vec<Digest>)> {
        let tx = self.db.begin_write()?;
        let mut gone = Vec::new();
        let mut held = Vec::new();
        {
            let mut leases = tx.open_table(LEASE_EXPIRY)?;
            let mut blobs = tx.open_table(LEASE_BLOBS)?;
            let mut info = tx.open_table(LEASE_INFO)?;
            let mut by_blob = tx.open_table(BLOB_LEASES)?;
            for id in ids {
                if leases.remove(id.as_str())?.is_some() {
                    gone.push(id.clone());
                }
                info.remove(id.as_str())?;
                // '0' follows '/': the range is exactly the keys `<id>/…`.
                let (from, to) = (format!("{id}/"), format!("{id}0"));
                let before = held.len();
                for row in blobs.range(from.as_str()..to.as_str())? {
                    held.push(leased_digest(row?.0.value())?);
                }
                blobs.retain_in(from.as_str()..to.as_str(), |_, ()| false)?;
                for digest in &held[before..] {
                    by_blob.remove(reverse_key(digest, id).as_str())?;
                }
            }
        }
        tx.commit()?;
        Ok((gone, held))
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
            tx.open_table(BLOB_LEASES)?
                .insert(reverse_key(digest, id).as_str(), ())?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// `<digest hex>/<lease ID>` -> nothing: the leases holding a blob, as one key range, so that a
/// collection asks about a blob without reading every lease.
const BLOB_LEASES: TableDefinition<&str, ()> = TableDefinition::new("blob_leases");

fn reverse_key(digest: &Digest, id: &str) -> String {
    format!("{}/{id}", digest.hex())
}

/// Creates the reverse index of the leased blobs, and builds it when it does not hold as many
/// keys as `lease_blobs` (a store from before it existed).
pub(super) fn ensure(tx: &redb::WriteTransaction) -> Result<()> {
    let forward = tx.open_table(LEASE_BLOBS)?;
    if tx.open_table(BLOB_LEASES)?.len()? == forward.len()? {
        return Ok(());
    }
    tx.delete_table(BLOB_LEASES)?;
    let mut reverse = tx.open_table(BLOB_LEASES)?;
    for row in forward.iter()? {
        let key = row?.0;
        let id = key.value().rsplit_once('/').map_or("", |(id, _)| id);
        reverse.insert(reverse_key(&leased_digest(key.value())?, id).as_str(), ())?;
    }
    Ok(())
}

/// The blob of a `<lease ID>/<digest hex>` key.
fn leased_digest(key: &str) -> Result<Digest> {
    let hex = key.rsplit_once('/').map_or("", |(_, hex)| hex);
    Digest::from_hex(hex).map_err(|e| Error::Database(format!("corrupt lease entry {key:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use redb::{Database, TableDefinition};

    use super::*;
    use crate::meta::OLD_LEASES;
    use crate::meta::tests::{d, open};

    #[test]
    fn a_lease_holds_each_blob_once_and_deleting_it_frees_only_its_own() {
        let (_dir, meta) = open();
        // "ab" is a prefix of "abc": deleting one must leave the other's keys.
        for id in ["ab", "abc"] {
            meta.put_lease(id, 100, None).unwrap();
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
            meta.delete_leases(&["ab".into(), "x".into()]).unwrap().0,
            ["ab"]
        );
        assert_eq!(meta.leased().unwrap(), HashSet::from([d(3)]));
        assert_eq!(
            meta.lease_expiries().unwrap(),
            BTreeMap::from([("abc".into(), 100)])
        );
        let leased = |n| meta.is_leased(&d(n)).unwrap();
        assert!(leased(3) && !leased(1) && !leased(2));
    }

    #[test]
    fn the_leases_of_a_blob_are_indexed_and_rebuilt_for_an_older_store() {
        let (dir, meta) = open();
        meta.put_lease("a", 100, None).unwrap();
        meta.put_lease("b", 100, None).unwrap();
        meta.add_to_lease("a", &d(1), 50).unwrap();
        meta.add_to_lease("b", &d(1), 50).unwrap();
        meta.delete_leases(&["a".into()]).unwrap();
        assert!(meta.is_leased(&d(1)).unwrap());
        meta.delete_leases(&["b".into()]).unwrap();
        assert!(!meta.is_leased(&d(1)).unwrap());
        meta.put_lease("c", 100, None).unwrap();
        meta.add_to_lease("c", &d(2), 50).unwrap();
        drop(meta);
        // A store from before the reverse index: it is built at open.
        let path = dir.path().join("meta.redb");
        let db = Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.delete_table(BLOB_LEASES).unwrap();
        tx.commit().unwrap();
        drop(db);
        let meta = Meta::open(&path).unwrap();
        assert!(meta.is_leased(&d(2)).unwrap() && !meta.is_leased(&d(1)).unwrap());
    }

    #[test]
    fn a_lease_keeps_who_made_it_until_it_is_deleted() {
        let (_dir, meta) = open();
        let made = LeaseMade {
            created_at: 7,
            owner: Some(1000),
        };
        meta.put_lease("mine", 100, Some(made)).unwrap();
        meta.put_lease("old", 100, None).unwrap();
        meta.add_to_lease("mine", &d(1), 50).unwrap();
        meta.add_to_lease("mine", &d(2), 50).unwrap();
        assert_eq!(
            meta.lease_makers().unwrap(),
            HashMap::from([("mine".into(), made)])
        );
        assert_eq!(
            meta.lease_blob_counts().unwrap(),
            HashMap::from([("mine".into(), 2)])
        );
        meta.delete_leases(&["mine".into()]).unwrap();
        assert!(meta.lease_makers().unwrap().is_empty());
    }

    #[test]
    fn all_leases_together_hold_at_most_the_cap() {
        let (_dir, meta) = open();
        meta.put_lease("full", 100, None).unwrap();
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
}
