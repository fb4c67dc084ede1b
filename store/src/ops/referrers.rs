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
//! Collection. `plan_remove` and `plan_load` end with `settle`: every referrer whose chain of
//! subjects the change leaves reaching no stored image is deleted in the same transaction (`rmi`
//! prints each as `Deleted referrer:`). Only the subjects the change can orphan are looked at:
//! the manifests of the images it deletes and, in turn, the referrers it deletes. A referrer is a
//! root for its own blobs only, never for its subject, so it cannot keep a deleted image alive.
//! `hyperctl check` reports a referrer whose subject is gone (only damage makes one); `rmi` of a
//! tag left pointing nowhere deletes it, with every other referrer nothing holds.

use std::collections::{HashMap, HashSet};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::meta::{Changes, View};
use crate::referrer::ReferrerRecord;

/// Referrers that arrive with a load or from stored blobs.
#[derive(Clone, Copy, Default)]
pub(crate) struct Arriving<'a> {
    pub(crate) referrers: &'a [ReferrerRecord],
    /// Every manifest the archive holds, of the images a map picked or not, and its referrers;
    /// `None` when the referrers come from stored blobs (CreateImage).
    pub(crate) archive: Option<&'a HashSet<Digest>>,
}

/// Whether an image holds the manifest `subject` once `changes` commit.
fn image_holds(view: &impl View, changes: &Changes, subject: &Digest) -> Result<bool> {
    let put = changes.put_images.iter();
    if put
        .clone()
        .any(|r| r.digest == *subject || r.subjects().contains(subject))
    {
        return Ok(true);
    }
    let holders = view.holding(subject)?;
    Ok(holders.iter().any(|d| !changes.delete_images.contains(d)))
}

/// Whether the chain of subjects from `subject`, through arriving and stored referrers, reaches
/// an image the store holds once `changes` commit.
fn reaches_image(
    view: &impl View,
    changes: &Changes,
    arriving: &HashMap<&Digest, &ReferrerRecord>,
    subject: &Digest,
) -> Result<bool> {
    let mut subject = subject.clone();
    let mut seen = HashSet::new();
    while seen.insert(subject.clone()) {
        if image_holds(view, changes, &subject)? {
            return Ok(true);
        }
        subject = match arriving.get(&subject) {
            Some(r) => r.subject.clone(),
            None if changes.delete_referrers.contains(&subject) => return Ok(false),
            None => match view.referrer(&subject)? {
                Some(r) => r.subject,
                None => return Ok(false),
            },
        };
    }
    Ok(false)
}

/// Adds each arriving referrer whose chain of subjects reaches an image the store holds once
/// `changes` commit. One whose subject is in the archive but not loaded (a map left its image
/// out) is left out with it; one whose subject is neither stored nor in the archive is refused.
pub(super) fn keep_referrers(
    view: &impl View,
    changes: &mut Changes,
    arriving: Arriving<'_>,
) -> Result<()> {
    let by_digest: HashMap<&Digest, &ReferrerRecord> =
        arriving.referrers.iter().map(|r| (&r.digest, r)).collect();
    let mut kept: Vec<ReferrerRecord> = Vec::new();
    for r in arriving.referrers {
        if reaches_image(view, changes, &by_digest, &r.subject)? {
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
/// never keeps it alive. Only the subjects the change can orphan are looked at: the manifests of
/// the images it deletes, the referrers it deletes, and `also` (a name's image whose record is
/// gone). Returns the digests deleted.
pub(super) fn settle(
    view: &impl View,
    changes: &mut Changes,
    also: &[Digest],
) -> Result<Vec<Digest>> {
    let mut queue: Vec<Digest> = also.to_vec();
    queue.extend(changes.delete_referrers.iter().cloned());
    for d in &changes.delete_images {
        if let Some(rec) = view.image(d)? {
            queue.push(rec.digest.clone());
            queue.extend(rec.subjects().iter().cloned());
        }
    }
    let mut seen = HashSet::new();
    let mut deleted = Vec::new();
    while let Some(subject) = queue.pop() {
        if !seen.insert(subject.clone()) || still_held(view, changes, &subject)? {
            continue;
        }
        let arriving = changes
            .put_referrers
            .iter()
            .filter(|r| r.subject == subject);
        let mut orphaned: Vec<Digest> = arriving.map(|r| r.digest.clone()).collect();
        changes.put_referrers.retain(|r| r.subject != subject);
        for r in view.referrers_of(&subject)? {
            if !changes.delete_referrers.contains(&r.digest) {
                changes.delete_referrers.push(r.digest.clone());
                deleted.push(r.digest.clone());
            }
            orphaned.push(r.digest);
        }
        queue.extend(orphaned);
    }
    Ok(deleted)
}

/// Whether `subject` is still a manifest of the store once `changes` commit: an image's, or a
/// referrer's that stays.
fn still_held(view: &impl View, changes: &Changes, subject: &Digest) -> Result<bool> {
    if image_holds(view, changes, subject)?
        || changes.put_referrers.iter().any(|r| r.digest == *subject)
    {
        return Ok(true);
    }
    Ok(!changes.delete_referrers.contains(subject) && view.referrer(subject)?.is_some())
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
