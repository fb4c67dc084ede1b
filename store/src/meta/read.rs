//! Direct lookups in one read transaction: a tag, a record, the referrers of a subject. What
//! answers one question about one image reads that image's keys, never the whole database.

use std::collections::HashSet;

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};

use super::index::{
    BLOB_USERS, IMAGE_IDS, IMAGE_MANIFESTS, IMAGE_NAMES, LISTING, ListRow, digest_after_slash,
    range_of,
};
use super::{BY_SUBJECT, IMAGES, Meta, REFERRERS, TAGS, View, parse, parse_image};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::reference::ImageName;
use crate::referrer::ReferrerRecord;

/// A consistent view for a few keyed reads.
pub(crate) struct Reader(ReadTransaction);

impl Meta {
    pub(crate) fn read(&self) -> Result<Reader> {
        Ok(Reader(self.db.begin_read()?))
    }
}

impl Reader {
    /// The read transaction, for the tables the modules beside this one keep (`used.rs`).
    pub(super) fn tx(&self) -> &ReadTransaction {
        &self.0
    }
}

impl View for Reader {
    fn tag(&self, name: &str) -> Result<Option<Digest>> {
        let tags = self.0.open_table(TAGS)?;
        let digest = tags.get(name)?.map(|v| v.value().parse()).transpose()?;
        Ok(digest)
    }

    fn names_of(&self, digest: &Digest) -> Result<Vec<ImageName>> {
        let (from, to) = range_of(&digest.hex());
        let mut names = Vec::new();
        for row in self
            .0
            .open_table(IMAGE_NAMES)?
            .range(from.as_str()..to.as_str())?
        {
            let key = row?.0;
            let name = key.value().split_once('/').map_or("", |(_, n)| n);
            // A name that no longer parses is not shown, as the snapshot never showed it.
            if let Ok(name) = name.parse() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn image(&self, digest: &Digest) -> Result<Option<ImageRecord>> {
        let images = self.0.open_table(IMAGES)?;
        let row = images.get(digest.to_string().as_str())?;
        row.map(|v| parse_image(v.value())).transpose()
    }

    fn with_id_prefix(&self, hex: &str, limit: usize) -> Result<Vec<Digest>> {
        let mut found = Vec::new();
        let images = self.0.open_table(IMAGES)?;
        for row in self.0.open_table(IMAGE_IDS)?.range(hex..)? {
            let key = row?.0;
            if !key.value().starts_with(hex) || found.len() == limit {
                break;
            }
            let image = digest_after_slash(key.value())?;
            // An image whose record is gone (damage) has no ID to be found by.
            if images.get(image.to_string().as_str())?.is_some() {
                found.push(image);
            }
        }
        Ok(found)
    }

    fn holding(&self, manifest: &Digest) -> Result<Vec<Digest>> {
        let (from, to) = range_of(&manifest.hex());
        let mut found = Vec::new();
        let images = self.0.open_table(IMAGES)?;
        for row in self
            .0
            .open_table(IMAGE_MANIFESTS)?
            .range(from.as_str()..to.as_str())?
        {
            let holder = digest_after_slash(row?.0.value())?;
            // A holder whose record is gone (damage) holds nothing.
            if images.get(holder.to_string().as_str())?.is_some() {
                found.push(holder);
            }
        }
        Ok(found)
    }

    fn referrer(&self, digest: &Digest) -> Result<Option<ReferrerRecord>> {
        let referrers = self.0.open_table(REFERRERS)?;
        let row = referrers.get(digest.to_string().as_str())?;
        row.map(|v| parse(v.value(), "referrer")).transpose()
    }

    fn all_subjects(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for row in self.0.open_table(REFERRERS)?.iter()? {
            let rec: ReferrerRecord = parse(row?.1.value(), "referrer")?;
            out.push(rec.subject);
        }
        Ok(out)
    }

    fn referrers_of(&self, subject: &Digest) -> Result<Vec<ReferrerRecord>> {
        let mut out = Vec::new();
        let (from, to) = range_of(&subject.hex());
        for row in self
            .0
            .open_table(BY_SUBJECT)?
            .range(from.as_str()..to.as_str())?
        {
            let digest = digest_after_slash(row?.0.value())?;
            let rec = self.referrer(&digest)?.ok_or_else(|| {
                Error::Corrupt(format!("referrer {digest} of {subject} has no record"))
            })?;
            out.push(rec);
        }
        Ok(out)
    }
}

impl Reader {
    /// Whether `subject` is a manifest the store holds: an image's, one inside an image's
    /// index, or a referrer's.
    pub(crate) fn holds_manifest(&self, subject: &Digest) -> Result<bool> {
        Ok(!self.holding(subject)?.is_empty() || self.referrer(subject)?.is_some())
    }

    /// Up to `limit` names under `registry` (`docker.io`, `127.0.0.1:5000`) for which `keep`
    /// holds, in name order, with the images they point at: one range of the tags.
    pub(crate) fn names_in(
        &self,
        registry: &str,
        limit: usize,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Result<Vec<(String, Digest)>> {
        let (from, to) = range_of(registry);
        let mut out = Vec::new();
        for row in self.0.open_table(TAGS)?.range(from.as_str()..to.as_str())? {
            if out.len() == limit {
                break;
            }
            let (name, digest) = row?;
            if keep(name.value()) {
                out.push((name.value().to_owned(), digest.value().parse()?));
            }
        }
        Ok(out)
    }

    /// Up to `limit` tags (full names) with the images they point at, in key order, from the
    /// key `from` (inclusive) to `to` (exclusive): one range of the tags.
    pub(crate) fn tags_between(
        &self,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<(String, Digest)>> {
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        for row in self.0.open_table(TAGS)?.range(from..to)?.take(limit) {
            let (name, digest) = row?;
            out.push((name.value().to_owned(), digest.value().parse()?));
        }
        Ok(out)
    }

    /// The listing rows after the key `after` (from the first with `None`) that `keep` keeps,
    /// at most `limit`, each with its key.
    pub(crate) fn list(
        &self,
        after: Option<&[u8]>,
        limit: usize,
        mut keep: impl FnMut(&ListRow) -> bool,
    ) -> Result<Vec<(Vec<u8>, ListRow)>> {
        let listing = self.0.open_table(LISTING)?;
        let rows = match after {
            Some(after) => listing
                .range::<&[u8]>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))?,
            None => listing.range::<&[u8]>(..)?,
        };
        let mut out = Vec::new();
        for row in rows {
            if out.len() == limit {
                break;
            }
            let (key, value) = row?;
            let row = ListRow::parse(value.value())?;
            if keep(&row) {
                out.push((key.value().to_vec(), row));
            }
        }
        Ok(out)
    }

    /// The image and referrer records that list `blob`, by digest: one key range.
    pub(crate) fn users_of(&self, blob: &Digest) -> Result<Vec<Digest>> {
        let (from, to) = range_of(&blob.hex());
        let mut users = Vec::new();
        for row in self
            .0
            .open_table(BLOB_USERS)?
            .range(from.as_str()..to.as_str())?
        {
            users.push(digest_after_slash(row?.0.value())?);
        }
        Ok(users)
    }

    /// Calls `each` with every image record, one at a time: for what must see them all (disk
    /// usage, prune), never for a question about one image.
    pub(crate) fn each_image(&self, mut each: impl FnMut(ImageRecord) -> Result<()>) -> Result<()> {
        for row in self.0.open_table(IMAGES)?.iter()? {
            each(parse_image(row?.1.value())?)?;
        }
        Ok(())
    }

    /// The referrers of `roots`, of those referrers, and so on, breadth first: the order
    /// `referrer::travelling` gives from all the records.
    pub(crate) fn travelling(&self, roots: &[Digest]) -> Result<Vec<ReferrerRecord>> {
        let mut seen: HashSet<Digest> = roots.iter().cloned().collect();
        let mut subjects: Vec<Digest> = roots.to_vec();
        let mut out: Vec<ReferrerRecord> = Vec::new();
        let mut next = 0;
        while let Some(subject) = subjects.get(next).cloned() {
            next += 1;
            for r in self.referrers_of(&subject)? {
                if seen.insert(r.digest.clone()) {
                    subjects.push(r.digest.clone());
                    out.push(r);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::meta::Changes;
    use crate::meta::tests::{d, image, open};
    use crate::referrer::travelling;

    fn referrer(n: u8, subject: u8) -> ReferrerRecord {
        crate::meta::tests::referrer(n, subject, &[n])
    }

    #[test]
    fn keyed_reads_answer_what_the_snapshot_does() {
        let (_dir, meta) = open();
        let image = image(1, &[1, 2, 3], &[2, 3]);
        // Referrers of both manifests, one of a referrer, and one of nothing stored.
        let referrers = vec![
            referrer(30, 3),
            referrer(20, 2),
            referrer(21, 2),
            referrer(40, 20),
            referrer(50, 99),
        ];
        meta.apply(&Changes {
            put_images: vec![image.clone()],
            put_tags: vec![("docker.io/library/a:1".into(), d(1))],
            put_referrers: referrers,
            ..Changes::default()
        })
        .unwrap();
        let read = meta.read().unwrap();
        assert_eq!(read.tag("docker.io/library/a:1").unwrap(), Some(d(1)));
        assert_eq!(read.tag("docker.io/library/b:1").unwrap(), None);
        assert_eq!(read.image(&d(1)).unwrap(), Some(image.clone()));
        assert_eq!(read.image(&d(2)).unwrap(), None);
        assert_eq!(read.referrer(&d(40)).unwrap().unwrap().subject, d(20));

        let snap = meta.snapshot().unwrap();
        let roots: Vec<&Digest> = image.subjects().iter().collect();
        let expected: Vec<ReferrerRecord> = travelling(&snap.referrers, &roots)
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(read.travelling(image.subjects()).unwrap(), expected);
        // Breadth first: both manifests' referrers (by digest), then the referrer's.
        let mut first = vec![d(20), d(21)];
        first.sort();
        let order: Vec<Digest> = expected.into_iter().map(|r| r.digest).collect();
        assert_eq!(order, [first, vec![d(30), d(40)]].concat());
    }
}
