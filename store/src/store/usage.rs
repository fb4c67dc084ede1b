//! `system df` and `image prune`: the whole store's usage, and the removal of the images a prune
//! picks, freeing exactly what the usage called reclaimable when nothing changed in between.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::Images;
use crate::digest::Digest;
use crate::error::Result;
use crate::image::{ImageRecord, config_labels};
use crate::meta::{Meta, Reader, View, to_time};
use crate::ops::Removed;
use crate::usage::{self, DiskUsage, UsageImage};

/// Which images a prune removes.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Every image, not only the dangling (untagged) ones, as docker's `--all`.
    pub all: bool,
    /// Only images whose config says they were created before this time (docker's `until`);
    /// an image that says nothing, or something unreadable, is kept.
    pub created_before: Option<SystemTime>,
    /// Say what would go, and change nothing.
    pub dry_run: bool,
    /// Only images whose config has every one of these labels, `KEY` or `KEY=VALUE` (docker's
    /// `--filter label=…`).
    pub labels: Vec<String>,
    /// Not images whose config has every one of these (docker's `--filter label!=…`).
    pub not_labels: Vec<String>,
}

/// What a prune removed (or, dry, would remove), and the bytes freed.
#[derive(Clone, Debug, Default)]
pub struct Pruned {
    /// What each removal did, in order; empty for a dry run.
    pub removed: Vec<Removed>,
    /// The images picked, by top-level digest.
    pub images: Vec<Digest>,
    /// Bytes of the blobs deleted (for a dry run, that would be).
    pub freed: u64,
}

impl Images<'_> {
    /// What the images keep on disk, and what a prune of the dangling ones would free.
    pub fn disk_usage(self) -> Result<DiskUsage> {
        let (images, sizes, held) = self.usage_inputs()?;
        Ok(usage::disk_usage(images, &sizes, &held))
    }

    /// Removes the images `opts` picks, each with all its names and the referrers that travel
    /// with it, then collects what they alone kept.
    pub async fn prune(self, opts: &PruneOptions) -> Result<Pruned> {
        let (images, sizes, held) = self.usage_inputs()?;
        let mut picked = Vec::new();
        for image in images.iter().filter(|i| picks(opts, i)) {
            if self.labels_pass(opts, image).await? {
                picked.push(image);
            }
        }
        let digests: Vec<Digest> = picked.iter().map(|i| i.digest.clone()).collect();
        if opts.dry_run {
            let chosen: HashSet<&Digest> = digests.iter().collect();
            let freed = usage::freed_by(&images, |i| chosen.contains(&i.digest), &sizes, &held);
            return Ok(Pruned {
                removed: Vec::new(),
                images: digests,
                freed,
            });
        }
        let before: HashSet<Digest> = picked
            .iter()
            .flat_map(|i| i.blobs.iter().cloned())
            .collect();
        let mut removed = Vec::new();
        for digest in &digests {
            // Pinned since the images were read: kept, as a pinned image always is.
            if self.0.inner.meta.read()?.pinned(digest)? {
                continue;
            }
            match self.remove(&digest.to_string(), true).await {
                Ok(r) => removed.extend(r),
                // Removed meanwhile by someone else: nothing left to prune.
                Err(crate::Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let blobs = &self.0.inner.blobs;
        let freed = before
            .iter()
            .filter(|b| !blobs.exists(b))
            .map(|b| sizes.get(b).copied().unwrap_or(0))
            .sum();
        tracing::info!(images = digests.len(), freed, "pruned");
        Ok(Pruned {
            removed,
            images: digests,
            freed,
        })
    }

    /// Whether `image` passes the prune's label filters: its config (that of its ID) is read
    /// only when there are some.
    async fn labels_pass(self, opts: &PruneOptions, image: &UsageImage) -> Result<bool> {
        if opts.labels.is_empty() && opts.not_labels.is_empty() {
            return Ok(true);
        }
        let config = self.0.inner.blobs.read_json(&image.id).await?;
        let labels = config_labels(&config);
        Ok(usage::labels_match(&opts.labels, &opts.not_labels, &labels))
    }

    /// Every image with what it keeps, each kept blob's size, and the blobs leases hold.
    #[allow(clippy::type_complexity)]
    fn usage_inputs(self) -> Result<(Vec<UsageImage>, HashMap<Digest, u64>, HashSet<Digest>)> {
        let inner = &self.0.inner;
        let read = inner.meta.read()?;
        let mut images = Vec::new();
        read.each_image(|record| {
            images.push(usage_image(&inner.meta, &read, record)?);
            Ok(())
        })?;
        let mut sizes = HashMap::new();
        for blob in images.iter().flat_map(|i| i.blobs.iter()) {
            if !sizes.contains_key(blob)
                && let Some(size) = inner.blobs.size(blob)?
            {
                sizes.insert(blob.clone(), size);
            }
        }
        Ok((images, sizes, inner.meta.leased()?))
    }
}

/// An image with its names and the blobs of the referrers that travel with it.
fn usage_image(meta: &Meta, read: &Reader, record: ImageRecord) -> Result<UsageImage> {
    let referrers = read.travelling(record.subjects())?;
    let mut blobs = record.blobs.clone();
    blobs.extend(referrers.iter().flat_map(|r| r.blobs.iter().cloned()));
    Ok(UsageImage {
        last_used: meta.last_used(read, &record.digest)?.map(to_time),
        pinned: read.pinned(&record.digest)?,
        names: read.names_of(&record.digest)?,
        digest: record.digest,
        id: record.id,
        created: record.created,
        blobs,
        referrers: referrers.len() as u32,
    })
}

/// Whether a prune with `opts` takes `image`: never a pinned one.
fn picks(opts: &PruneOptions, image: &UsageImage) -> bool {
    let dangling = image.names.is_empty();
    let created = image
        .created
        .as_deref()
        .and_then(|c| humantime::parse_rfc3339_weak(c).ok());
    let old_enough = match (opts.created_before, created) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(before), Some(created)) => created < before,
    };
    (opts.all || dangling) && old_enough && !image.pinned
}
