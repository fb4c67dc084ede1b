//! What each metadata operation changes, decided from a snapshot. Pure: the store applies the
//! result in one transaction.

use crate::digest::Digest;
use crate::meta::{Changes, ImageRecord, Snapshot};
use crate::reference::ImageName;
use crate::{Error, Result};

/// What `remove` did, in the order docker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    /// A tag was removed.
    Untagged(ImageName),
    /// An image was deleted (its ID).
    Deleted(Digest),
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
    let tags = |d: &Digest| -> Vec<ImageName> {
        snap.tags_of(d)
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect()
    };
    let digest = match lookup(snap, arg)? {
        Target::Tag(name, digest) => {
            changes.delete_tags.push(name.full());
            removed.push(Removed::Untagged(name.clone()));
            if tags(&digest).iter().any(|t| *t != name) {
                return Ok((changes, removed));
            }
            digest
        }
        Target::Image(digest) => {
            let names = tags(&digest);
            if names.len() > 1 && !force {
                let id = &snap.images[&digest].id;
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
    removed.push(Removed::Deleted(snap.images[&digest].id.clone()));
    changes.delete_images.push(digest);
    Ok((changes, removed))
}

pub(crate) fn plan_tag(snap: &Snapshot, source: &str, target: &ImageName) -> Result<Changes> {
    let digest = match lookup(snap, source)? {
        Target::Tag(_, d) | Target::Image(d) => d,
    };
    Ok(Changes {
        put_tags: vec![(target.full(), digest)],
        ..Changes::default()
    })
}

/// A load adds its images and points their names at them. A name that pointed elsewhere moves;
/// the image it left stays, untagged, as docker leaves a dangling image.
pub(crate) fn plan_load(images: &[(ImageRecord, Vec<ImageName>)]) -> Changes {
    let mut changes = Changes::default();
    for (rec, names) in images {
        changes.put_images.push(rec.clone());
        for n in names {
            changes.put_tags.push((n.full(), rec.digest.clone()));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8, id: u8) -> ImageRecord {
        ImageRecord {
            digest: Digest::of(&[n]),
            media_type: String::new(),
            size: 0,
            id: Digest::of(&[id, id]),
            created: None,
            total_size: 0,
            platforms: vec![],
            blobs: vec![],
        }
    }

    fn snap(images: &[ImageRecord], tags: &[(&str, u8)]) -> Snapshot {
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
    fn tagging_points_a_name_at_the_source_image() {
        let s = snap(&[rec(1, 1)], &[("a:1", 1)]);
        let changes = plan_tag(&s, "a:1", &"b:2".parse().unwrap()).unwrap();
        assert_eq!(
            changes.put_tags,
            vec![("docker.io/library/b:2".to_owned(), Digest::of(&[1]))]
        );
    }
}
