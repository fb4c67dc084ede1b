//! `check`: re-hash every blob and verify every reference.

use std::collections::HashSet;

use super::Store;
use crate::digest::Digest;
use crate::error::Result;
use crate::progress::CheckProgress;

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
        self.check_counted(&CheckProgress::default()).await
    }

    /// [`Store::check`], counting the blobs in `progress` as they are re-hashed, on as many
    /// threads as the host has cores. Dropping the future stops the re-hashing at the next blob.
    pub async fn check_counted(&self, progress: &CheckProgress) -> Result<CheckReport> {
        let (mut problems, keep) = self.check_records()?;
        let digests = self.inner.blobs.all()?;
        let unreferenced = digests.iter().filter(|d| !keep.contains(d)).count();
        // Megabytes at 100,000 images, and the re-hashing has no use for it.
        drop(keep);
        let blobs_checked = digests.len();
        let mismatches = self.inner.blobs.rehash(digests, progress.clone()).await?;
        problems.extend(
            mismatches
                .into_iter()
                .map(|m| format!("blob {} is corrupt: its bytes hash to {}", m.name, m.actual)),
        );
        Ok(CheckReport {
            blobs_checked,
            unreferenced,
            problems,
        })
    }

    /// What is wrong with the records (a tag without its image, a record without its blobs, a
    /// referrer without its subject, indexes out of step), and every blob a record references.
    fn check_records(&self) -> Result<(Vec<String>, HashSet<Digest>)> {
        let meta = &self.inner.meta;
        let mut problems = Vec::new();
        if !meta.indexes_agree()? {
            problems.push(
                "the metadata indexes disagree with the records (did another build of hyperd \
                 change this store?); restarting hyperd rebuilds them"
                    .to_owned(),
            );
        }
        problems.extend(meta.audit(|b| self.inner.blobs.exists(b))?);
        Ok((problems, meta.referenced_blobs()))
    }
}
