//! `check`: re-hash every blob and verify every reference.

use std::collections::HashSet;

use super::Store;
use crate::blob;
use crate::digest::Digest;
use crate::error::Result;

/// What `check` found.
#[derive(Clone, Debug, Default)]
pub struct CheckReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Blobs no image or referrer references (collected by the next `gc`).
    pub unreferenced: usize,
    /// Everything wrong, one line each; empty when the store is sound.
    pub problems: Vec<String>,
}

impl Store {
    /// Re-hashes every blob and checks that every tag, image and referrer has what it
    /// references, a referrer its subject too.
    pub async fn check(&self) -> Result<CheckReport> {
        let snap = self.inner.meta.snapshot()?;
        let mut report = CheckReport::default();
        for (tag, digest) in &snap.tags {
            if !snap.images.contains_key(digest) {
                report
                    .problems
                    .push(format!("tag {tag} points at missing image {digest}"));
            }
        }
        let images = snap.images.values().flat_map(|r| &r.blobs);
        let keep: HashSet<&Digest> = images
            .chain(snap.referrers.values().flat_map(|r| &r.blobs))
            .collect();
        for rec in snap.images.values() {
            for b in &rec.blobs {
                if !self.inner.blobs.exists(b) {
                    report
                        .problems
                        .push(format!("image {} lacks blob {b}", rec.digest));
                }
            }
        }
        let subjects: HashSet<&Digest> = snap
            .images
            .values()
            .flat_map(|r| r.subjects())
            .chain(snap.referrers.keys())
            .collect();
        for rec in snap.referrers.values() {
            if !subjects.contains(&rec.subject) {
                report.problems.push(format!(
                    "referrer {} describes {}, which is no longer stored",
                    rec.digest, rec.subject
                ));
            }
            for b in &rec.blobs {
                if !self.inner.blobs.exists(b) {
                    report
                        .problems
                        .push(format!("referrer {} lacks blob {b}", rec.digest));
                }
            }
        }
        for digest in self.inner.blobs.all()? {
            let mut file = self.inner.blobs.open_blob(&digest).await?;
            let hashed = blob::drain(&mut file, u64::MAX, &format!("blob {digest}")).await?;
            report.blobs_checked += 1;
            if hashed.digest != digest {
                report.problems.push(format!(
                    "blob {digest} is corrupt: its bytes hash to {}",
                    hashed.digest
                ));
            }
            if !keep.contains(&digest) {
                report.unreferenced += 1;
            }
        }
        Ok(report)
    }
}
