//! [`Images`]: the images and referrers the store holds, by name, ID or digest. Loads, creates
//! and saves are in `load.rs`, `create.rs` and `save.rs`.

use super::{Store, Usage, referrers};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::ImageRecord;
use crate::listing::{self, ListFilter, MAX_PAGE};
use crate::meta::{ListRow, View, no_record};
use crate::ops::{self, Removed, Target};
use crate::reference::ImageName;
use crate::referrer::ReferrerRecord;

/// The store's images, from [`Store::images`].
#[derive(Clone, Copy)]
pub struct Images<'a>(pub(super) &'a Store);

/// An image as `images` lists it: one row per tag, or one `<none>` row for an untagged image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// The tag, or `None` for an untagged image.
    pub name: Option<ImageName>,
    /// The image ID: config digest.
    pub id: Digest,
    /// Top-level manifest or index digest.
    pub digest: Digest,
    /// `created` from the config.
    pub created: Option<String>,
    /// Bytes of all blobs the image references.
    pub size: u64,
    /// `os/arch[/variant]` of each manifest.
    pub platforms: Vec<String>,
    /// When it was last used, and whether it is pinned.
    pub usage: Usage,
}

impl ImageSummary {
    /// The row for `record` under `name`.
    pub fn new(record: &ImageRecord, name: Option<ImageName>) -> Self {
        ImageSummary {
            name,
            id: record.id.clone(),
            digest: record.digest.clone(),
            created: record.created.clone(),
            size: record.total_size,
            platforms: record.platforms.clone(),
            usage: Usage::default(),
        }
    }
}

/// One page of the listing, from [`Images::list_page`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The rows, in the listing's order.
    pub images: Vec<ImageSummary>,
    /// The token of the next page; `None` on the last.
    pub next: Option<String>,
}

/// The row a listing index entry shows.
fn summary(row: ListRow, usage: Usage) -> ImageSummary {
    ImageSummary {
        name: row.name.and_then(|n| n.parse().ok()),
        id: row.id,
        digest: row.digest,
        created: row.created,
        size: row.size,
        platforms: row.platforms,
        usage,
    }
}

/// An image's manifest and config, as stored.
#[derive(Clone, Debug)]
pub struct Inspection {
    /// The stored record.
    pub record: ImageRecord,
    /// Tags pointing at it.
    pub names: Vec<ImageName>,
    /// The top-level manifest or index bytes.
    pub manifest: Vec<u8>,
    /// The config bytes (of the image ID; of its manifest's config for an artifact, `null` for
    /// an artifact index).
    pub config: Vec<u8>,
    /// Every referrer that travels with it: of its manifests, and of those referrers, in turn.
    pub referrers: Vec<ReferrerRecord>,
    /// When it was last used, and whether it is pinned.
    pub usage: Usage,
}

/// What walking a tagged image needs, from its metadata alone (no blob is read).
#[derive(Clone, Debug)]
pub struct ImageGraph {
    /// Its record: top-level digest and media type, its manifests and every blob it lists.
    pub record: ImageRecord,
    /// Every referrer that travels with it, as [`Inspection::referrers`] lists them.
    pub referrers: Vec<ReferrerRecord>,
}

impl Images<'_> {
    /// All images, one entry per tag and one per untagged image, newest first: every page of
    /// [`Images::list_page`]. For what reads the whole listing anyway.
    pub fn list(self) -> Result<Vec<ImageSummary>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_page(&ListFilter::default(), after.as_deref(), MAX_PAGE)?;
            out.extend(page.images);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Up to `limit` rows (at most [`MAX_PAGE`]; 0 means the most) that `filter` keeps, after
    /// the row `after` names (a token of an earlier page; `None`: from the first), newest first.
    /// One range of the listing index: a page costs the same in any size of store.
    pub fn list_page(
        self,
        filter: &ListFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let limit = if limit == 0 {
            MAX_PAGE
        } else {
            limit.min(MAX_PAGE)
        };
        self.list_rows(filter, after, limit)
    }

    /// [`Images::list_page`] without the page's bound: up to `limit` rows from one read of the
    /// store, for an answer that must be one consistent view.
    pub fn list_rows(
        self,
        filter: &ListFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let after = after.map(listing::parse_token).transpose()?;
        let read = self.0.inner.meta.read()?;
        let mut rows = read.list(after.as_deref(), limit.saturating_add(1), |row| {
            let name = row.name.as_deref().and_then(|n| n.parse().ok());
            filter.keeps(name.as_ref())
        })?;
        let next = (rows.len() > limit && limit > 0).then(|| listing::token(&rows[limit - 1].0));
        rows.truncate(limit);
        let tables = read.usage_tables()?;
        let images = rows
            .into_iter()
            .map(|(_, row)| {
                let usage = self.usage_with(&tables, &row.digest)?;
                Ok(summary(row, usage))
            })
            .collect::<Result<_>>()?;
        Ok(ListPage { images, next })
    }

    /// The stored manifest and config of an image.
    pub async fn inspect(self, image: &str) -> Result<Inspection> {
        let inner = &self.0.inner;
        let (record, names, referrers, usage) = {
            let read = inner.meta.read()?;
            let digest = match ops::lookup(&read, image)? {
                Target::Tag(_, d) | Target::Image(d) => d,
            };
            let record = read.record(&digest)?;
            let referrers = read.travelling(record.subjects())?;
            let usage = self.usage_in(&read, &digest)?;
            (record, read.names_of(&digest)?, referrers, usage)
        };
        let manifest = inner.blobs.read_json(&record.digest).await?;
        let config = match record.artifact {
            false => inner.blobs.read_json(&record.id).await?,
            true => referrers::artifact_config(&inner.blobs, &record.digest, &manifest).await?,
        };
        Ok(Inspection {
            names,
            referrers,
            manifest,
            config,
            record,
            usage,
        })
    }

    /// Every blob the image or referrer whose top-level digest is `digest` lists: one keyed
    /// read. [`Error::NotFound`] when no record has that digest.
    pub fn blobs_of(self, digest: &Digest) -> Result<Vec<Digest>> {
        let read = self.0.inner.meta.read()?;
        if let Some(image) = read.image(digest)? {
            return Ok(image.blobs);
        }
        match read.referrer(digest)? {
            Some(referrer) => Ok(referrer.blobs),
            None => Err(Error::NotFound(format!("no image or referrer {digest}"))),
        }
    }

    /// Up to `limit` names under `registry` (`docker.io`, `ghcr.io`) outside the repository
    /// `except` (`library/busybox`), in name order, with the top-level digests they point at: one
    /// range of keys, however many images the store has.
    pub fn named_in(
        self,
        registry: &str,
        except: &str,
        limit: usize,
    ) -> Result<Vec<(ImageName, Digest)>> {
        let read = self.0.inner.meta.read()?;
        let names = read.names_in(registry, limit, |full| {
            let name: std::result::Result<ImageName, _> = full.parse();
            name.is_ok_and(|n| n.registry() == registry && n.repository() != except)
        })?;
        Ok(names
            .into_iter()
            .filter_map(|(n, d)| Some((n.parse().ok()?, d)))
            .collect())
    }

    /// The record of the image `name` points at and the referrers that travel with it, in one
    /// read transaction of keyed reads: what a push or a registry endpoint walks.
    pub fn graph(self, name: &ImageName) -> Result<ImageGraph> {
        let read = self.0.inner.meta.read()?;
        let full = name.full();
        let digest = read
            .tag(&full)?
            .ok_or_else(|| Error::NotFound(format!("no such image: {full}")))?;
        let record = read.image(&digest)?.ok_or_else(|| no_record(&digest))?;
        let referrers = read.travelling(record.subjects())?;
        Ok(ImageGraph { record, referrers })
    }

    /// The top-level digest of the image `image` names (a name, an ID or an ID prefix): one
    /// read of the tags or records, no blob read.
    pub fn digest_of(self, image: &str) -> Result<Digest> {
        let read = self.0.inner.meta.read()?;
        match ops::lookup(&read, image)? {
            Target::Tag(_, d) | Target::Image(d) => Ok(d),
        }
    }

    /// Points `target` at the image `source` names.
    pub async fn tag(self, source: &str, target: &ImageName) -> Result<()> {
        let inner = &self.0.inner;
        let _guard = inner.commit.lock().await;
        let changes = ops::plan_tag(&inner.meta.read()?, source, target)?;
        inner.meta.apply(&changes).map(drop)
    }

    /// Removes a tag, deleting the image with its last tag; by ID with `force`, all its tags.
    /// Deletes, in the same transaction, the referrers left without a subject. Frees the blobs
    /// nothing else uses.
    pub async fn remove(self, image: &str, force: bool) -> Result<Vec<Removed>> {
        let inner = &self.0.inner;
        let (removed, freed) = {
            let _guard = inner.commit.lock().await;
            let (changes, removed) = ops::plan_remove(&inner.meta.read()?, image, force)?;
            (removed, inner.meta.apply(&changes)?)
        };
        self.0.collect_committed(&freed).await;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Changes;
    use crate::meta::tests::{d, image, referrer};

    #[tokio::test]
    async fn blobs_of_and_graph_read_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let image = image(1, &[1, 2], &[]);
        let referrer = |n: u8, subject: u8| referrer(n, subject, &[n, 50]);
        let name: ImageName = "a:1".parse().unwrap();
        let lost: ImageName = "lost:1".parse().unwrap();
        let changes = Changes {
            put_images: vec![image.clone()],
            put_tags: vec![(name.full(), d(1)), (lost.full(), d(9))],
            put_referrers: vec![referrer(10, 1), referrer(11, 10)],
            ..Changes::default()
        };
        store.inner.meta.apply(&changes).unwrap();
        let images = store.images();

        assert_eq!(images.blobs_of(&d(1)).unwrap(), [d(1), d(2)]);
        assert_eq!(images.blobs_of(&d(11)).unwrap(), [d(11), d(50)]);
        assert!(matches!(images.blobs_of(&d(2)), Err(Error::NotFound(_))));

        let graph = images.graph(&name).unwrap();
        assert_eq!(graph.record, image);
        let snap = store.inner.meta.snapshot().unwrap();
        let roots: Vec<&Digest> = image.subjects().iter().collect();
        let all: Vec<ReferrerRecord> = crate::referrer::travelling(&snap.referrers, &roots)
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(graph.referrers, all);
        assert_eq!(graph.referrers, [referrer(10, 1), referrer(11, 10)]);
        let e = images.graph(&"b:1".parse().unwrap()).unwrap_err();
        assert!(matches!(e, Error::NotFound(m) if m == "no such image: docker.io/library/b:1"));
        let e = images.graph(&lost).unwrap_err();
        assert!(
            matches!(&e, Error::Corrupt(m) if m.contains("has no record")),
            "{e}"
        );
    }
}
