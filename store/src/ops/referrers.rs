//! What a change does to referrers: which arriving ones a load keeps, refuses or leaves out,
//! and which stored ones lose their subject and go in the same transaction. Pure.
//!
//! Where referrers come from. A load keeps each referrer whose chain of subjects reaches an image
//! that is stored or arrives with it; one whose subject is in the archive but not loaded (`-r` left
//! its image out) is left out too; one whose subject is neither stored nor in the archive is
//! refused (FAILED_PRECONDITION naming both digests), and with it the whole load: nothing is
//! published or committed. Kept instead, it would be a record nothing could list, save or remove
//! with an image, and removing images would have to keep it or guess; refused, the user loads the
//! subject first and the same archive then loads. `CreateImage` of a manifest with a subject stores
//! a referrer the same way (`Store::create_referrer` is that path alone, for registry pulls); names
//! are then INVALID_ARGUMENT.
//!
//! Collection. `plan_remove` and `plan_load` end with `settle`: over the records as they will stand
//! after the change, every referrer not reached from a stored image's manifests through subjects is
//! deleted in the same transaction (`rmi` prints each as `Deleted referrer:`). A referrer is a root
//! for its own blobs only, never for its subject, so it cannot keep a deleted image alive.
//! `hyperctl check` reports a referrer whose subject is gone (only damage makes one), and the next
//! change to the store, such as `rmi` of the tag left pointing nowhere, deletes it.

use std::collections::{BTreeMap, HashSet};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::meta::{Changes, Snapshot};
use crate::referrer::{ReferrerRecord, orphans, travelling};

/// Referrers that arrive with a load or from stored blobs.
#[derive(Clone, Copy, Default)]
pub(crate) struct Arriving<'a> {
    pub(crate) referrers: &'a [ReferrerRecord],
    /// Every manifest the archive holds, of the images a map picked or not, and its referrers;
    /// `None` when the referrers come from stored blobs (CreateImage).
    pub(crate) archive: Option<&'a HashSet<Digest>>,
}

/// The image records as they stand once `changes` commit.
fn images_after<'a>(
    snap: &'a Snapshot,
    changes: &'a Changes,
) -> BTreeMap<&'a Digest, &'a ImageRecord> {
    let mut images: BTreeMap<&Digest, &ImageRecord> = snap.images.iter().collect();
    for d in &changes.delete_images {
        images.remove(d);
    }
    for r in &changes.put_images {
        images.insert(&r.digest, r);
    }
    images
}

/// Adds each arriving referrer whose chain of subjects reaches an image the store holds once
/// `changes` commit. One whose subject is in the archive but not loaded (a map left its image
/// out) is left out with it; one whose subject is neither stored nor in the archive is refused.
pub(super) fn keep_referrers(
    snap: &Snapshot,
    changes: &mut Changes,
    arriving: Arriving<'_>,
) -> Result<()> {
    if arriving.referrers.is_empty() {
        return Ok(());
    }
    let mut all = snap.referrers.clone();
    for r in arriving.referrers {
        all.insert(r.digest.clone(), r.clone());
    }
    let images = images_after(snap, changes);
    let present: Vec<&Digest> = images.values().flat_map(|r| r.subjects()).collect();
    let alive: HashSet<&Digest> = travelling(&all, &present)
        .into_iter()
        .map(|r| &r.digest)
        .collect();
    let mut kept = Vec::new();
    for r in arriving.referrers {
        if alive.contains(&r.digest) {
            if !kept.contains(r) {
                kept.push(r.clone());
            }
            continue;
        }
        let where_ = match arriving.archive {
            Some(archive) if archive.contains(&r.subject) => continue,
            Some(_) => "neither stored nor in the archive",
            None => "not stored",
        };
        let kind = r
            .artifact_type
            .as_ref()
            .map_or(String::new(), |t| format!(" ({t})"));
        return Err(Error::Conflict(format!(
            "referrer {}{kind} describes {}, which is {where_}: a referrer is kept only with \
             its subject, so load or create that first",
            r.digest, r.subject
        )));
    }
    changes.put_referrers.extend(kept);
    Ok(())
}

/// Adds to `changes` the deletion of every referrer whose chain of subjects reaches no image
/// once they commit, so that a referrer goes in the transaction that removes its subject and
/// never keeps it alive. Returns the digests deleted.
pub(super) fn settle(snap: &Snapshot, changes: &mut Changes) -> Vec<Digest> {
    let mut referrers = snap.referrers.clone();
    for d in &changes.delete_referrers {
        referrers.remove(d);
    }
    for r in &changes.put_referrers {
        referrers.insert(r.digest.clone(), r.clone());
    }
    let gone = {
        let images = images_after(snap, changes);
        let present: Vec<&Digest> = images.values().flat_map(|r| r.subjects()).collect();
        orphans(&referrers, &present)
    };
    let mut deleted = Vec::new();
    for d in gone {
        changes.put_referrers.retain(|r| r.digest != d);
        if snap.referrers.contains_key(&d) {
            changes.delete_referrers.push(d.clone());
            deleted.push(d);
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use crate::ops::tests::{names, none, rec, snap};
    use crate::ops::{Removed, plan_load, plan_remove};
    use crate::reference::ImageName;

    fn referrer(n: u8, subject: u8) -> ReferrerRecord {
        ReferrerRecord {
            digest: Digest::of(&[n]),
            media_type: String::new(),
            size: 0,
            artifact_type: Some("application/spdx+json".into()),
            annotations: BTreeMap::new(),
            subject: Digest::of(&[subject]),
            blobs: vec![Digest::of(&[n])],
        }
    }

    #[test]
    fn removing_an_image_removes_its_referrers_transitively_and_only_those() {
        let mut image = rec(1, 1);
        image.manifests = vec![Digest::of(&[1]), Digest::of(&[2])];
        let mut s = snap(&[image, rec(3, 3)], &[("a:1", 1), ("b:1", 3)]);
        // 10 describes the image, 11 a manifest inside it, 12 describes 10, 13 the other image.
        for r in [
            referrer(10, 1),
            referrer(11, 2),
            referrer(12, 10),
            referrer(13, 3),
        ] {
            s.referrers.insert(r.digest.clone(), r);
        }
        let (changes, removed) = plan_remove(&s, "a:1", false).unwrap();
        let mut gone = changes.delete_referrers.clone();
        gone.sort();
        let mut want: Vec<Digest> = [10, 11, 12].iter().map(|n| Digest::of(&[*n])).collect();
        want.sort();
        assert_eq!(gone, want);
        assert_eq!(
            removed
                .iter()
                .filter(|r| matches!(r, Removed::Referrer(_)))
                .count(),
            3
        );
        // Untagging alone keeps them.
        let s2 = {
            let mut s2 = s.clone();
            s2.tags.insert(name_full("c:1"), Digest::of(&[1]));
            s2
        };
        let (changes, _) = plan_remove(&s2, "a:1", false).unwrap();
        assert!(changes.delete_referrers.is_empty());
    }

    fn name_full(n: &str) -> String {
        n.parse::<ImageName>().unwrap().full()
    }

    #[test]
    fn a_load_keeps_referrers_of_what_is_stored_or_loaded_and_refuses_the_rest() {
        let s = snap(&[rec(1, 1)], &[("a:1", 1)]);
        let loaded = [(rec(2, 2), names("b:1"))];
        // Of the stored image, of the loaded one, and of one of those referrers.
        let arriving = [referrer(10, 1), referrer(11, 2), referrer(12, 11)];
        let archive: HashSet<Digest> = [2, 5, 11].iter().map(|n| Digest::of(&[*n])).collect();
        let with = |referrers| Arriving {
            referrers,
            archive: Some(&archive),
        };
        let changes = plan_load(&s, &loaded, with(&arriving)).unwrap();
        assert_eq!(changes.put_referrers, arriving);
        // A referrer of an image the archive holds but the map left out goes with it.
        let left_out = [referrer(13, 5)];
        let changes = plan_load(&s, &loaded, with(&left_out)).unwrap();
        assert!(changes.put_referrers.is_empty());
        // A referrer of nothing the archive or the store holds refuses the load.
        let stray = [referrer(10, 1), referrer(14, 9)];
        let e = plan_load(&s, &loaded, with(&stray)).unwrap_err();
        let subject = Digest::of(&[9]).to_string();
        assert!(
            matches!(&e, Error::Conflict(m) if m.contains(&subject) && m.contains("neither stored nor in the archive")),
            "{e}"
        );
        let from_blobs = Arriving {
            referrers: &stray[1..],
            archive: None,
        };
        let e = plan_load(&s, &[], from_blobs).unwrap_err();
        assert!(
            matches!(&e, Error::Conflict(m) if m.contains("is not stored")),
            "{e}"
        );
    }

    #[test]
    fn an_artifact_that_loses_its_last_name_goes_and_its_referrers_with_it() {
        let mut artifact = rec(1, 1);
        artifact.artifact = true;
        let mut s = snap(&[artifact], &[("chart:1", 1)]);
        let r = referrer(10, 1);
        s.referrers.insert(r.digest.clone(), r);
        let changes = plan_load(&s, &[(rec(2, 2), names("chart:1"))], none()).unwrap();
        assert_eq!(changes.delete_images, vec![Digest::of(&[1])]);
        assert_eq!(changes.delete_referrers, vec![Digest::of(&[10])]);
    }
}
