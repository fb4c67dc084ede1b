//! What each metadata operation changes, decided from a snapshot. Pure: the store applies the
//! result in one transaction. What a change does to referrers is in `referrers.rs`.

mod referrers;

pub(crate) use referrers::Arriving;
use referrers::{keep_referrers, settle};

use std::collections::{BTreeSet, HashSet};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::meta::{AMBIGUOUS_SHOWN, Changes, View};
use crate::reference::{ImageName, by_digest};

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

/// Resolves IMAGE as docker does: a name first, then `NAME@DIGEST` (the image of that top-level
/// digest, which a name of that repository points at), then an image ID or an unambiguous ID
/// prefix (`sha256:` optional), or a top-level digest.
pub(crate) fn lookup(view: &impl View, arg: &str) -> Result<Target> {
    if let Ok(name) = arg.parse::<ImageName>()
        && let Some(d) = view.tag(&name.full())?
    {
        return Ok(Target::Tag(name, d));
    }
    if let Some((registry, repository, digest)) = by_digest(arg) {
        let names = view.names_of(&digest)?;
        return match names
            .iter()
            .any(|n| n.registry() == registry && n.repository() == repository)
        {
            true => Ok(Target::Image(digest)),
            false => Err(Error::NotFound(format!("no such image: {arg}"))),
        };
    }
    let hex = arg.strip_prefix("sha256:").unwrap_or(arg);
    let is_hex = !hex.is_empty()
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_hex {
        return Err(Error::NotFound(format!("no such image: {arg}")));
    }
    let mut matches: BTreeSet<Digest> = view
        .with_id_prefix(hex, AMBIGUOUS_SHOWN + 1)?
        .into_iter()
        .collect();
    if let Ok(digest) = Digest::from_hex(hex)
        && view.image(&digest)?.is_some()
    {
        matches.insert(digest);
    }
    let mut found = matches.iter();
    match (found.next(), found.len()) {
        (Some(one), 0) => Ok(Target::Image(one.clone())),
        (None, _) => Err(Error::NotFound(format!("no such image: {arg}"))),
        (Some(_), _) => Err(ambiguous(view, arg, &matches)),
    }
}

/// An ID that several images share (the same image from an OCI archive and a docker-archive)
/// or a prefix of several IDs: which images, and how to name each on its own.
fn ambiguous(view: &impl View, arg: &str, matches: &BTreeSet<Digest>) -> Error {
    let count = match matches.len() {
        n if n > AMBIGUOUS_SHOWN => format!("more than {AMBIGUOUS_SHOWN}"),
        n => n.to_string(),
    };
    let each: Vec<String> = matches
        .iter()
        .take(AMBIGUOUS_SHOWN)
        .map(
            |d| match view.names_of(d).ok().and_then(|n| n.into_iter().next()) {
                Some(name) => format!("{}@{d}", name.familiar_repository()),
                None => d.to_string(),
            },
        )
        .collect();
    Error::Conflict(format!(
        "{arg:?} matches {count} images; name one by its digest: {}",
        each.join(", ")
    ))
}

pub(crate) fn plan_remove(
    view: &impl View,
    arg: &str,
    force: bool,
) -> Result<(Changes, Vec<Removed>)> {
    let mut changes = Changes::default();
    let mut removed = Vec::new();
    let digest = match lookup(view, arg)? {
        Target::Tag(name, digest) => {
            changes.delete_tags.push(name.full());
            removed.push(Removed::Untagged(name.clone()));
            // Untagging is all there is to do while other names remain, and it repairs a tag
            // whose record is missing (and the referrers of that record with it).
            let still_named = view.names_of(&digest)?.iter().any(|t| *t != name);
            if still_named || view.image(&digest)?.is_none() {
                // A tag whose record is gone: the referrers of what that record held are found
                // among all whose subject nothing holds (damage only, so the scan is rare).
                let also = if still_named {
                    vec![]
                } else {
                    view.all_subjects()?
                };
                let gone = settle(view, &mut changes, &also)?;
                removed.extend(gone.into_iter().map(Removed::Referrer));
                return Ok((changes, removed));
            }
            digest
        }
        Target::Image(digest) => {
            let names = view.names_of(&digest)?;
            if names.len() > 1 && !force {
                let id = &view.record(&digest)?.id;
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
    removed.push(Removed::Deleted(view.record(&digest)?.id));
    changes.delete_images.push(digest);
    let gone = settle(view, &mut changes, &[])?;
    removed.extend(gone.into_iter().map(Removed::Referrer));
    Ok((changes, removed))
}

pub(crate) fn plan_tag(view: &impl View, source: &str, target: &ImageName) -> Result<Changes> {
    let digest = match lookup(view, source)? {
        Target::Tag(_, d) | Target::Image(d) => d,
    };
    view.record(&digest)?;
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
/// the load commits are added; see [`keep_referrers`] for the others. Reads only the names the
/// load gives and the images they pointed at.
pub(crate) fn plan_load(
    view: &impl View,
    images: &[(ImageRecord, Vec<ImageName>)],
    arriving: Arriving<'_>,
) -> Result<Changes> {
    let mut changes = Changes::default();
    let mut moved_from = BTreeSet::new();
    for (rec, names) in images {
        changes.put_images.push(rec.clone());
        for n in names {
            let full = n.full();
            if let Some(old) = view.tag(&full)?
                && old != rec.digest
            {
                moved_from.insert(old);
            }
            changes.put_tags.push((full, rec.digest.clone()));
        }
    }
    let loaded: HashSet<&Digest> = images.iter().map(|(r, _)| &r.digest).collect();
    let renamed: HashSet<&str> = changes.put_tags.iter().map(|(t, _)| t.as_str()).collect();
    let mut delete = Vec::new();
    for old_digest in moved_from.iter().filter(|d| !loaded.contains(d)) {
        let still_tagged = view
            .names_of(old_digest)?
            .iter()
            .any(|n| !renamed.contains(n.full().as_str()));
        let Some(old) = view.image(old_digest)? else {
            continue;
        };
        let replaced = images
            .iter()
            .any(|(r, _)| r.id == old.id && r.digest != *old_digest);
        if !still_tagged && (replaced || old.artifact) {
            delete.push(old_digest.clone());
        }
    }
    changes.delete_images = delete;
    keep_referrers(view, &mut changes, arriving)?;
    settle(view, &mut changes, &[])?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Snapshot;

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
    fn name_at_digest_names_one_of_two_images_sharing_an_id() {
        let (oci, mut docker) = (rec(1, 7), rec(2, 7));
        docker.id = oci.id.clone();
        let s = snap(
            &[oci.clone(), docker.clone()],
            &[("app:1", 1), ("app:2", 2)],
        );
        let id = oci.id.to_string();
        let e = lookup(&s, &id).unwrap_err();
        let want = format!("app@{}, app@{}", oci.digest, docker.digest);
        assert!(matches!(&e, Error::Conflict(m) if m.contains(&want)), "{e}");
        let at = |name: &str, d: &Digest| lookup(&s, &format!("{name}@{d}"));
        assert_eq!(
            at("app", &docker.digest).unwrap(),
            Target::Image(docker.digest.clone())
        );
        assert_eq!(
            at("docker.io/library/app", &oci.digest).unwrap(),
            Target::Image(oci.digest.clone())
        );
        // Another repository, or a digest no image has, names nothing.
        assert!(matches!(at("other", &oci.digest), Err(Error::NotFound(_))));
        assert!(matches!(
            at("app", &Digest::of(b"x")),
            Err(Error::NotFound(_))
        ));
        // The bare top-level digest names its image too.
        assert_eq!(
            lookup(&s, &docker.digest.to_string()).unwrap(),
            Target::Image(docker.digest.clone())
        );
        let (changes, _) = plan_remove(&s, &format!("app@{}", oci.digest), false).unwrap();
        assert_eq!(changes.delete_images, [oci.digest]);
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
