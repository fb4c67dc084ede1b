//! Disk usage as `system df` shows it, and what a prune would free, from the images' blob lists
//! alone: a blob is freed when every image that uses it (itself or through a referrer that
//! travels with it) goes, and nothing else holds it. No I/O.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use crate::digest::Digest;
use crate::reference::ImageName;

/// An image with every blob it keeps: its own and those of the referrers that travel with it.
#[derive(Clone, Debug)]
pub(crate) struct UsageImage {
    pub(crate) digest: Digest,
    pub(crate) id: Digest,
    pub(crate) names: Vec<ImageName>,
    pub(crate) created: Option<String>,
    pub(crate) blobs: Vec<Digest>,
    /// How many referrers travel with it.
    pub(crate) referrers: u32,
    /// Its last use, and whether it is pinned (a prune never takes it).
    pub(crate) last_used: Option<SystemTime>,
    pub(crate) pinned: bool,
}

/// One image's share of the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageUsage {
    /// Its top-level manifest or index.
    pub digest: Digest,
    /// Its image ID.
    pub id: Digest,
    /// Its names; none for a dangling image.
    pub names: Vec<ImageName>,
    /// `created` from its config.
    pub created: Option<String>,
    /// Every blob it keeps.
    pub size: u64,
    /// Blobs no other image keeps: what removing it alone frees.
    pub unique: u64,
    /// Blobs another image keeps too.
    pub shared: u64,
    /// How many referrers travel with it.
    pub referrers: u32,
    /// When it was last used; `None` when no use was recorded.
    pub last_used: Option<SystemTime>,
    /// Pinned: no prune takes it, so none of its bytes are reclaimable.
    pub pinned: bool,
}

/// What `system df` reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Each image's share, in the store's order of image digests.
    pub images: Vec<ImageUsage>,
    /// Images with at least one name.
    pub tagged: u32,
    /// Referrers stored (signatures, SBOMs), counted with each image they travel with.
    pub referrers: u32,
    /// Every blob some image keeps, each once.
    pub bytes: u64,
    /// What pruning the dangling (untagged) images that are not pinned frees.
    pub reclaimable: u64,
}

/// Which images use each blob.
struct Users<'a>(HashMap<&'a Digest, Vec<usize>>);

impl<'a> Users<'a> {
    fn of(images: &'a [UsageImage]) -> Self {
        let mut users: HashMap<&Digest, Vec<usize>> = HashMap::new();
        for (i, image) in images.iter().enumerate() {
            let own: HashSet<&Digest> = image.blobs.iter().collect();
            for blob in own {
                users.entry(blob).or_default().push(i);
            }
        }
        Users(users)
    }

    /// Bytes of the blobs that only the images in `going` use, and nothing else holds.
    fn freed(
        &self,
        going: &HashSet<usize>,
        sizes: &HashMap<Digest, u64>,
        held: &HashSet<Digest>,
    ) -> u64 {
        self.0
            .iter()
            .filter(|(blob, users)| {
                !held.contains(**blob) && users.iter().all(|u| going.contains(u))
            })
            .map(|(blob, _)| sizes.get(*blob).copied().unwrap_or(0))
            .sum()
    }
}

/// Bytes of the blobs that only the images `going` picks use, and nothing else holds: what
/// removing those images frees.
pub(crate) fn freed_by(
    images: &[UsageImage],
    going: impl Fn(&UsageImage) -> bool,
    sizes: &HashMap<Digest, u64>,
    held: &HashSet<Digest>,
) -> u64 {
    let picked = (0..images.len()).filter(|&i| going(&images[i])).collect();
    Users::of(images).freed(&picked, sizes, held)
}

/// The usage of `images`, given each blob's size and the blobs something else holds (leases,
/// loads in flight).
pub(crate) fn disk_usage(
    images: Vec<UsageImage>,
    sizes: &HashMap<Digest, u64>,
    held: &HashSet<Digest>,
) -> DiskUsage {
    let users = Users::of(&images);
    let size = |b: &Digest| sizes.get(b).copied().unwrap_or(0);
    // A blob with one user is that image's own: what removing it alone frees.
    let mut unique = vec![0; images.len()];
    let mut kept = vec![0; images.len()];
    for (blob, users) in &users.0 {
        if let [only] = users[..] {
            unique[only] += size(blob);
        }
        for &u in users {
            kept[u] += size(blob);
        }
    }
    let dangling: HashSet<usize> = (0..images.len())
        .filter(|&i| images[i].names.is_empty())
        .collect();
    let reclaimed: HashSet<usize> = dangling
        .iter()
        .copied()
        .filter(|&i| !images[i].pinned)
        .collect();
    let bytes = users.0.keys().map(|b| size(b)).sum();
    let reclaimable = users.freed(&reclaimed, sizes, held);
    drop(users);
    let tagged = (images.len() - dangling.len()) as u32;
    let referrers = images.iter().map(|i| i.referrers).sum();
    let images = images
        .into_iter()
        .enumerate()
        .map(|(i, image)| ImageUsage {
            size: kept[i],
            unique: unique[i],
            shared: kept[i] - unique[i],
            digest: image.digest,
            id: image.id,
            names: image.names,
            created: image.created,
            referrers: image.referrers,
            last_used: image.last_used,
            pinned: image.pinned,
        })
        .collect();
    DiskUsage {
        images,
        tagged,
        referrers,
        bytes,
        reclaimable,
    }
}

/// Whether an image whose config has `have` for labels passes docker's prune filters: every one
/// of `labels` (`KEY` or `KEY=VALUE`) matches, and, when `not_labels` are given, not every one
/// of them does (docker's `label!=`).
pub(crate) fn labels_match(
    labels: &[String],
    not_labels: &[String],
    have: &BTreeMap<String, String>,
) -> bool {
    let all = |filters: &[String]| {
        filters.iter().all(|f| match f.split_once('=') {
            Some((k, v)) => have.get(k).is_some_and(|h| h == v),
            None => have.contains_key(f),
        })
    };
    all(labels) && (not_labels.is_empty() || !all(not_labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
            .parse()
            .unwrap()
    }

    fn image(n: u8, named: bool, blobs: &[u8]) -> UsageImage {
        UsageImage {
            digest: d(n),
            id: d(n + 100),
            names: if named {
                vec![format!("i{n}:1").parse().unwrap()]
            } else {
                vec![]
            },
            created: None,
            blobs: blobs.iter().map(|b| d(*b)).collect(),
            referrers: 0,
            last_used: None,
            pinned: false,
        }
    }

    #[test]
    fn label_filters_read_as_dockers() {
        let have: BTreeMap<String, String> = [("env", "test"), ("team", "")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into();
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = |l: &[&str], n: &[&str]| labels_match(&f(l), &f(n), &have);
        assert!(ok(&[], &[]));
        assert!(ok(&["env"], &[]) && ok(&["env=test", "team"], &[]) && ok(&["team="], &[]));
        assert!(!ok(&["env=prod"], &[]) && !ok(&["env", "other"], &[]));
        assert!(!ok(&[], &["env"]) && !ok(&[], &["env=test", "team"]));
        assert!(ok(&[], &["env=prod"]) && ok(&[], &["env", "other"]));
        assert!(!labels_match(&f(&["env"]), &[], &BTreeMap::new()));
    }

    #[test]
    fn shared_blobs_count_once_and_free_only_with_their_last_user() {
        let sizes: HashMap<Digest, u64> =
            (1..=5).map(|n| (d(n), 10u64.pow(n as u32 - 1))).collect();
        // 1 is shared by all three; 2 by the dangling pair; 3, 4, 5 are each one's own.
        let images = vec![
            image(10, true, &[1, 3]),
            image(11, false, &[1, 2, 4]),
            image(12, false, &[1, 2, 5, 5]),
        ];
        let usage = disk_usage(images, &sizes, &HashSet::new());
        assert_eq!(usage.bytes, 11111);
        assert_eq!((usage.tagged, usage.images.len()), (1, 3));
        // The dangling pair frees 2, 4 and 5; 1 stays with the tagged image.
        assert_eq!(usage.reclaimable, 10 + 1000 + 10000);
        let unique: Vec<(u64, u64, u64)> = usage
            .images
            .iter()
            .map(|i| (i.size, i.unique, i.shared))
            .collect();
        assert_eq!(
            unique,
            vec![(101, 100, 1), (1011, 1000, 11), (10011, 10000, 11)]
        );

        // A held blob is never reclaimable.
        let images = vec![image(11, false, &[2, 4])];
        let usage = disk_usage(images, &sizes, &HashSet::from([d(4)]));
        assert_eq!(usage.reclaimable, 10);

        // Nor is a pinned image's: a prune leaves it.
        let mut pinned = image(12, false, &[5]);
        pinned.pinned = true;
        let images = vec![image(11, false, &[2, 4]), pinned];
        let usage = disk_usage(images, &sizes, &HashSet::new());
        assert_eq!(usage.reclaimable, 1010);
    }
}
