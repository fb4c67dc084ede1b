//! [`View`]: the keyed questions the plans in `ops/` ask of the metadata. The database answers
//! them from its indexes in one read transaction (`read.rs`); in the tests a `Snapshot` answers
//! them from memory.

use crate::digest::Digest;
use crate::error::Result;
use crate::image::ImageRecord;
use crate::reference::ImageName;
use crate::referrer::ReferrerRecord;

#[cfg(test)]
use super::Snapshot;
use super::no_record;

/// How many images an ambiguous ID prefix names at most, for the message that lists them.
pub(crate) const AMBIGUOUS_SHOWN: usize = 10;

/// What a plan reads: each answer touches the keys of one image, name or subject.
pub(crate) trait View {
    /// The image the full name `name` points at.
    fn tag(&self, name: &str) -> Result<Option<Digest>>;
    /// The names pointing at the image `digest`, in name order.
    fn names_of(&self, digest: &Digest) -> Result<Vec<ImageName>>;
    /// The record of the image whose top-level digest is `digest`.
    fn image(&self, digest: &Digest) -> Result<Option<ImageRecord>>;
    /// The top-level digests of the images whose ID starts with `hex`, at most `limit`.
    fn with_id_prefix(&self, hex: &str, limit: usize) -> Result<Vec<Digest>>;
    /// The images (top-level digests) that hold the manifest `digest`: as their own, or inside
    /// their index.
    fn holding(&self, manifest: &Digest) -> Result<Vec<Digest>>;
    /// The record of the referrer `digest`.
    fn referrer(&self, digest: &Digest) -> Result<Option<ReferrerRecord>>;
    /// The referrers whose subject is `subject`.
    fn referrers_of(&self, subject: &Digest) -> Result<Vec<ReferrerRecord>>;

    /// The subject of every referrer: a scan of all of them, for repairing damage only.
    fn all_subjects(&self) -> Result<Vec<Digest>>;

    /// The record of the image `digest`, which a tag or lookup named. Its absence means the
    /// database is damaged (`hyperctl check` reports it), never a panic.
    fn record(&self, digest: &Digest) -> Result<ImageRecord> {
        self.image(digest)?.ok_or_else(|| no_record(digest))
    }
}

#[cfg(test)]
impl View for Snapshot {
    fn tag(&self, name: &str) -> Result<Option<Digest>> {
        Ok(self.tags.get(name).cloned())
    }

    fn names_of(&self, digest: &Digest) -> Result<Vec<ImageName>> {
        Ok(self
            .tags
            .iter()
            .filter(|(_, d)| *d == digest)
            .filter_map(|(t, _)| t.parse().ok())
            .collect())
    }

    fn image(&self, digest: &Digest) -> Result<Option<ImageRecord>> {
        Ok(self.images.get(digest).cloned())
    }

    fn with_id_prefix(&self, hex: &str, limit: usize) -> Result<Vec<Digest>> {
        let mut found: Vec<(String, Digest)> = self
            .images
            .values()
            .filter(|r| r.id.hex().starts_with(hex))
            .map(|r| (r.id.hex(), r.digest.clone()))
            .collect();
        found.sort();
        Ok(found.into_iter().take(limit).map(|(_, d)| d).collect())
    }

    fn holding(&self, manifest: &Digest) -> Result<Vec<Digest>> {
        Ok(self
            .images
            .values()
            .filter(|r| r.digest == *manifest || r.subjects().contains(manifest))
            .map(|r| r.digest.clone())
            .collect())
    }

    fn referrer(&self, digest: &Digest) -> Result<Option<ReferrerRecord>> {
        Ok(self.referrers.get(digest).cloned())
    }

    fn all_subjects(&self) -> Result<Vec<Digest>> {
        Ok(self.referrers.values().map(|r| r.subject.clone()).collect())
    }

    fn referrers_of(&self, subject: &Digest) -> Result<Vec<ReferrerRecord>> {
        Ok(self
            .referrers
            .values()
            .filter(|r| r.subject == *subject)
            .cloned()
            .collect())
    }
}
