//! Image and tag metadata in redb: a snapshot to read, one write transaction to change.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::reference::ImageName;

/// Full image name (`docker.io/library/busybox:latest`) -> top-level manifest or index digest.
const TAGS: TableDefinition<&str, &str> = TableDefinition::new("tags");
/// Top-level digest -> JSON [`ImageRecord`].
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");

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
