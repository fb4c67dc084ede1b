//! Image and tag metadata in redb: a snapshot to read, one write transaction to change.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::limits::MAX_LEASE_DIGESTS;
use crate::reference::ImageName;

/// Full image name (`docker.io/library/busybox:latest`) -> top-level manifest or index digest.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
/// Top-level digest -> JSON [`ImageRecord`].
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Lease ID -> JSON [`LeaseRecord`]: blobs kept from collection until the lease expires.
const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");

/// What a lease holds, and until when (unix seconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct LeaseRecord {
    pub(crate) expires_at: i64,
    pub(crate) digests: Vec<Digest>,
}

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
        tx.open_table(LEASES)?;
        tx.commit()?;
        Ok(Meta { db })
    }

    pub(crate) fn snapshot(&self) -> Result<Snapshot> {
        let tx = self.db.begin_read()?;
        let mut snap = Snapshot::default();
        for row in tx.open_table(IMAGES)?.iter()? {
            let (_, v) = row?;
            let rec: ImageRecord = serde_json::from_slice(v.value())
                .map_err(|e| Error::Database(format!("corrupt image record: {e}")))?;
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
        {
            let mut images = tx.open_table(IMAGES)?;
            for d in &changes.delete_images {
                images.remove(d.to_string().as_str())?;
            }
            for rec in &changes.put_images {
                let json = serde_json::to_vec(rec).expect("image record serialises");
                images.insert(rec.digest.to_string().as_str(), json.as_slice())?;
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
        Ok(())
    }
}

/// Leases: one small write transaction each, apart from the image metadata.
impl Meta {
    /// Every lease's expiry, by ID.
    pub(crate) fn lease_expiries(&self) -> Result<BTreeMap<String, i64>> {
        let tx = self.db.begin_read()?;
        let mut out = BTreeMap::new();
        for row in tx.open_table(LEASES)?.iter()? {
            let (k, v) = row?;
            out.insert(k.value().to_owned(), parse_lease(v.value())?.expires_at);
        }
        Ok(out)
    }

    /// Every digest some lease holds: roots for collection.
    pub(crate) fn leased(&self) -> Result<HashSet<Digest>> {
        let tx = self.db.begin_read()?;
        let mut out = HashSet::new();
        for row in tx.open_table(LEASES)?.iter()? {
            out.extend(parse_lease(row?.1.value())?.digests);
        }
        Ok(out)
    }

    pub(crate) fn put_lease(&self, id: &str, lease: &LeaseRecord) -> Result<()> {
        let tx = self.db.begin_write()?;
        let json = serde_json::to_vec(lease).expect("lease record serialises");
        tx.open_table(LEASES)?.insert(id, json.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Removes the leases `ids`; says which of them existed.
    pub(crate) fn delete_leases(&self, ids: &[String]) -> Result<Vec<String>> {
        let tx = self.db.begin_write()?;
        let mut gone = Vec::new();
        {
            let mut leases = tx.open_table(LEASES)?;
            for id in ids {
                if leases.remove(id.as_str())?.is_some() {
                    gone.push(id.clone());
                }
            }
        }
        tx.commit()?;
        Ok(gone)
    }

    /// Adds `digest` to the lease `id`, which must exist and not have expired at `now`.
    pub(crate) fn add_to_lease(&self, id: &str, digest: &Digest, now: i64) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut leases = tx.open_table(LEASES)?;
            let mut lease = match leases.get(id)? {
                Some(v) => parse_lease(v.value())?,
                None => return Err(Error::NotFound(format!("no lease {id:?}"))),
            };
            if lease.expires_at <= now {
                return Err(Error::NotFound(format!("lease {id:?} has expired")));
            }
            if !lease.digests.contains(digest) {
                if lease.digests.len() >= MAX_LEASE_DIGESTS {
                    return Err(Error::ResourceExhausted(format!(
                        "lease {id:?} already holds {MAX_LEASE_DIGESTS} blobs"
                    )));
                }
                lease.digests.push(digest.clone());
                let json = serde_json::to_vec(&lease).expect("lease record serialises");
                leases.insert(id, json.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn parse_lease(bytes: &[u8]) -> Result<LeaseRecord> {
    serde_json::from_slice(bytes).map_err(|e| Error::Database(format!("corrupt lease record: {e}")))
}
