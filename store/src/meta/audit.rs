//! What `check` asks of the records: every tag's image, every record's blobs, every referrer's
//! subject, read record by record in one read transaction, so that checking a store of any
//! size holds one record at a time.

use redb::{ReadableDatabase, ReadableTable};

use super::{IMAGES, Meta, REFERRERS, TAGS, parse, parse_image};
use crate::digest::Digest;
use crate::error::Result;
use crate::referrer::ReferrerRecord;

impl Meta {
    /// What is wrong with the records: a tag without its image, a record without one of its
    /// blobs (`stored` says whether a blob is), a referrer whose subject nothing holds.
    pub(crate) fn audit(&self, stored: impl Fn(&Digest) -> bool) -> Result<Vec<String>> {
        let tx = self.db.begin_read()?;
        let mut problems = Vec::new();
        let images = tx.open_table(IMAGES)?;
        for row in tx.open_table(TAGS)?.iter()? {
            let (tag, digest) = row?;
            if images.get(digest.value())?.is_none() {
                problems.push(format!(
                    "tag {} points at missing image {}",
                    tag.value(),
                    digest.value()
                ));
            }
        }
        for row in images.iter()? {
            let rec = parse_image(row?.1.value())?;
            let lacking = rec.blobs.iter().filter(|b| !stored(b));
            problems.extend(lacking.map(|b| format!("image {} lacks blob {b}", rec.digest)));
        }
        drop(images);
        let read = self.read()?;
        for row in tx.open_table(REFERRERS)?.iter()? {
            let rec: ReferrerRecord = parse(row?.1.value(), "referrer")?;
            if !read.holds_manifest(&rec.subject)? {
                problems.push(format!(
                    "referrer {} describes {}, which is no longer stored",
                    rec.digest, rec.subject
                ));
            }
            let lacking = rec.blobs.iter().filter(|b| !stored(b));
            problems.extend(lacking.map(|b| format!("referrer {} lacks blob {b}", rec.digest)));
        }
        Ok(problems)
    }
}
