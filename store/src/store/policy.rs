//! The daemon's GC policy, the facade's side: it gathers what `policy.rs` decides from (every
//! image, the blobs held, the filesystem), then takes each step as a prune removes an image:
//! checked again and carried out in one step under the commit lock, so that an image pinned,
//! used, leased or renamed since the plan is left alone.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::Images;
use crate::digest::Digest;
use crate::error::Result;
use crate::ops::Removed;
use crate::policy::{self, Context, Filesystem, GcPolicy, Rule, Seen, Step};
use crate::reference::ImageName;
use crate::usage::UsageImage;

/// What one pass of the policy did.
#[derive(Clone, Debug, Default)]
pub struct Enforced {
    /// The filesystem when the pass began; `None` when the watermark rule is off.
    pub filesystem: Option<Filesystem>,
    /// Each step taken, in order.
    pub steps: Vec<Enforcement>,
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
    /// of an image with no recorded use). Reads nothing but the filesystem's size when only the
    /// watermark rule is set and the filesystem is under its high mark.
    pub async fn enforce(self, policy: &GcPolicy, started: SystemTime) -> Result<Enforced> {
        let inner = &self.0.inner;
        let filesystem = match policy.watermarks {
            Some(_) => Some(inner.blobs.filesystem()?),
            None => None,
        };
        let over = policy
            .watermarks
            .zip(filesystem)
            .is_some_and(|(marks, fs)| fs.above(marks.high));
        let mut enforced = Enforced {
            filesystem,
            steps: Vec::new(),
        };
        if !over && policy.keep.is_none() && policy.max_unused.is_none() {
            return Ok(enforced);
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
            filesystem,
        };
        let by_digest: HashMap<&Digest, &UsageImage> =
            images.iter().map(|i| (&i.digest, i)).collect();
        for step in policy::plan(policy, &images, &cx) {
            let blobs = by_digest.get(&step.digest).map_or(&[][..], |i| &i.blobs);
            if let Some(done) = self.take(&step, blobs).await? {
                enforced.steps.push(done);
            }
        }
        Ok(enforced)
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
        let mut removed = Vec::new();
        if step.untag.is_empty() {
            let still = |image: &UsageImage| self.untouched(image, &step.seen, None);
            let target = step.digest.to_string();
            removed = self
                .remove_if(&target, &step.digest, still)
                .await?
                .unwrap_or_default();
        }
        for name in &step.untag {
            let still = |image: &UsageImage| self.untouched(image, &step.seen, Some(name));
            let done = self.remove_if(&name.full(), &step.digest, still).await?;
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
        let pinned = inner.blobs.pinned();
        for blob in &image.blobs {
            if pinned.contains(blob) || inner.meta.is_leased(blob)? {
                return Ok(false);
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

    #[tokio::test]
    async fn a_step_is_skipped_when_its_image_was_pinned_used_or_leased_since_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_of_four(dir.path()).await;
        let images = store.images();
        let all = images.usage_images().unwrap();
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
        let steps = policy::plan(&policy, &all, &cx);
        let planned: HashSet<&Digest> = steps.iter().map(|s| &s.digest).collect();
        assert_eq!(planned, HashSet::from([&d(1), &d(2), &d(3)]));
        let blob_of = |digest: &Digest| (1..=3).find(|&n| d(n) == *digest).map(|n| d(n + 10));

        images.set_pinned("app:1", true).await.unwrap();
        images.used(&d(2));
        let lease = store.leases().create(60).await.unwrap();
        store
            .leases()
            .hold_blobs(&lease.id, &[d(13)])
            .await
            .unwrap();
        for step in &steps {
            let blobs = [blob_of(&step.digest).unwrap()];
            assert!(images.take(step, &blobs).await.unwrap().is_none());
        }

        // A new plan: 2's use made it the most recently used, so 1, 3 and 4 go, each freeing
        // the blob it alone kept.
        store.leases().delete(&lease.id).await.unwrap();
        images.set_pinned("app:1", false).await.unwrap();
        let enforced = images.enforce(&policy, SystemTime::now()).await.unwrap();
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
