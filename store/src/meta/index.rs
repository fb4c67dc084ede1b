//! The indexes that let every single-image question read only that image's keys, kept in step
//! with the records inside the transaction that changes them:
//!
//! - `image_names`: `<image digest hex>/<full name>`, the names of an image as one key range;
//! - `image_ids`: `<ID hex>/<image digest hex>`, images by ID or ID prefix;
//! - `image_manifests`: `<manifest hex>/<image digest hex>`, for each manifest an image holds
//!   (its own, or those inside its index), which images hold it;
//! - `blob_users`: `<blob hex>/<image or referrer digest hex>`, for each blob a record lists,
//!   which records list it: what a registry endpoint asks to tell whether a repository may see a
//!   blob, from the blob up rather than through every image of the repository;
//! - `listing`: one row per tag and one per untagged image, under a key that sorts in the
//!   listing's order (`listing::row_key`), valued with what the row shows. A page of `images` is
//!   a range of it.
//!
//! A store made before the indexes existed gets them built at open, in one transaction
//! (`schema` records that they are).

use std::collections::BTreeSet;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::{IMAGES, REFERRERS, TAGS, parse, parse_image};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::listing::row_key;
use crate::referrer::ReferrerRecord;

pub(super) const IMAGE_NAMES: TableDefinition<&str, ()> = TableDefinition::new("image_names");
pub(super) const IMAGE_IDS: TableDefinition<&str, ()> = TableDefinition::new("image_ids");
pub(super) const IMAGE_MANIFESTS: TableDefinition<&str, ()> =
    TableDefinition::new("image_manifests");
pub(super) const BLOB_USERS: TableDefinition<&str, ()> = TableDefinition::new("blob_users");
pub(super) const LISTING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("listing");
/// Image digest hex -> the listing keys of its rows, concatenated (each prefixed by its length as
/// four bytes), so that its rows go even when its record is gone (damage that `rmi` repairs).
const LISTED: TableDefinition<&str, &[u8]> = TableDefinition::new("listed");
/// What the database's layout is at: `indexes` -> [`INDEXES`] once the indexes above are built.
const SCHEMA: TableDefinition<&str, u32> = TableDefinition::new("schema");
/// 2: `blob_users` added; a store indexed at 1 is rebuilt.
const INDEXES: u32 = 2;

/// What a listing row shows, stored under its key so that a page reads no image record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ListRow {
    /// The full name, `None` for an untagged image.
    pub(crate) name: Option<String>,
    pub(crate) id: Digest,
    pub(crate) digest: Digest,
    pub(crate) created: Option<String>,
    pub(crate) size: u64,
    pub(crate) platforms: Vec<String>,
}

impl ListRow {
    /// The row of `rec` under `name` (a full name; `None`: untagged), with its key.
    pub(super) fn keyed(rec: &ImageRecord, name: Option<String>) -> (Vec<u8>, Self) {
        let key = row_key(rec.created.as_deref(), name.as_deref(), &rec.digest);
        let row = ListRow {
            name,
            id: rec.id.clone(),
            digest: rec.digest.clone(),
            created: rec.created.clone(),
            size: rec.total_size,
            platforms: rec.platforms.clone(),
        };
        (key, row)
    }

    pub(super) fn parse(bytes: &[u8]) -> Result<Self> {
        parse(bytes, "listing row")
    }
}

/// The key range `<hex>/…`: '0' follows '/'.
pub(super) fn range_of(hex: &str) -> (String, String) {
    (format!("{hex}/"), format!("{hex}0"))
}

/// The part of an index key after its `/`, as a digest.
pub(super) fn digest_after_slash(key: &str) -> Result<Digest> {
    let hex = key.rsplit_once('/').map_or("", |(_, hex)| hex);
    Digest::from_hex(hex).map_err(|e| Error::Database(format!("corrupt index key {key:?}: {e}")))
}

/// Builds the indexes anew when the store predates them or when they disagree with the records:
/// a build without them (an older hyperd run on this root) changed the records and left them as
/// they were. Checked in a read transaction; rebuilt, when it must be, in a write transaction of
/// its own (a crash in between leaves the schema mark unset, and the next open rebuilds).
pub(super) fn ensure(db: &Database) -> Result<()> {
    let read = db.begin_read()?;
    let built = match read.open_table(SCHEMA) {
        Ok(schema) => schema.get("indexes")?.map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if built == Some(INDEXES) && agree(&read)? {
        return Ok(());
    }
    drop(read);
    if built.is_some() {
        tracing::warn!("the metadata indexes disagree with the records; rebuilding them");
    }
    let tx = db.begin_write()?;
    rebuild(&tx)?;
    tx.open_table(SCHEMA)?.insert("indexes", INDEXES)?;
    tx.commit()?;
    Ok(())
}

/// Whether every name is in its image's key range and every image has its listing rows and an
/// ID key, as many as there are records: what a change made without the indexes breaks. Reads
/// every key once, parsing nothing.
pub(super) fn agree(tx: &ReadTransaction) -> Result<bool> {
    let (names, tags) = (tx.open_table(IMAGE_NAMES)?, tx.open_table(TAGS)?);
    if names.len()? != tags.len()? {
        return Ok(false);
    }
    for row in tags.iter()? {
        let (name, digest) = row?;
        let digest: Digest = digest.value().parse()?;
        if names
            .get(name_key(&digest, name.value()).as_str())?
            .is_none()
        {
            return Ok(false);
        }
    }
    let (images, listed) = (tx.open_table(IMAGES)?, tx.open_table(LISTED)?);
    let records = images.len()?;
    if listed.len()? != records || tx.open_table(IMAGE_IDS)?.len()? != records {
        return Ok(false);
    }
    for row in images.iter()? {
        let digest: Digest = row?.0.value().parse()?;
        if listed.get(digest.hex().as_str())?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Empties the indexes and fills them from the records, one record at a time.
fn rebuild(tx: &WriteTransaction) -> Result<()> {
    tx.delete_table(IMAGE_NAMES)?;
    tx.delete_table(IMAGE_IDS)?;
    tx.delete_table(IMAGE_MANIFESTS)?;
    tx.delete_table(BLOB_USERS)?;
    tx.delete_table(LISTING)?;
    tx.delete_table(LISTED)?;
    {
        let mut names = tx.open_table(IMAGE_NAMES)?;
        for row in tx.open_table(TAGS)?.iter()? {
            let (name, digest) = row?;
            let digest: Digest = digest.value().parse()?;
            names.insert(name_key(&digest, name.value()).as_str(), ())?;
        }
    }
    let mut digests = BTreeSet::new();
    for row in tx.open_table(IMAGES)?.iter()? {
        let rec = parse_image(row?.1.value())?;
        index_image(tx, &rec, true)?;
        digests.insert(rec.digest);
    }
    relist(tx, &digests)?;
    for row in tx.open_table(REFERRERS)?.iter()? {
        let rec: ReferrerRecord = parse(row?.1.value(), "referrer")?;
        index_referrer(tx, &rec, true)?;
    }
    // An empty store creates the tables here, so that a read finds them.
    tx.open_table(IMAGE_IDS)?;
    tx.open_table(IMAGE_MANIFESTS)?;
    tx.open_table(BLOB_USERS)?;
    tx.open_table(LISTING)?;
    tx.open_table(LISTED)?;
    Ok(())
}

pub(super) fn name_key(digest: &Digest, name: &str) -> String {
    format!("{}/{name}", digest.hex())
}

/// Adds (or removes) the ID and manifest keys of `rec`.
pub(super) fn index_image(tx: &WriteTransaction, rec: &ImageRecord, add: bool) -> Result<()> {
    let mut ids = tx.open_table(IMAGE_IDS)?;
    let mut manifests = tx.open_table(IMAGE_MANIFESTS)?;
    let id_key = format!("{}/{}", rec.id.hex(), rec.digest.hex());
    let held: BTreeSet<&Digest> = rec
        .subjects()
        .iter()
        .chain(std::iter::once(&rec.digest))
        .collect();
    let manifest_keys = held
        .into_iter()
        .map(|m| format!("{}/{}", m.hex(), rec.digest.hex()));
    if add {
        ids.insert(id_key.as_str(), ())?;
        for k in manifest_keys {
            manifests.insert(k.as_str(), ())?;
        }
    } else {
        ids.remove(id_key.as_str())?;
        for k in manifest_keys {
            manifests.remove(k.as_str())?;
        }
    }
    index_users(tx, &rec.blobs, &rec.digest, add)
}

/// Adds (or removes) the blob-user keys of a referrer's blobs.
pub(super) fn index_referrer(tx: &WriteTransaction, rec: &ReferrerRecord, add: bool) -> Result<()> {
    index_users(tx, &rec.blobs, &rec.digest, add)
}

fn index_users(tx: &WriteTransaction, blobs: &[Digest], user: &Digest, add: bool) -> Result<()> {
    let mut users = tx.open_table(BLOB_USERS)?;
    for blob in blobs {
        let key = format!("{}/{}", blob.hex(), user.hex());
        match add {
            true => users.insert(key.as_str(), ())?,
            false => users.remove(key.as_str())?,
        };
    }
    Ok(())
}

/// The listing rows of the image `digest` as the transaction holds it now: one per name, or one
/// untagged row; none without a record.
fn rows_of(tx: &WriteTransaction, digest: &Digest) -> Result<Vec<(Vec<u8>, ListRow)>> {
    let Some(rec) = tx
        .open_table(IMAGES)?
        .get(digest.to_string().as_str())?
        .map(|v| parse_image(v.value()))
        .transpose()?
    else {
        return Ok(Vec::new());
    };
    let mut names: Vec<Option<String>> = Vec::new();
    let (from, to) = range_of(&digest.hex());
    for row in tx
        .open_table(IMAGE_NAMES)?
        .range(from.as_str()..to.as_str())?
    {
        let key = row?.0;
        let name = key.value().split_once('/').map_or("", |(_, n)| n);
        names.push(Some(name.to_owned()));
    }
    if names.is_empty() {
        names.push(None);
    }
    Ok(names
        .into_iter()
        .map(|name| ListRow::keyed(&rec, name))
        .collect())
}

/// Removes the listing rows of `digests`, before a change to their records or names.
pub(super) fn unlist(tx: &WriteTransaction, digests: &BTreeSet<Digest>) -> Result<()> {
    let mut listed = tx.open_table(LISTED)?;
    let mut listing = tx.open_table(LISTING)?;
    for d in digests {
        let Some(keys) = listed.remove(d.hex().as_str())? else {
            continue;
        };
        let mut keys = keys.value();
        while let [a, b, c, d, rest @ ..] = keys {
            let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
            let (key, rest) = rest.split_at(len.min(rest.len()));
            listing.remove(key)?;
            keys = rest;
        }
    }
    Ok(())
}

/// Writes the listing rows of `digests` as they stand after a change.
pub(super) fn relist(tx: &WriteTransaction, digests: &BTreeSet<Digest>) -> Result<()> {
    for d in digests {
        let rows = rows_of(tx, d)?;
        if rows.is_empty() {
            continue;
        }
        let mut listing = tx.open_table(LISTING)?;
        let mut keys = Vec::new();
        for (key, row) in rows {
            let json = serde_json::to_vec(&row).expect("listing row serialises");
            listing.insert(key.as_slice(), json.as_slice())?;
            let len = u32::try_from(key.len()).expect("a listing key is under 4 GiB");
            keys.extend_from_slice(&len.to_be_bytes());
            keys.extend_from_slice(&key);
        }
        tx.open_table(LISTED)?
            .insert(d.hex().as_str(), keys.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use redb::Database;

    use super::*;

    /// Makes the database at `path` look as one written before the indexes existed.
    pub(in crate::meta) fn forget_indexes(path: &std::path::Path) {
        let db = Database::open(path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.delete_table(IMAGE_NAMES).unwrap();
        tx.delete_table(IMAGE_IDS).unwrap();
        tx.delete_table(IMAGE_MANIFESTS).unwrap();
        tx.delete_table(BLOB_USERS).unwrap();
        tx.delete_table(LISTING).unwrap();
        tx.delete_table(LISTED).unwrap();
        tx.delete_table(SCHEMA).unwrap();
        tx.commit().unwrap();
    }
}
