//! The indexes that let every single-image question read only that image's keys, kept in step
//! with the records inside the transaction that changes them:
//!
//! - `image_names`: `<image digest hex>/<full name>`, the names of an image as one key range;
//! - `image_ids`: `<ID hex>/<image digest hex>`, images by ID or ID prefix;
//! - `image_manifests`: `<manifest hex>/<image digest hex>`, for each manifest an image holds
//!   (its own, or those inside its index), which images hold it;
//! - `listing`: one row per tag and one per untagged image, under a key that sorts in the
//!   listing's order (`listing::row_key`), valued with what the row shows. A page of `images` is
//!   a range of it.
//!
//! A store made before the indexes existed gets them built at open, in one transaction
//! (`schema` records that they are).

use std::collections::BTreeSet;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{IMAGES, TAGS, parse, parse_image};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::listing::row_key;

pub(super) const IMAGE_NAMES: TableDefinition<&str, ()> = TableDefinition::new("image_names");
pub(super) const IMAGE_IDS: TableDefinition<&str, ()> = TableDefinition::new("image_ids");
pub(super) const IMAGE_MANIFESTS: TableDefinition<&str, ()> =
    TableDefinition::new("image_manifests");
pub(super) const LISTING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("listing");
/// Image digest hex -> the listing keys of its rows, concatenated (each prefixed by its length as
/// four bytes), so that its rows go even when its record is gone (damage that `rmi` repairs).
const LISTED: TableDefinition<&str, &[u8]> = TableDefinition::new("listed");
/// What the database's layout is at: `indexes` -> [`INDEXES`] once the indexes above are built.
const SCHEMA: TableDefinition<&str, u32> = TableDefinition::new("schema");
const INDEXES: u32 = 1;

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

/// Creates the index tables, and fills them when the store predates them.
pub(super) fn ensure(tx: &WriteTransaction) -> Result<()> {
    tx.open_table(IMAGE_NAMES)?;
    tx.open_table(IMAGE_IDS)?;
    tx.open_table(IMAGE_MANIFESTS)?;
    tx.open_table(LISTING)?;
    tx.open_table(LISTED)?;
    let built = tx.open_table(SCHEMA)?.get("indexes")?.map(|v| v.value());
    if built == Some(INDEXES) {
        return Ok(());
    }
    let mut digests = BTreeSet::new();
    let records: Vec<ImageRecord> = {
        let images = tx.open_table(IMAGES)?;
        let rows = images.iter()?;
        rows.map(|row| parse_image(row?.1.value()))
            .collect::<Result<_>>()?
    };
    for rec in &records {
        index_image(tx, rec, true)?;
        digests.insert(rec.digest.clone());
    }
    let tags: Vec<(String, String)> = {
        let tags = tx.open_table(TAGS)?;
        let rows = tags.iter()?;
        rows.map(|row| {
            let (k, v) = row?;
            Ok((k.value().to_owned(), v.value().to_owned()))
        })
        .collect::<Result<_>>()?
    };
    let mut names = tx.open_table(IMAGE_NAMES)?;
    for (name, digest) in &tags {
        let digest: Digest = digest.parse()?;
        names.insert(name_key(&digest, name).as_str(), ())?;
    }
    drop(names);
    relist(tx, &digests)?;
    tx.open_table(SCHEMA)?.insert("indexes", INDEXES)?;
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
        .map(|name| {
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
        })
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
        tx.delete_table(LISTING).unwrap();
        tx.delete_table(LISTED).unwrap();
        tx.delete_table(SCHEMA).unwrap();
        tx.commit().unwrap();
    }
}
