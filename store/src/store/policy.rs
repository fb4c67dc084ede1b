//! The daemon's GC policy, the facade's side: it gathers what `policy.rs` decides from (every
//! image, the blobs held, the filesystem), then takes each step as a prune removes an image:
//! checked again and carried out in one step under the commit lock, so that an image pinned,
//! used, leased or renamed since the plan is left alone.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::Images;
use crate::blob::Filesystem;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::meta::{Reader, View, to_time};
use crate::ops::Removed;
use crate::policy::{self, Context, GcPolicy, Rule, Seen, Step};
use crate::reference::ImageName;
use crate::usage::UsageImage;

/// What one pass of the policy did.
#[derive(Debug, Default)]
pub struct Enforced {
    /// The filesystem when the pass began; `None` when the watermark rule is off (or its size
    /// could not be read, which is logged).
    pub filesystem: Option<Filesystem>,
    /// Each step taken, in order.
    pub steps: Vec<Enforcement>,
    /// Bytes the watermark rule found no image to free: the filesystem stays over its low
    /// mark (files other than the store's, or images pinned, held or recently used).
    pub short: u64,
    /// Why the pass ended early: the steps before it were taken all the same.
    pub failed: Option<Error>,
}

/// One step the policy took: an image removed, or some of its names dropped.
#[derive(Clone, Debug)]
pub struct Enforcement {
    /// The rule that decided it.
    pub rule: Rule,
    /// The image's top-level digest.
    pub digest: Digest,
    /// What the removal did, in docker's order.
    pub removed: Vec<Removed>,
    /// Bytes of the blobs deleted because of it.
    pub freed: u64,
}

impl Images<'_> {
    /// Runs the policy once, as the store is now; `started` is when hyperd started (the age
    /// of an image with no recorded use). No further step is taken once `stop` says so. Reads
    /// nothing but the filesystem's size when only the watermark rule is set and the
    /// filesystem is under its high mark.
    pub async fn enforce(
        self,
        policy: &GcPolicy,
        started: SystemTime,
        stop: impl Fn() -> bool,
    ) -> Enforced {
        let mut enforced = Enforced::default();
        if let Err(e) = self
            .enforce_into(policy, started, stop, &mut enforced)
            .await
        {
            enforced.failed = Some(e);
        }
        enforced
    }

    async fn enforce_into(
        self,
        policy: &GcPolicy,
        started: SystemTime,
        stop: impl Fn() -> bool,
        out: &mut Enforced,
    ) -> Result<()> {
        let inner = &self.0.inner;
        out.filesystem = policy.watermarks.and_then(|_| {
            inner
                .blobs
                .filesystem()
                .inspect_err(|e| tracing::warn!(error = %e, "GC policy: no watermark rule"))
                .ok()
        });
        let over = policy
            .watermarks
            .zip(out.filesystem)
            .is_some_and(|(marks, fs)| policy::above(fs, marks.high));
        if !over && policy.keep.is_none() && policy.max_unused.is_none() {
            return Ok(());
        }
        let images = self.usage_images()?;
        let sizes = if over {
            self.sizes_of(&images)?
        } else {
            HashMap::new()
        };
        let mut held = inner.meta.leased()?;
        held.extend(inner.blobs.pinned());
        let cx = Context {
            now: SystemTime::now(),
            started,
            held: &held,
            sizes: &sizes,
            filesystem: out.filesystem,
        };
        let plan = policy::plan(policy, &images, &cx);
        let by_digest: HashMap<&Digest, &UsageImage> =
            images.iter().map(|i| (&i.digest, i)).collect();
        for step in plan.steps {
            if stop() {
                break;
            }
            let blobs = by_digest.get(&step.digest).map_or(&[][..], |i| &i.blobs);
            if let Some(done) = self.take(&step, blobs).await? {
                out.steps.push(done);
            }
        }
        let freed: u64 = out.steps.iter().map(|s| s.freed).sum();
        out.short = plan.excess.saturating_sub(freed);
        Ok(())
    }

    /// Takes `step` if its image is as the plan saw it and nothing pins or holds it now;
    /// `blobs` are what it keeps, whose deletion counts as freed.
    async fn take(self, step: &Step, blobs: &[Digest]) -> Result<Option<Enforcement>> {
        let sizes: Vec<(&Digest, u64)> = blobs
            .iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .filter_map(|b| Some((b, self.0.inner.blobs.size(b).ok()??)))
            .collect();
        let still = |read: &Reader, image: &UsageImage, name: Option<&ImageName>| {
            Ok(self.untouched(image, &step.seen, name)? && self.still_newer(read, image, step)?)
        };
        let mut removed = Vec::new();
        if step.untag.is_empty() {
            let target = step.digest.to_string();
            let whole = |read: &Reader, image: &UsageImage| still(read, image, None);
            removed = self
                .remove_if(&target, &step.digest, whole)
                .await?
                .unwrap_or_default();
        }
        for name in &step.untag {
            let one = |read: &Reader, image: &UsageImage| still(read, image, Some(name));
            let done = self.remove_if(&name.full(), &step.digest, one).await?;
            removed.extend(done.into_iter().flatten());
        }
        if removed.is_empty() {
            return Ok(None);
        }
        let blobs = &self.0.inner.blobs;
        let freed = sizes
            .into_iter()
            .filter(|(b, _)| !blobs.exists(b))
            .map(|(_, size)| size)
            .sum();
        Ok(Some(Enforcement {
            rule: step.rule,
            digest: step.digest.clone(),
            removed,
            freed,
        }))
    }

    /// Whether `image` is still what the plan `seen` (its names, or only that it is still
    /// called `name` when one name is dropped, and its last use), and is neither pinned nor
    /// held by a lease or an operation in flight. Called under the commit lock.
    fn untouched(self, image: &UsageImage, seen: &Seen, name: Option<&ImageName>) -> Result<bool> {
        let same = match name {
            None => image.names == seen.names,
            Some(name) => image.names.contains(name),
        };
        if !same || image.last_used != seen.last_used || image.pinned {
            return Ok(false);
        }
        let inner = &self.0.inner;
        if inner.blobs.pins_any(&image.blobs) {
            return Ok(false);
        }
        for blob in &image.blobs {
            if inner.meta.is_leased(blob)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether the images a keep step ranked above `image` in each of its repositories
    /// (none for another rule's step) are all still named there and used more recently: a keep
    /// step planned while newer images were there is not taken once they are gone. A few keyed
    /// reads per newer image. Called under the commit lock.
    fn still_newer(self, read: &Reader, image: &UsageImage, step: &Step) -> Result<bool> {
        if step.newer.is_empty() {
            return Ok(true);
        }
        let tables = read.usage_tables()?;
        let this = policy::recency_of(image.last_used, image.created.as_deref(), &image.digest);
        for (repository, newer) in &step.newer {
            for other in newer {
                let Some(record) = read.image(other)? else {
                    return Ok(false);
                };
                let named_there = read
                    .names_of(other)?
                    .iter()
                    .any(|n| format!("{}/{}", n.registry(), n.repository()) == *repository);
                let used = self.0.inner.meta.usage(&tables, other)?.0.map(to_time);
                let created = record.created.as_deref();
                if !named_there || policy::recency_of(used, created, other) <= this {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use crate::meta::Changes;
    use crate::meta::tests::{d, image};

    /// Images 1 to 4 named `app:1` to `app:4`, each keeping one blob of its own (`n + 10`, one
    /// byte), stored one transaction each so that 4 is the most recently used.
    async fn store_of_four(dir: &std::path::Path) -> Store {
        let store = Store::open(dir).await.unwrap();
        for n in 1..=4u8 {
            let name: ImageName = format!("app:{n}").parse().unwrap();
            let changes = Changes {
                put_images: vec![image(n, &[n + 10], &[])],
                put_tags: vec![(name.full(), d(n))],
                ..Changes::default()
            };
            store.inner.meta.apply(&changes).unwrap();
            let blob = d(n + 10);
            std::fs::write(store.inner.blobs.path(&blob), [n + 10]).unwrap();
        }
        store
    }

    /// The steps `--gc-keep 1` plans for [`store_of_four`]: 1, 2 and 3 go.
    fn keep_one(store: &Store) -> (GcPolicy, Vec<Step>) {
        let all = store.images().usage_images().unwrap();
        let (held, sizes) = (HashSet::new(), HashMap::new());
        let cx = Context {
            now: SystemTime::now(),
            started: SystemTime::now(),
            held: &held,
            sizes: &sizes,
            filesystem: None,
        };
        let policy = GcPolicy {
            keep: Some(1),
            ..GcPolicy::default()
        };
        let steps = policy::plan(&policy, &all, &cx).steps;
        let planned: HashSet<&Digest> = steps.iter().map(|s| &s.digest).collect();
        assert_eq!(planned, HashSet::from([&d(1), &d(2), &d(3)]));
        (policy, steps)
    }

    /// The one blob image `digest` of [`store_of_four`] keeps.
    fn blob_of(digest: &Digest) -> [Digest; 1] {
        [(1..=4)
            .find(|&n| d(n) == *digest)
            .map(|n| d(n + 10))
            .unwrap()]
    }

    #[tokio::test]
    async fn a_keep_step_is_skipped_once_the_newer_images_went_or_a_load_holds_its_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of_four(dir.path()).await;
        let (_, mut steps) = keep_one(&store);
        steps.sort_by_key(|s| [d(1), d(2), d(3)].iter().position(|x| *x == s.digest));
        let images = store.images();
        // 1's blob is pinned by a load in flight; 2 goes.
        let mut in_flight = store.inner.blobs.lease();
        assert!(in_flight.pin(&store.inner.blobs, &d(11)));
        assert_eq!(taken(&images, &steps[..2]).await, [false, true]);
        // A rollback: the newest goes by hand before the pass gets to 3, which it ranked below
        // 4, so 3 stays as app's one image.
        images.remove("app:4", false).await.unwrap();
        assert_eq!(taken(&images, &steps[2..]).await, [false]);
        drop(in_flight);
        let left: HashSet<Digest> = images
            .usage_images()
            .unwrap()
            .into_iter()
            .map(|i| i.digest)
            .collect();
        assert_eq!(left, HashSet::from([d(1), d(3)]));
    }

    async fn taken(images: &Images<'_>, steps: &[Step]) -> Vec<bool> {
        let mut taken = Vec::new();
        for step in steps {
            let done = images.take(step, &blob_of(&step.digest)).await.unwrap();
            taken.push(done.is_some());
        }
        taken
    }

    #[tokio::test]
    async fn a_step_is_skipped_when_its_image_was_pinned_used_or_leased_since_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of_four(dir.path()).await;
        let (policy, steps) = keep_one(&store);
        let images = store.images();

        images.set_pinned("app:1", true).await.unwrap();
        images.used(&d(2));
        let lease = store.leases().create(60).await.unwrap();
        store
            .leases()
            .hold_blobs(&lease.id, &[d(13)])
            .await
            .unwrap();
        assert_eq!(taken(&images, &steps).await, [false; 3]);

        // A new plan: 2's use made it the most recently used, so 1, 3 and 4 go, each freeing
        // the blob it alone kept.
        store.leases().delete(&lease.id).await.unwrap();
        images.set_pinned("app:1", false).await.unwrap();
        let enforced = images.enforce(&policy, SystemTime::now(), || false).await;
        assert!(enforced.failed.is_none(), "{enforced:?}");
        let taken: HashSet<(Rule, Digest)> = enforced
            .steps
            .iter()
            .map(|s| (s.rule, s.digest.clone()))
            .collect();
        let keep = |n| (Rule::Keep, d(n));
        assert_eq!(taken, HashSet::from([keep(1), keep(3), keep(4)]));
        assert!(enforced.steps.iter().all(|s| s.freed == 1));
        let left = store.images().usage_images().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].digest, d(2));
    }
}
