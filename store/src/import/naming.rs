//! Which names an imported image gets. Pure: candidates and the user's map in, names out.
//! Referrers take none: they come with their subject.

use std::collections::BTreeMap;

use super::Candidate;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::{ImageName, is_full_reference};

/// Names for each image to commit. Without a map, every image in the archive is kept, named by
/// `io.containerd.image.name`, else a ref.name that is a full reference, else RepoTags, else not
/// at all; an artifact is kept only under a name, so an unnamed one is refused. With a map
/// (`NAME:TAG=REFNAME`), only the images it picks are kept.
pub(crate) fn assign(
    candidates: Vec<Candidate>,
    map: &[(ImageName, String)],
) -> Result<Vec<(Candidate, Vec<ImageName>)>> {
    let mut by_digest: BTreeMap<Digest, (Candidate, Vec<ImageName>)> = BTreeMap::new();
    let mut order = Vec::new();
    for c in candidates {
        match by_digest.get_mut(&c.record.digest) {
            Some((merged, _)) => {
                merged.ref_names.extend(c.ref_names);
                merged.repo_tags.extend(c.repo_tags);
                merged.containerd_name = merged.containerd_name.take().or(c.containerd_name);
            }
            None => {
                order.push(c.record.digest.clone());
                by_digest.insert(c.record.digest.clone(), (c, Vec::new()));
            }
        }
    }
    if map.is_empty() {
        for (c, names) in by_digest.values_mut() {
            *names = default_names(c)?;
            if c.record.artifact && names.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "the archive holds artifact {}, which describes no image (it has no subject) \
                     and has no name; give it one with -r NAME:TAG=REFNAME, or pick the images to \
                     load with -r",
                    c.record.digest
                )));
            }
        }
    } else {
        for (target, refname) in map {
            let picked: Vec<&Digest> = by_digest
                .iter()
                .filter(|(_, (c, _))| answers_to(c, refname))
                .map(|(d, _)| d)
                .collect();
            let digest = match picked.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(Error::NotFound(format!(
                        "no image with ref name {refname:?} in the archive{}",
                        available(&by_digest)
                    )));
                }
                _ => {
                    return Err(Error::Conflict(format!(
                        "ref name {refname:?} names {} different images in the archive",
                        picked.len()
                    )));
                }
            };
            let names = &mut by_digest.get_mut(&digest).expect("picked from map").1;
            if !names.contains(target) {
                names.push(target.clone());
            }
        }
        by_digest.retain(|_, (_, names)| !names.is_empty());
    }
    Ok(order
        .into_iter()
        .filter_map(|d| by_digest.remove(&d))
        .collect())
}

/// A map may not pick a referrer: it has no name of its own and comes with its subject.
pub(crate) fn refuse_naming_referrers(
    images: &[Candidate],
    referrer_names: &[(String, Digest)],
    map: &[(ImageName, String)],
) -> Result<()> {
    for (_, refname) in map {
        if images.iter().any(|c| answers_to(c, refname)) {
            continue;
        }
        if let Some((_, d)) = referrer_names.iter().find(|(r, _)| r == refname) {
            return Err(Error::InvalidArgument(format!(
                "ref name {refname:?} names {d}, which is a referrer, not an image: referrers \
                 take no name and load with the image they describe"
            )));
        }
    }
    Ok(())
}

fn default_names(c: &Candidate) -> Result<Vec<ImageName>> {
    if let Some(name) = &c.containerd_name {
        return Ok(vec![name.parse()?]);
    }
    let from_ref: Vec<ImageName> = c
        .ref_names
        .iter()
        .filter(|r| is_full_reference(r))
        .filter_map(|r| r.parse().ok())
        .collect();
    if !from_ref.is_empty() {
        return Ok(from_ref);
    }
    let mut names = Vec::new();
    for t in &c.repo_tags {
        let name: ImageName = t.parse()?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Whether the archive calls this image `refname`: by ref.name, or by a full name it carries.
fn answers_to(c: &Candidate, refname: &str) -> bool {
    if c.ref_names.iter().any(|r| r == refname) {
        return true;
    }
    let Ok(wanted) = refname.parse::<ImageName>() else {
        return false;
    };
    c.containerd_name
        .iter()
        .chain(&c.repo_tags)
        .filter_map(|n| n.parse::<ImageName>().ok())
        .any(|n| n == wanted)
}

fn available(by_digest: &BTreeMap<Digest, (Candidate, Vec<ImageName>)>) -> String {
    let names: Vec<&str> = by_digest
        .values()
        .flat_map(|(c, _)| {
            c.ref_names
                .iter()
                .chain(&c.repo_tags)
                .chain(&c.containerd_name)
        })
        .map(String::as_str)
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (it has: {})", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageRecord;

    fn cand(n: u8, ref_names: &[&str], containerd: Option<&str>, repo_tags: &[&str]) -> Candidate {
        let digest = Digest::of(&[n]);
        Candidate {
            record: ImageRecord {
                digest: digest.clone(),
                media_type: String::new(),
                size: 0,
                id: digest.clone(),
                created: None,
                total_size: 0,
                platforms: vec![],
                blobs: vec![],
                manifests: vec![digest],
                artifact: false,
            },
            ref_names: ref_names.iter().map(|s| s.to_string()).collect(),
            containerd_name: containerd.map(str::to_owned),
            repo_tags: repo_tags.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn names(out: &[(Candidate, Vec<ImageName>)]) -> Vec<Vec<String>> {
        out.iter()
            .map(|(_, n)| n.iter().map(|n| n.to_string()).collect())
            .collect()
    }

    fn name(s: &str) -> ImageName {
        s.parse().unwrap()
    }

    #[test]
    fn default_naming_prefers_containerd_then_full_ref_name_then_repo_tags() {
        let out = assign(
            vec![
                cand(
                    1,
                    &["latest"],
                    Some("docker.io/library/busybox:1.36"),
                    &["other:1"],
                ),
                cand(2, &["busybox:1.35"], None, &["ignored:1"]),
                cand(3, &["1.0"], None, &["app:1", "app:2"]),
                cand(4, &["hello"], None, &[]),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            names(&out),
            vec![
                vec!["busybox:1.36"],
                vec!["busybox:1.35"],
                vec!["app:1", "app:2"],
                Vec::<&str>::new()
            ]
        );
    }

    #[test]
    fn a_map_picks_by_ref_name_and_drops_the_rest() {
        let out = assign(
            vec![
                cand(1, &["hello"], None, &[]),
                cand(2, &["world"], None, &[]),
                cand(3, &["x"], None, &[]),
            ],
            &[
                (name("centos:test"), "hello".into()),
                (name("busybox:test"), "world".into()),
            ],
        )
        .unwrap();
        assert_eq!(names(&out), vec![vec!["centos:test"], vec!["busybox:test"]]);
    }

    #[test]
    fn a_map_accepts_the_pre_1_0_key_and_full_names() {
        let out = assign(
            vec![cand(1, &[], None, &["busybox:latest"])],
            &[(name("mine:1"), "docker.io/library/busybox:latest".into())],
        )
        .unwrap();
        assert_eq!(names(&out), vec![vec!["mine:1"]]);
    }

    #[test]
    fn a_map_naming_an_absent_ref_is_refused_with_what_exists() {
        let err = assign(
            vec![cand(1, &["hello"], None, &[])],
            &[(name("a:b"), "nope".into())],
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::NotFound(ref m) if m.contains("nope") && m.contains("hello")),
            "{err}"
        );
    }

    #[test]
    fn the_same_image_twice_is_one_image_with_both_names() {
        let out = assign(
            vec![cand(1, &["a:1"], None, &[]), cand(1, &["a:2"], None, &[])],
            &[],
        )
        .unwrap();
        assert_eq!(names(&out), vec![vec!["a:1", "a:2"]]);
    }

    #[test]
    fn an_artifact_is_kept_only_under_a_name_and_a_referrer_never_takes_one() {
        let mut unnamed = cand(1, &["v1"], None, &[]);
        unnamed.record.artifact = true;
        let e = assign(vec![unnamed.clone()], &[]).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("no name")),
            "{e}"
        );
        let out = assign(vec![unnamed.clone()], &[(name("chart:1"), "v1".into())]).unwrap();
        assert_eq!(names(&out), vec![vec!["chart:1"]]);
        let mut named = cand(2, &["charts/x:1"], None, &[]);
        named.record.artifact = true;
        assert_eq!(
            names(&assign(vec![named], &[]).unwrap()),
            vec![vec!["charts/x:1"]]
        );

        let referrers = [("sig".to_owned(), Digest::of(&[9]))];
        let e = refuse_naming_referrers(
            &[unnamed.clone()],
            &referrers,
            &[(name("s:1"), "sig".into())],
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("is a referrer")),
            "{e}"
        );
        refuse_naming_referrers(&[unnamed], &referrers, &[(name("a:1"), "v1".into())]).unwrap();
    }

    #[test]
    fn invalid_repo_tags_are_refused() {
        assert!(assign(vec![cand(1, &[], None, &["BAD NAME"])], &[]).is_err());
    }
}
