//! The parts of one change, each in the write transaction `Meta::apply` opens, each keeping the
//! indexes of what it changes in step.

use std::collections::BTreeSet;

use redb::{ReadableTable, WriteTransaction};

use super::{BY_SUBJECT, Changes, IMAGES, REFERRERS, TAGS, index, parse, parse_image, used};
use crate::digest::Digest;
use crate::error::Result;
use crate::image::ImageRecord;
use crate::referrer::ReferrerRecord;

/// The images whose listing rows `changes` may change: those it puts or deletes, and those a
/// name it puts or deletes points at now or will.
pub(super) fn touched(tx: &WriteTransaction, changes: &Changes) -> Result<BTreeSet<Digest>> {
    let mut touched: BTreeSet<Digest> = changes.delete_images.iter().cloned().collect();
    touched.extend(changes.put_images.iter().map(|r| r.digest.clone()));
    touched.extend(changes.put_tags.iter().map(|(_, d)| d.clone()));
    let tags = tx.open_table(TAGS)?;
    let names = changes
        .put_tags
        .iter()
        .map(|(t, _)| t)
        .chain(&changes.delete_tags);
    for t in names {
        if let Some(d) = tags.get(t.as_str())? {
            touched.insert(d.value().parse()?);
        }
    }
    Ok(touched)
}

/// The image part of a change, with the ID and manifest indexes; returns the records it replaced
/// or deleted, whose blobs lose a reference.
pub(super) fn images(tx: &WriteTransaction, changes: &Changes) -> Result<Vec<ImageRecord>> {
    let mut gone = Vec::new();
    for d in &changes.delete_images {
        let old = tx
            .open_table(IMAGES)?
            .remove(d.to_string().as_str())?
            .map(|old| parse_image(old.value()))
            .transpose()?;
        if let Some(old) = old {
            index::index_image(tx, &old, false)?;
            used::forget(tx, d)?;
            gone.push(old);
        }
    }
    for rec in &changes.put_images {
        let json = serde_json::to_vec(rec).expect("image record serialises");
        let old = tx
            .open_table(IMAGES)?
            .insert(rec.digest.to_string().as_str(), json.as_slice())?
            .map(|old| parse_image(old.value()))
            .transpose()?;
        if let Some(old) = old {
            index::index_image(tx, &old, false)?;
            gone.push(old);
        }
        index::index_image(tx, rec, true)?;
    }
    Ok(gone)
}

/// The name part of a change, with each image's names kept as one key range.
pub(super) fn tags(tx: &WriteTransaction, changes: &Changes) -> Result<()> {
    let mut tags = tx.open_table(TAGS)?;
    let mut names = tx.open_table(index::IMAGE_NAMES)?;
    for t in &changes.delete_tags {
        if let Some(old) = tags.remove(t.as_str())? {
            names.remove(index::name_key(&old.value().parse()?, t).as_str())?;
        }
    }
    for (t, d) in &changes.put_tags {
        if let Some(old) = tags.insert(t.as_str(), d.to_string().as_str())? {
            names.remove(index::name_key(&old.value().parse()?, t).as_str())?;
        }
        names.insert(index::name_key(d, t).as_str(), ())?;
    }
    Ok(())
}

/// The referrer part of a change, with the subject index kept in step; returns the records it
/// replaced or deleted.
pub(super) fn referrers(tx: &WriteTransaction, changes: &Changes) -> Result<Vec<ReferrerRecord>> {
    let mut gone = Vec::new();
    let mut records = tx.open_table(REFERRERS)?;
    let mut by_subject = tx.open_table(BY_SUBJECT)?;
    let index_key = |r: &ReferrerRecord| format!("{}/{}", r.subject.hex(), r.digest.hex());
    for d in &changes.delete_referrers {
        if let Some(old) = records.remove(d.to_string().as_str())? {
            let old: ReferrerRecord = parse(old.value(), "referrer")?;
            by_subject.remove(index_key(&old).as_str())?;
            index::index_referrer(tx, &old, false)?;
            gone.push(old);
        }
    }
    for rec in &changes.put_referrers {
        let json = serde_json::to_vec(rec).expect("referrer record serialises");
        if let Some(old) = records.insert(rec.digest.to_string().as_str(), json.as_slice())? {
            let old: ReferrerRecord = parse(old.value(), "referrer")?;
            by_subject.remove(index_key(&old).as_str())?;
            index::index_referrer(tx, &old, false)?;
            gone.push(old);
        }
        by_subject.insert(index_key(rec).as_str(), ())?;
        index::index_referrer(tx, rec, true)?;
    }
    Ok(gone)
}

/// A change that puts an image or points a name at one uses it: stamped now, in the change's
/// own transaction (after the deletions, so a stamp lands only on a record that stays).
pub(super) fn stamp_used(tx: &WriteTransaction, changes: &Changes) -> Result<()> {
    let now = used::now_nanos();
    let put = changes.put_images.iter().map(|r| &r.digest);
    let named = changes.put_tags.iter().map(|(_, d)| d);
    used::stamp(tx, put.chain(named).map(|d| (d, now)))
}
