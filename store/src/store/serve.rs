//! What a registry endpoint asks of the store, each answered by keyed reads of one read
//! transaction. A repository is a full name without its tag (`docker.io/library/busybox`); its
//! tags are the keys `<repository>:<tag>` of the tags table, so they are one key range, and the
//! repositories are found by skipping from one such range to the next (`<repository>;` is the
//! first key past it: ';' follows ':'), never by reading every tag.

use std::collections::HashSet;

use super::Images;
use crate::digest::Digest;
use crate::error::Result;
use crate::listing::MAX_PAGE;
use crate::meta::{Reader, View};

/// One page of tags or repositories, from [`Images::tags_page`] or [`Images::repositories_page`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamePage {
    /// The tags (the part after `:`) or repositories (full, `docker.io/library/busybox`).
    pub names: Vec<String>,
    /// Whether more follow the last one.
    pub more: bool,
}

/// Past every full name: they are ASCII.
const PAST_ALL: &str = "\u{7f}";

impl Images<'_> {
    /// The top-level digest `<repository>:<tag>` names, if stored.
    pub fn tagged(self, repository: &str, tag: &str) -> Result<Option<Digest>> {
        self.0
            .inner
            .meta
            .read()?
            .tag(&format!("{repository}:{tag}"))
    }

    /// Whether any tag of `repository` is stored.
    pub fn has_repository(self, repository: &str) -> Result<bool> {
        let read = self.0.inner.meta.read()?;
        let (from, to) = tags_of(repository);
        Ok(!read.tags_between(&from, &to, 1)?.is_empty())
    }

    /// Up to `n` (at most [`MAX_PAGE`]) tags of `repository` after `last`, in byte order.
    pub fn tags_page(self, repository: &str, last: Option<&str>, n: usize) -> Result<NamePage> {
        let n = n.min(MAX_PAGE);
        let (first, to) = tags_of(repository);
        let from = match last {
            Some(last) => format!("{first}{last}\0"),
            None => first.clone(),
        };
        let read = self.0.inner.meta.read()?;
        let rows = read.tags_between(&from, &to, n + 1)?;
        let more = rows.len() > n;
        let names = rows
            .into_iter()
            .take(n)
            .map(|(key, _)| key[first.len()..].to_owned())
            .collect();
        Ok(NamePage { names, more })
    }

    /// Up to `n` (at most [`MAX_PAGE`]) repositories under `registry` (all with `None`) after
    /// `last`, in the order of their tags' keys, of the registries `listed` admits: one keyed
    /// read per repository, and one to skip a registry `listed` refuses, however many
    /// repositories it holds.
    pub fn repositories_page(
        self,
        registry: Option<&str>,
        last: Option<&str>,
        n: usize,
        listed: impl Fn(&str) -> bool,
    ) -> Result<NamePage> {
        let n = n.min(MAX_PAGE);
        let (start, to) = match registry {
            Some(r) => (format!("{r}/"), format!("{r}0")),
            None => (String::new(), PAST_ALL.to_owned()),
        };
        let mut from = match last {
            Some(last) => format!("{last};").max(start),
            None => start,
        };
        let read = self.0.inner.meta.read()?;
        let mut names = Vec::new();
        while let Some((key, _)) = read.tags_between(&from, &to, 1)?.pop() {
            let repository = key.rsplit_once(':').map_or(key.as_str(), |(r, _)| r);
            let host = repository.split_once('/').map_or(repository, |(h, _)| h);
            if !listed(host) {
                // '0' follows '/': past every `<host>/…` key.
                from = format!("{host}0");
                continue;
            }
            if names.len() == n {
                return Ok(NamePage { names, more: true });
            }
            from = format!("{repository};");
            names.push(repository.to_owned());
        }
        Ok(NamePage { names, more: false })
    }

    /// The media type the store recorded for `digest` when it stored it as an image's
    /// top-level manifest or index, or as a referrer: one keyed read or two, the document
    /// unread. `None` for any other blob (a manifest inside an index among them).
    pub fn recorded_media_type(self, digest: &Digest) -> Result<Option<String>> {
        let read = self.0.inner.meta.read()?;
        if let Some(image) = read.image(digest)? {
            return Ok(Some(image.media_type));
        }
        Ok(read.referrer(digest)?.map(|r| r.media_type))
    }

    /// Whether `digest` is something an image tagged in `repository` uses: its manifest or
    /// index, a manifest inside it, a config, a layer, or a referrer that travels with it (and
    /// that referrer's blobs). Read from the blob up: the records that list it, the subjects of
    /// those that are referrers, and the names of the images among them, never the repository's
    /// other images.
    pub fn may_see(self, repository: &str, digest: &Digest) -> Result<bool> {
        let read = self.0.inner.meta.read()?;
        Ok(!named_users(&read, repository, digest, 1)?.is_empty())
    }

    /// The image tagged in `repository` through which `digest` is served there, as
    /// [`Images::may_see`] looks: of the first [`SEEN_THROUGH_LOOKS`] found, the most recently
    /// used, so that noting a use of it (a blob shared by several images) never reorders them.
    pub fn seen_through(self, repository: &str, digest: &Digest) -> Result<Option<Digest>> {
        let read = self.0.inner.meta.read()?;
        let mut found = named_users(&read, repository, digest, SEEN_THROUGH_LOOKS)?;
        if found.len() < 2 {
            return Ok(found.pop());
        }
        let tables = read.usage_tables()?;
        let mut latest: Option<(Option<i64>, Digest)> = None;
        for image in found {
            let used = self.0.inner.meta.usage(&tables, &image)?.0;
            if latest.as_ref().is_none_or(|(at, _)| used > *at) {
                latest = Some((used, image));
            }
        }
        Ok(latest.map(|(_, image)| image))
    }
}

/// How many images using a blob [`Images::seen_through`] compares.
const SEEN_THROUGH_LOOKS: usize = 16;

/// Up to `limit` images tagged in `repository` that use `digest`. Read from the blob up: the
/// records that list it, the subjects of those that are referrers, and the names of the
/// images among them, never the repository's other images.
fn named_users(
    read: &Reader,
    repository: &str,
    digest: &Digest,
    limit: usize,
) -> Result<Vec<Digest>> {
    let mut found = Vec::new();
    let mut users = read.users_of(digest)?;
    let mut seen: HashSet<Digest> = users.iter().cloned().collect();
    while let Some(user) = users.pop() {
        if read.image(&user)?.is_some() {
            if named_in(read, &user, repository)? {
                found.push(user);
                if found.len() == limit {
                    break;
                }
            }
        } else if let Some(referrer) = read.referrer(&user)? {
            // Its subject is a manifest some image holds, or another referrer.
            let above = read.holding(&referrer.subject)?.into_iter();
            let above = above.chain(std::iter::once(referrer.subject));
            users.extend(above.filter(|d| seen.insert(d.clone())));
        }
    }
    Ok(found)
}

/// Whether the image `digest` has a name in `repository`.
fn named_in(read: &Reader, digest: &Digest, repository: &str) -> Result<bool> {
    Ok(read.names_of(digest)?.iter().any(|name| {
        let full = name.full();
        full.strip_suffix(name.tag())
            .and_then(|r| r.strip_suffix(':'))
            .is_some_and(|r| r == repository)
    }))
}

/// The key range of `repository`'s tags.
fn tags_of(repository: &str) -> (String, String) {
    (format!("{repository}:"), format!("{repository};"))
}

#[cfg(test)]
mod tests {
    use crate::meta::Changes;
    use crate::meta::tests::{d, image, referrer};
    use crate::store::Store;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let tags = [
            ("docker.io/library/a:1", 1),
            ("docker.io/library/a:2", 1),
            ("docker.io/library/a:10", 2),
            ("docker.io/library/a-b:1", 2),
            ("docker.io/x/y:1", 1),
            ("127.0.0.1:5000/a:1", 2),
            ("quay.io/q/r:1", 1),
        ];
        let changes = Changes {
            put_images: vec![image(1, &[1, 3, 4], &[1]), image(2, &[2, 5], &[2])],
            put_tags: tags.iter().map(|(n, i)| ((*n).into(), d(*i))).collect(),
            put_referrers: vec![referrer(10, 1, &[10, 11]), referrer(12, 10, &[12])],
            ..Changes::default()
        };
        store.inner.meta.apply(&changes).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn tags_are_one_range_paged_after_last() {
        let (_dir, store) = store().await;
        let images = store.images();
        let repo = "docker.io/library/a";
        assert_eq!(images.tagged(repo, "10").unwrap(), Some(d(2)));
        assert_eq!(images.tagged(repo, "3").unwrap(), None);
        assert!(images.has_repository(repo).unwrap());
        assert!(!images.has_repository("docker.io/library/b").unwrap());
        let all = images.tags_page(repo, None, 100).unwrap();
        assert_eq!(all.names, ["1", "10", "2"]);
        assert!(!all.more);
        let first = images.tags_page(repo, None, 2).unwrap();
        assert_eq!(first.names, ["1", "10"]);
        assert!(first.more);
        let rest = images.tags_page(repo, Some("10"), 2).unwrap();
        assert_eq!(rest.names, ["2"]);
        assert!(!rest.more);
        assert!(images.tags_page(repo, None, 0).unwrap().names.is_empty());
    }

    #[tokio::test]
    async fn repositories_skip_from_one_to_the_next() {
        let (_dir, store) = store().await;
        let images = store.images();
        let all = images.repositories_page(None, None, 100, every).unwrap();
        let expected = [
            "127.0.0.1:5000/a",
            "docker.io/library/a-b",
            "docker.io/library/a",
            "docker.io/x/y",
            "quay.io/q/r",
        ];
        assert_eq!(all.names, expected);
        let page = images.repositories_page(None, None, 2, every).unwrap();
        assert_eq!(page.names, expected[..2]);
        assert!(page.more);
        let page = images
            .repositories_page(None, Some(expected[1]), 2, every)
            .unwrap();
        assert_eq!(page.names, expected[2..4]);
        assert!(page.more);
        let page = images
            .repositories_page(Some("docker.io"), None, 100, every)
            .unwrap();
        assert_eq!(page.names, expected[1..4]);
        let page = images.repositories_page(Some("quay.io"), Some("docker.io/x/y"), 9, every);
        assert_eq!(page.unwrap().names, ["quay.io/q/r"]);
    }

    fn every(_: &str) -> bool {
        true
    }

    #[tokio::test]
    async fn a_registry_not_listed_is_skipped_whole() {
        let (_dir, store) = store().await;
        let images = store.images();
        let no_port = |host: &str| !host.contains(':');
        let page = images.repositories_page(None, None, 2, no_port).unwrap();
        assert_eq!(page.names, ["docker.io/library/a-b", "docker.io/library/a"]);
        assert!(page.more);
        let last = Some("docker.io/library/a");
        let page = images.repositories_page(None, last, 2, no_port).unwrap();
        assert_eq!(page.names, ["docker.io/x/y", "quay.io/q/r"]);
        assert!(!page.more);
        let hub_only = |host: &str| host == "docker.io";
        let page = images.repositories_page(None, None, 3, hub_only).unwrap();
        assert_eq!(page.names.len(), 3);
        assert!(!page.more, "quay.io is not listed: nothing follows");
    }

    #[tokio::test]
    async fn media_types_are_those_recorded_for_images_and_referrers() {
        let (_dir, store) = store().await;
        let images = store.images();
        let recorded = |n| images.recorded_media_type(&d(n)).unwrap();
        // The fixtures' records leave it empty.
        assert_eq!(recorded(1).as_deref(), Some(""));
        assert_eq!(recorded(10).as_deref(), Some(""));
        // A blob of an image, and what the store does not hold.
        assert_eq!(recorded(3), None);
        assert_eq!(recorded(99), None);
    }

    #[tokio::test]
    async fn a_repository_sees_only_what_its_images_use() {
        let (_dir, store) = store().await;
        let images = store.images();
        // Image 1: blobs 1, 3, 4 and the referrers 10 (blob 11) and 12, a referrer's referrer.
        for n in [1, 3, 4, 10, 11, 12] {
            assert!(images.may_see("docker.io/x/y", &d(n)).unwrap(), "{n}");
        }
        for n in [2, 5, 99] {
            assert!(!images.may_see("docker.io/x/y", &d(n)).unwrap(), "{n}");
        }
        assert!(images.may_see("docker.io/library/a-b", &d(5)).unwrap());
        assert!(!images.may_see("docker.io/library/a-b", &d(3)).unwrap());
        assert!(!images.may_see("docker.io/library/none", &d(1)).unwrap());
    }
}
