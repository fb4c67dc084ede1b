//! The daemon's GC policy as a pure decision: given every image with its blobs, last use and pin,
//! the blobs something else holds, and how full the filesystem is, which images go and which
//! tags are dropped, in order. No I/O; the facade (`store/policy.rs`) gathers the inputs and
//! carries the plan out, checking each step again under the commit lock.
//!
//! Three rules, each off unless set, applied in this order:
//! - **unused** (`--gc-max-unused`): an image not used for that long goes. An image with no
//!   recorded use (stored by a version that did not record them) counts from hyperd's start,
//!   so an upgrade does not empty the store.
//! - **keep** (`--gc-keep N`): in each repository the tags of the N most recently used images
//!   (of those unused leaves) stay; the tags of older images there go, and an image that loses
//!   its last name goes. N counts images, not tags, so that `app:latest` and `app:1.2` naming
//!   one image count once.
//! - **watermark** (`--gc-high`, `--gc-low`): when the filesystem is fuller than `high` percent,
//!   images go least recently used first (never used first) until what they free brings it to
//!   `low` percent, as the kubelet collects.
//!
//! No rule touches an image that is pinned, that has a blob a lease or an operation in flight
//! holds (a load, save, pull, push or content write), or that was used within `min_age` (a
//! registry client between its manifest and its blobs, an image just stored).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use crate::blob::Filesystem;
use crate::digest::Digest;
use crate::reference::ImageName;
use crate::usage::UsageImage;

/// What the daemon's GC policy does; every rule is off unless set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcPolicy {
    /// Collect by disk use: when the filesystem is fuller than `high` percent, down to `low`.
    pub watermarks: Option<Watermarks>,
    /// Remove images not used for this long.
    pub max_unused: Option<Duration>,
    /// Keep the tags of this many most recently used images per repository.
    pub keep: Option<usize>,
    /// Never remove an image used more recently than this.
    pub min_age: Duration,
}

/// Percentages of the filesystem's size: above `high`, collect until at most `low` is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    /// Collect when more than this percent is used.
    pub high: u8,
    /// Collect until at most this percent is used.
    pub low: u8,
}

impl GcPolicy {
    /// Whether any rule is set.
    pub fn is_on(&self) -> bool {
        self.watermarks.is_some() || self.max_unused.is_some() || self.keep.is_some()
    }
}

/// Whether more than `percent` of `fs` is in use.
pub(crate) fn above(fs: Filesystem, percent: u8) -> bool {
    u128::from(fs.used()) * 100 > u128::from(fs.size) * u128::from(percent)
}

/// Bytes to free to bring the use of `fs` down to `percent`.
fn excess_over(fs: Filesystem, percent: u8) -> u64 {
    let allowed = u128::from(fs.size) * u128::from(percent) / 100;
    u64::try_from(u128::from(fs.used()).saturating_sub(allowed)).unwrap_or(u64::MAX)
}

/// Which rule decided a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// `--gc-keep`: more images in a repository than it keeps.
    Keep,
    /// `--gc-max-unused`: not used for too long.
    Unused,
    /// `--gc-high`: the filesystem was too full.
    Watermark,
}

impl Rule {
    /// The rule's name in events, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Keep => "keep",
            Rule::Unused => "unused",
            Rule::Watermark => "watermark",
        }
    }
}

/// One step of a plan: remove the image `digest` whole, or only drop `untag` of its names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) rule: Rule,
    pub(crate) digest: Digest,
    /// The names to drop; empty: the whole image goes.
    pub(crate) untag: Vec<ImageName>,
    /// The image as the plan saw it: a step is skipped when the image changed since.
    pub(crate) seen: Seen,
    /// For a keep step, per repository (`registry/repository`) it is dropped from, the images
    /// ranked above it there: the step is skipped once any of them is gone or no longer newer.
    pub(crate) newer: Vec<(String, Vec<Digest>)>,
}

/// What a step's image looked like when it was planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) names: Vec<ImageName>,
    pub(crate) last_used: Option<SystemTime>,
}

impl Seen {
    pub(crate) fn of(image: &UsageImage) -> Self {
        Seen {
            names: image.names.clone(),
            last_used: image.last_used,
        }
    }
}

/// When the plan is made, and what it may not touch.
pub(crate) struct Context<'a> {
    pub(crate) now: SystemTime,
    /// When hyperd started: the age of an image with no recorded use.
    pub(crate) started: SystemTime,
    /// Blobs a lease or an operation in flight holds.
    pub(crate) held: &'a HashSet<Digest>,
    /// Each blob's size; needed only when the watermark rule runs.
    pub(crate) sizes: &'a HashMap<Digest, u64>,
    /// The filesystem now; `None` when the watermark rule is off.
    pub(crate) filesystem: Option<Filesystem>,
}

impl Context<'_> {
    /// Whether any rule may touch `image`.
    pub(crate) fn may_take(&self, policy: &GcPolicy, image: &UsageImage) -> bool {
        let recent = image.last_used.is_some_and(|t| {
            self.now
                .duration_since(t)
                .map_or(true, |age| age < policy.min_age)
        });
        !image.pinned && !recent && !image.blobs.iter().any(|b| self.held.contains(b))
    }
}

/// What a pass does.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// In order: unused's, then keep's, then the watermark's.
    pub(crate) steps: Vec<Step>,
    /// Bytes the watermark rule wants freed (0 under the high mark); what the steps do not
    /// free of it leaves the filesystem over its low mark.
    pub(crate) excess: u64,
}

/// The steps the policy takes. Unused goes first, so that keep ranks only the images that
/// stay: an image removed for its age is not counted as one of a repository's newest.
pub(crate) fn plan(policy: &GcPolicy, images: &[UsageImage], cx: &Context) -> Plan {
    let mut steps = Vec::new();
    let mut going = HashSet::new();
    if let Some(max) = policy.max_unused {
        let oldest = cx.now.checked_sub(max).unwrap_or(SystemTime::UNIX_EPOCH);
        for image in images {
            let used = image.last_used.unwrap_or(cx.started);
            if used < oldest && cx.may_take(policy, image) {
                going.insert(image.digest.clone());
                steps.push(whole(Rule::Unused, image));
            }
        }
    }
    if let Some(n) = policy.keep {
        for step in keep(policy, n, images, cx, &going) {
            if step.untag.is_empty() {
                going.insert(step.digest.clone());
            }
            steps.push(step);
        }
    }
    let mut excess = 0;
    if let (Some(marks), Some(fs)) = (policy.watermarks, cx.filesystem)
        && above(fs, marks.high)
    {
        excess = excess_over(fs, marks.low);
        let taken = watermark(policy, images, cx, &going, excess);
        going.extend(taken.iter().map(|s| s.digest.clone()));
        steps.extend(taken);
    }
    // An image a later rule removes whole needs no earlier untag, which would only make the
    // removal's check see names other than those planned.
    steps.retain(|s| s.untag.is_empty() || !going.contains(&s.digest));
    Plan { steps, excess }
}

fn whole(rule: Rule, image: &UsageImage) -> Step {
    Step {
        rule,
        digest: image.digest.clone(),
        untag: Vec::new(),
        seen: Seen::of(image),
        newer: Vec::new(),
    }
}

/// How recently an image was used, as the policy orders images: by last use (never used
/// first), then by when it was created (unknown first), then by digest.
pub(crate) type Recency<'a> = (Option<SystemTime>, Option<SystemTime>, &'a Digest);

pub(crate) fn recency_of<'a>(
    last_used: Option<SystemTime>,
    created: Option<&str>,
    digest: &'a Digest,
) -> Recency<'a> {
    let created = created.and_then(|c| humantime::parse_rfc3339_weak(c).ok());
    (last_used, created, digest)
}

fn recency(image: &UsageImage) -> Recency<'_> {
    recency_of(image.last_used, image.created.as_deref(), &image.digest)
}

/// The keep rule's steps: per repository, the names of all but the `n` most recently used
/// images there (of those not `going` already), for the images the policy may take.
fn keep(
    policy: &GcPolicy,
    n: usize,
    images: &[UsageImage],
    cx: &Context,
    going: &HashSet<Digest>,
) -> Vec<Step> {
    let mut repositories: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
    for (i, image) in images.iter().enumerate() {
        if going.contains(&image.digest) {
            continue;
        }
        let mut seen = HashSet::new();
        for name in &image.names {
            let repo = (name.registry(), name.repository());
            if seen.insert(repo) {
                repositories.entry(repo).or_default().push(i);
            }
        }
    }
    let mut dropped: BTreeMap<usize, Step> = BTreeMap::new();
    for ((registry, repository), mut users) in repositories {
        users.sort_by_cached_key(|&i| std::cmp::Reverse(recency(&images[i])));
        let newer: Vec<Digest> = users
            .iter()
            .take(n)
            .map(|&i| images[i].digest.clone())
            .collect();
        for &i in users.iter().skip(n) {
            let image = &images[i];
            if !cx.may_take(policy, image) {
                continue;
            }
            let step = dropped.entry(i).or_insert_with(|| whole(Rule::Keep, image));
            let names = image
                .names
                .iter()
                .filter(|t| t.registry() == registry && t.repository() == repository);
            step.untag.extend(names.cloned());
            step.newer
                .push((format!("{registry}/{repository}"), newer.clone()));
        }
    }
    dropped
        .into_values()
        .map(|mut step| {
            // Every name dropped: the image goes whole.
            if step.untag.len() == step.seen.names.len() {
                step.untag.clear();
            }
            step
        })
        .collect()
}

/// The watermark rule's steps: the least recently used images the policy may take, until
/// they and what the rules before already remove (`going`) free `excess` bytes.
fn watermark(
    policy: &GcPolicy,
    images: &[UsageImage],
    cx: &Context,
    going: &HashSet<Digest>,
    excess: u64,
) -> Vec<Step> {
    let mut left = Remaining::of(images, cx);
    let mut freed = 0;
    for image in images.iter().filter(|i| going.contains(&i.digest)) {
        freed += left.remove(image);
    }
    let mut order: Vec<&UsageImage> = images
        .iter()
        .filter(|i| !going.contains(&i.digest) && cx.may_take(policy, i))
        .collect();
    order.sort_by_cached_key(|i| recency(i));
    let mut steps = Vec::new();
    for image in order {
        if freed >= excess {
            break;
        }
        freed += left.remove(image);
        steps.push(whole(Rule::Watermark, image));
    }
    steps
}

/// How many images still use each blob, as images are taken away one by one.
struct Remaining<'a> {
    users: HashMap<&'a Digest, usize>,
    cx: &'a Context<'a>,
}

impl<'a> Remaining<'a> {
    fn of(images: &'a [UsageImage], cx: &'a Context<'a>) -> Self {
        let mut users: HashMap<&Digest, usize> = HashMap::new();
        for image in images {
            for blob in image.blobs.iter().collect::<HashSet<_>>() {
                *users.entry(blob).or_default() += 1;
            }
        }
        Remaining { users, cx }
    }

    /// Takes `image` away; the bytes of the blobs it was the last user of, unless held.
    fn remove(&mut self, image: &UsageImage) -> u64 {
        let mut freed = 0;
        for blob in image.blobs.iter().collect::<HashSet<_>>() {
            let Some(n) = self.users.get_mut(blob) else {
                continue;
            };
            *n -= 1;
            if *n == 0 && !self.cx.held.contains(blob) {
                freed += self.cx.sizes.get(blob).copied().unwrap_or(0);
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests;
