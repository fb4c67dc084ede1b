//! `system df` and `image prune`: the whole store's usage, and the removal of the images a prune
//! picks, freeing exactly what the usage called reclaimable when nothing changed in between.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use super::Images;
use crate::digest::Digest;
use crate::error::Result;
use crate::image::{ImageRecord, config_labels};
use crate::meta::{Meta, Reader, UsageTables, View, to_time};
use crate::ops::{self, Removed};
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
    /// Once cancelled (hyperd's shutdown), no further image is removed; those removed are
    /// reported.
    pub stop: Option<CancellationToken>,
}

/// What a prune removed (or, dry, would remove), and the bytes freed.
#[derive(Clone, Debug, Default)]
pub struct Pruned {
    /// What each removal did, by the image removed, in order; empty for a dry run.
    pub removed: Vec<(Digest, Vec<Removed>)>,
    /// The images removed (for a dry run, that would be), by top-level digest: not those
    /// pinned, tagged or removed by someone else between the pick and their removal.
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
        let picked = self.pick(opts, &images).await?;
        if !opts.dry_run {
            return self.remove_picked(opts, &picked, &sizes).await;
        }
        let chosen: HashSet<&Digest> = picked.iter().map(|i| &i.digest).collect();
        let freed = usage::freed_by(&images, |i| chosen.contains(&i.digest), &sizes, &held);
        Ok(Pruned {
            removed: Vec::new(),
            images: picked.iter().map(|i| i.digest.clone()).collect(),
            freed,
        })
    }

    /// The images of `images` that `opts` picks, label filters included.
    async fn pick<'a>(
        self,
        opts: &PruneOptions,
        images: &'a [UsageImage],
    ) -> Result<Vec<&'a UsageImage>> {
        let mut picked = Vec::new();
        for image in images.iter().filter(|i| picks(opts, i)) {
            if self.labels_pass(opts, image).await? {
                picked.push(image);
            }
        }
        Ok(picked)
    }

    /// Removes those of `picked` that `opts` still picks, each checked and removed in one step
    /// under the commit lock; the bytes freed are those of their blobs now gone.
    async fn remove_picked(
        self,
        opts: &PruneOptions,
        picked: &[&UsageImage],
        sizes: &HashMap<Digest, u64>,
    ) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let mut blobs_of_removed = HashSet::new();
        for image in picked {
            if opts
                .stop
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
            {
                break;
            }
            if let Some(removed) = self.remove_if_picked(opts, &image.digest).await? {
                pruned.removed.push((image.digest.clone(), removed));
                pruned.images.push(image.digest.clone());
                blobs_of_removed.extend(image.blobs.iter());
            }
        }
        let blobs = &self.0.inner.blobs;
        pruned.freed = blobs_of_removed
            .into_iter()
            .filter(|b| !blobs.exists(b))
            .map(|b| sizes.get(b).copied().unwrap_or(0))
            .sum();
        tracing::info!(images = pruned.images.len(), freed = pruned.freed, "pruned");
        Ok(pruned)
    }

    /// Removes the image `digest` if `opts` still picks it as the store is now (it may have
    /// been pinned, tagged or removed since it was picked); `None` when it is kept or gone.
    /// The labels are not read again: an image's config never changes.
    async fn remove_if_picked(
        self,
        opts: &PruneOptions,
        digest: &Digest,
    ) -> Result<Option<Vec<Removed>>> {
        let target = digest.to_string();
        self.remove_if(&target, digest, |_, image| Ok(picks(opts, image)))
            .await
    }

    /// Removes what `target` names (the image `digest` whole, or one of its names) if `still`
    /// holds of that image as the store is now: checked and removed in one step under the
    /// commit lock, then what it alone kept is collected. `None` when it is kept or gone.
    pub(super) async fn remove_if(
        self,
        target: &str,
        digest: &Digest,
        still: impl FnOnce(&Reader, &UsageImage) -> Result<bool>,
    ) -> Result<Option<Vec<Removed>>> {
        let inner = &self.0.inner;
        let (removed, freed) = {
            let _guard = inner.commit.lock().await;
            let read = inner.meta.read()?;
            let Some(record) = read.image(digest)? else {
                return Ok(None);
            };
            let tables = read.usage_tables()?;
            if !still(&read, &usage_image(&inner.meta, &read, &tables, record)?)? {
                return Ok(None);
            }
            let (changes, removed) = ops::plan_remove(&read, target, true)?;
            (removed, inner.meta.apply(&changes)?)
        };
        self.0.collect_committed(&freed).await;
        Ok(Some(removed))
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
        let images = self.usage_images()?;
        let sizes = self.sizes_of(&images)?;
        Ok((images, sizes, self.0.inner.meta.leased()?))
    }

    /// Every image with what it keeps, its names, last use and pin.
    pub(super) fn usage_images(self) -> Result<Vec<UsageImage>> {
        let inner = &self.0.inner;
        let read = inner.meta.read()?;
        let tables = read.usage_tables()?;
        let mut images = Vec::new();
        read.each_image(|record| {
            images.push(usage_image(&inner.meta, &read, &tables, record)?);
            Ok(())
        })?;
        Ok(images)
    }

    /// The size of each blob `images` keep that is stored.
    pub(super) fn sizes_of(self, images: &[UsageImage]) -> Result<HashMap<Digest, u64>> {
        let blobs = &self.0.inner.blobs;
        let mut sizes = HashMap::new();
        for blob in images.iter().flat_map(|i| i.blobs.iter()) {
            if !sizes.contains_key(blob)
                && let Some(size) = blobs.size(blob)?
            {
                sizes.insert(blob.clone(), size);
            }
        }
        Ok(sizes)
    }
}

/// An image with its names and the blobs of the referrers that travel with it.
fn usage_image(
    meta: &Meta,
    read: &Reader,
    tables: &UsageTables,
    record: ImageRecord,
) -> Result<UsageImage> {
    let referrers = read.travelling(record.subjects())?;
    let (last_used, pinned) = meta.usage(tables, &record.digest)?;
    let mut blobs = record.blobs.clone();
    blobs.extend(referrers.iter().flat_map(|r| r.blobs.iter().cloned()));
    Ok(UsageImage {
        last_used: last_used.map(to_time),
        pinned,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::meta::Changes;
    use crate::meta::tests::{d, image};

    #[tokio::test]
    async fn an_image_pinned_between_the_pick_and_the_removal_is_kept_and_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let put = vec![
            image(1, &[1], &[1]),
            image(2, &[2], &[2]),
            image(3, &[3], &[3]),
        ];
        store
            .inner
            .meta
            .apply(&Changes {
                put_images: put,
                ..Changes::default()
            })
            .unwrap();
        let (images, opts) = (store.images(), PruneOptions::default());
        let (all, sizes, _) = images.usage_inputs().unwrap();
        let picked = images.pick(&opts, &all).await.unwrap();
        assert_eq!(picked.len(), 3);
        images.set_pinned(&d(1).to_string(), true).await.unwrap();
        images.remove(&d(3).to_string(), true).await.unwrap();
        let pruned = images.remove_picked(&opts, &picked, &sizes).await.unwrap();
        assert_eq!(pruned.images, [d(2)]);
        assert_eq!(pruned.removed.len(), 1);
        assert_eq!(pruned.removed[0].0, pruned.images[0]);
        let read = store.inner.meta.read().unwrap();
        let (_, pinned) = read.usage_tables().unwrap().stored(&d(1)).unwrap();
        assert!(read.image(&d(1)).unwrap().is_some() && pinned);
        assert!(read.image(&d(2)).unwrap().is_none());
    }
}
