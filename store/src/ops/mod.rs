//! What each metadata operation changes, decided from a snapshot. Pure: the store applies the
//! result in one transaction. What a change does to referrers is in `referrers.rs`.

mod referrers;

pub(crate) use referrers::Arriving;
use referrers::{keep_referrers, settle};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::meta::{Changes, Snapshot};
use crate::reference::ImageName;

/// What `remove` did, in the order docker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    /// A tag was removed.
    Untagged(ImageName),
    /// An image was deleted (its ID).
    Deleted(Digest),
    /// A referrer was deleted with its subject (its digest).
    Referrer(Digest),
}

/// How a user's IMAGE argument matched.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Tag(ImageName, Digest),
    Image(Digest),
}

/// Resolves IMAGE as docker does: a name first, then an image ID or an unambiguous ID prefix
/// (`sha256:` optional), then a top-level digest.
pub(crate) fn lookup(snap: &Snapshot, arg: &str) -> Result<Target> {
    if let Ok(name) = arg.parse::<ImageName>()
        && let Some(d) = snap.tags.get(&name.full())
    {
        return Ok(Target::Tag(name, d.clone()));
    }
    let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
    let is_hex = !hex.is_empty()
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if is_hex {
        let matches: Vec<&ImageRecord> = snap
            .images
            .values()
            .filter(|r| r.id.hex().starts_with(hex) || r.digest.hex() == hex)
            .collect();
        match matches.as_slice() {
            [one] => return Ok(Target::Image(one.digest.clone())),
            [] => {}
            _ => {
                return Err(Error::Conflict(format!(
                    "{arg:?} matches {} images; give more of the ID",
                    matches.len()
                )));
            }
        }
    }
    Err(Error::NotFound(format!("no such image: {arg}")))
}

pub(crate) fn plan_remove(
    snap: &Snapshot,
    arg: &str,
    force: bool,
) -> Result<(Changes, Vec<Removed>)> {
    let mut changes = Changes::default();
    let mut removed = Vec::new();
    let digest = match lookup(snap, arg)? {
        Target::Tag(name, digest) => {
            changes.delete_tags.push(name.full());
            removed.push(Removed::Untagged(name.clone()));
            // Untagging is all there is to do while other names remain, and it repairs a tag
            // whose record is missing (and the referrers of that record with it).
            let still_named = snap.names_of(&digest).iter().any(|t| *t != name);
            if still_named || !snap.images.contains_key(&digest) {
                removed.extend(
                    settle(snap, &mut changes)
                        .into_iter()
                        .map(Removed::Referrer),
                );
                return Ok((changes, removed));
            }
            digest
        }
        Target::Image(digest) => {
            let names = snap.names_of(&digest);
            if names.len() > 1 && !force {
                let id = &snap.record(&digest)?.id;
                return Err(Error::Conflict(format!(
                    "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    &id.hex()[..12]
                )));
            }
            for n in names {
                changes.delete_tags.push(n.full());
                removed.push(Removed::Untagged(n));
            }
            digest
        }
    };
    removed.push(Removed::Deleted(snap.record(&digest)?.id.clone()));
    changes.delete_images.push(digest);
    removed.extend(
        settle(snap, &mut changes)
            .into_iter()
            .map(Removed::Referrer),
    );
    Ok((changes, removed))
}

pub(crate) fn plan_tag(snap: &Snapshot, source: &str, target: &ImageName) -> Result<Changes> {
    let digest = match lookup(snap, source)? {
        Target::Tag(_, d) | Target::Image(d) => d,
    };
    snap.record(&digest)?;
    Ok(Changes {
        put_tags: vec![(target.full(), digest)],
        ..Changes::default()
    })
}

/// A load adds its images and points their names at them. A name that pointed elsewhere moves.
/// An image it leaves without names stays, untagged, as docker leaves a dangling image; unless it
/// has the same ID as the image the name moved to (the same image in another encoding, e.g. a
/// docker-archive of an OCI image), which docker would not show twice: that record goes, as does
/// an artifact, which is kept only under a name. Referrers whose subject the store holds once
/// the load commits are added; see [`keep_referrers`] for the others.
pub(crate) fn plan_load(
    snap: &Snapshot,
    images: &[(ImageRecord, Vec<ImageName>)],
    arriving: Arriving<'_>,
) -> Result<Changes> {
    let mut changes = Changes::default();
    let mut tags = snap.tags.clone();
    for (rec, names) in images {
        changes.put_images.push(rec.clone());
        for n in names {
            changes.put_tags.push((n.full(), rec.digest.clone()));
            tags.insert(n.full(), rec.digest.clone());
        }
    }
    let loaded: std::collections::HashSet<&Digest> =
        images.iter().map(|(r, _)| &r.digest).collect();
    for (old_digest, old) in &snap.images {
        let was_tagged = snap.tags.values().any(|d| d == old_digest);
        let still_tagged = tags.values().any(|d| d == old_digest);
        let replaced = images
            .iter()
            .any(|(r, _)| r.id == old.id && r.digest != *old_digest);
        if was_tagged && !still_tagged && (replaced || old.artifact) && !loaded.contains(old_digest)
        {
            changes.delete_images.push(old_digest.clone());
        }
    }
    keep_referrers(snap, &mut changes, arriving)?;
    settle(snap, &mut changes);
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn rec(n: u8, id: u8) -> ImageRecord {
        ImageRecord {
            digest: Digest::of(&[n]),
            media_type: String::new(),
            size: 0,
            id: Digest::of(&[id, id]),
            created: None,
            total_size: 0,
            platforms: vec![],
            blobs: vec![],
            manifests: vec![Digest::of(&[n])],
            artifact: false,
        }
    }

    pub(super) fn names(n: &str) -> Vec<ImageName> {
        vec![n.parse().unwrap()]
    }

    pub(super) fn none() -> Arriving<'static> {
        Arriving::default()
    }

    pub(super) fn snap(images: &[ImageRecord], tags: &[(&str, u8)]) -> Snapshot {
        let mut s = Snapshot::default();
        for r in images {
            s.images.insert(r.digest.clone(), r.clone());
        }
        for (t, n) in tags {
            s.tags
                .insert(t.parse::<ImageName>().unwrap().full(), Digest::of(&[*n]));
        }
        s
    }

    #[test]
    fn removing_one_of_two_tags_only_untags() {
        let s = snap(&[rec(1, 1)], &[("a:1", 1), ("b:1", 1)]);
        let (changes, removed) = plan_remove(&s, "a:1", false).unwrap();
        assert_eq!(changes.delete_tags, vec!["docker.io/library/a:1"]);
        assert!(changes.delete_images.is_empty());
        assert_eq!(removed, vec![Removed::Untagged("a:1".parse().unwrap())]);
    }

    #[test]
    fn removing_the_last_tag_deletes_the_image() {
        let s = snap(&[rec(1, 1)], &[("a:1", 1)]);
        // `a` means `a:latest`, which does not exist.
        assert!(matches!(
            plan_remove(&s, "a", false),
            Err(Error::NotFound(_))
        ));
        let (changes, removed) = plan_remove(&s, "a:1", false).unwrap();
        assert_eq!(changes.delete_images, vec![Digest::of(&[1])]);
        assert_eq!(removed.last(), Some(&Removed::Deleted(Digest::of(&[1, 1]))));
    }

    #[test]
    fn removing_by_id_with_many_tags_needs_force() {
        let s = snap(&[rec(1, 1)], &[("a:1", 1), ("b:1", 1)]);
        let id = Digest::of(&[1, 1]).hex()[..12].to_owned();
        assert!(matches!(
            plan_remove(&s, &id, false),
            Err(Error::Conflict(_))
        ));
        let (changes, removed) = plan_remove(&s, &id, true).unwrap();
        assert_eq!(changes.delete_tags.len(), 2);
        assert_eq!(removed.len(), 3);
    }

    #[test]
    fn lookup_by_unknown_name_or_id_is_not_found_and_ambiguous_prefix_conflicts() {
        let s = snap(&[rec(1, 1), rec(2, 2)], &[]);
        assert!(matches!(
            lookup(&s, "nothing:here"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(lookup(&s, "sha256:"), Err(Error::NotFound(_))));
        let a = Digest::of(&[1, 1]);
        assert_eq!(
            lookup(&s, &format!("sha256:{}", a.hex())).unwrap(),
            Target::Image(Digest::of(&[1]))
        );
    }

    #[test]
    fn a_name_moving_to_the_same_image_in_another_encoding_drops_the_old_record() {
        let old = rec(1, 7);
        let mut same_id = rec(2, 7);
        same_id.id = old.id.clone();
        let other_id = rec(3, 9);
        let s = snap(std::slice::from_ref(&old), &[("a:1", 1)]);
        let changes = plan_load(&s, &[(same_id.clone(), names("a:1"))], none()).unwrap();
        assert_eq!(changes.delete_images, vec![old.digest.clone()]);
        // A different image leaves the old one dangling, as docker does.
        let changes = plan_load(&s, &[(other_id, names("a:1"))], none()).unwrap();
        assert!(changes.delete_images.is_empty());
        // An old record that keeps another name stays.
        let s = snap(std::slice::from_ref(&old), &[("a:1", 1), ("b:1", 1)]);
        let changes = plan_load(&s, &[(same_id, names("a:1"))], none()).unwrap();
        assert!(changes.delete_images.is_empty());
    }

    #[test]
    fn a_tag_without_its_record_is_damage_to_report_and_removing_it_repairs() {
        let s = snap(&[], &[("a:1", 1)]);
        assert!(matches!(
            plan_tag(&s, "a:1", &"b:1".parse().unwrap()),
            Err(Error::Corrupt(m)) if m.contains(&Digest::of(&[1]).to_string())
        ));
        let (changes, removed) = plan_remove(&s, "a:1", false).unwrap();
        assert_eq!(changes.delete_tags, vec!["docker.io/library/a:1"]);
        assert!(changes.delete_images.is_empty());
        assert_eq!(removed, vec![Removed::Untagged("a:1".parse().unwrap())]);
    }

    #[test]
    fn tagging_points_a_name_at_the_source_image() {
        let s = snap(&[rec(1, 1)], &[("a:1", 1)]);
        let changes = plan_tag(&s, "a:1", &"b:2".parse().unwrap()).unwrap();
        assert_eq!(
            changes.put_tags,
            vec![("docker.io/library/b:2".to_owned(), Digest::of(&[1]))]
        );
    }
}
