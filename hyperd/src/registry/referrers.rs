//! Referrers (signatures, SBOMs, attestations: manifests whose `subject` is another manifest)
//! over a registry. They are found through the referrers API, or where a registry lacks it (as
//! distribution 2.8 does) through the tag schema: the tag `sha256-<hex>` of the subject names an
//! index of its referrers' descriptors, which pushes keep up to date.

use std::collections::{BTreeSet, HashSet, VecDeque};

use bytes::Bytes;
use oci_client::Reference;
use reqwest::StatusCode;
use reqwest::header::LINK;
use serde_json::{Value, json};
use store::limits::MAX_JSON;
use store::{BlobRef, Digest, Document, Entry, OCI_INDEX, ReferrerRecord};

use super::by_digest;
use super::error::{Error, Result};
use super::graph::Pulling;
use super::mirrors::Sources;
use super::remote::{Fetched, Remote, read_limited, refusal, retry};

/// Referrers one pull follows, at most: a registry could list them without end.
const MAX_REFERRERS: usize = 256;
/// Pages of one referrers listing read, at most; each holds up to 4 MiB of descriptors.
const MAX_PAGES: usize = 16;

/// The referrers a pull stores, with what they need.
#[derive(Default)]
pub(super) struct Found {
    pub(super) documents: Vec<Fetched>,
    /// Each referrer's blobs, not yet made unique (the pull unites them with the image's).
    pub(super) blobs: Vec<BlobRef>,
    /// Every subject before its referrers.
    pub(super) referrers: Vec<Referrer>,
}

/// A referrer a pull stores.
pub(super) struct Referrer {
    pub(super) digest: Digest,
    pub(super) media_type: String,
}

/// The referrers of `subjects` at the registry, and theirs in turn (a signature of an SBOM).
/// A listed manifest whose `subject` is another is left out: the listing is stale.
pub(super) async fn discover(
    sources: &Sources<'_>,
    repo: &Reference,
    subjects: &[Digest],
    walks: &mut Pulling<'_>,
) -> Result<Found> {
    let mut found = Found::default();
    let mut seen: HashSet<Digest> = subjects.iter().cloned().collect();
    let mut queue: VecDeque<Digest> = subjects.iter().cloned().collect();
    while let Some(subject) = queue.pop_front() {
        let listing = match sources
            .listing(|remote| listed(remote, repo, &subject))
            .await
        {
            Ok(listing) => listing,
            // The last host that may list is a mirror that knows of none: there are none.
            Err(Error::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        for listed in listing {
            let digest = listed.blob.digest;
            if !seen.insert(digest.clone()) {
                continue;
            }
            if found.referrers.len() == MAX_REFERRERS {
                tracing::warn!(%subject, "more than {MAX_REFERRERS} referrers; the rest are left");
                return Ok(found);
            }
            let manifest = sources.manifest(&by_digest(repo, &digest)).await?;
            let named = Document::parse(&manifest.digest, &manifest.media_type, &manifest.bytes)
                .and_then(|d| d.subject())
                .ok()
                .flatten();
            if named.as_ref() != Some(&subject) {
                tracing::warn!(%subject, referrer = %digest, "listed, but refers to another");
                continue;
            }
            found.referrers.push(Referrer {
                digest: digest.clone(),
                media_type: manifest.media_type.clone(),
            });
            let walked = walks.walk(manifest).await?;
            found.documents.extend(walked.documents);
            found.blobs.extend(walked.blobs);
            queue.push_back(digest);
        }
    }
    Ok(found)
}

/// What the registry lists as referrers of `subject`: its referrers API, else the tag schema.
/// A mirror with neither is not the registry saying there are none (a pull-through cache
/// rarely has either): it is NotFound, which passes the listing to the next host.
async fn listed(remote: &Remote, repo: &Reference, subject: &Digest) -> Result<Vec<Entry>> {
    if let Some(listed) = api(remote, repo, subject).await? {
        return Ok(listed);
    }
    match schema_index(remote, repo, subject).await? {
        Some(index) => match listing(&index.digest, &index.media_type, &index.bytes) {
            Ok(entries) => Ok(entries),
            Err(_) => Err(Error::BadRemote(format!(
                "{} at {}: not an index of referrers",
                schema_tag(repo, subject).whole(),
                remote.host()
            ))),
        },
        None if remote.endpoint.is_mirror() => Err(Error::NotFound(format!(
            "referrers of {subject} at {}: neither the referrers API nor a tag-schema index",
            remote.host()
        ))),
        None => Ok(Vec::new()),
    }
}

/// The tag schema's index for `subject`, if the registry has one.
async fn schema_index(
    remote: &Remote,
    repo: &Reference,
    subject: &Digest,
) -> Result<Option<Fetched>> {
    match remote.manifest(&schema_tag(repo, subject)).await {
        Ok(index) => Ok(Some(index)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The tag schema's tag for `subject` in `repo`.
fn schema_tag(repo: &Reference, subject: &Digest) -> Reference {
    Reference::with_tag(
        repo.registry().to_owned(),
        repo.repository().to_owned(),
        format!("sha256-{}", subject.hex()),
    )
}

/// After a push of `referrers` (their manifests are at the registry): where the registry has
/// no referrers API, adds each to its subject's tag-schema index, keeping what others put there.
pub(super) async fn publish(
    remote: &Remote,
    repo: &Reference,
    referrers: &[ReferrerRecord],
) -> Result<()> {
    let subjects: BTreeSet<&Digest> = referrers.iter().map(|r| &r.subject).collect();
    for subject in subjects {
        if api(remote, repo, subject).await?.is_some() {
            continue;
        }
        let mut index = match schema_index(remote, repo, subject).await? {
            Some(held) => serde_json::from_slice(&held.bytes).map_err(|e| {
                Error::BadRemote(format!(
                    "{} at {}: {e}",
                    schema_tag(repo, subject).whole(),
                    remote.host()
                ))
            })?,
            None => json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
        };
        let mine = referrers.iter().filter(|r| &r.subject == subject);
        if add_descriptors(&mut index, mine.map(ReferrerRecord::descriptor)) {
            let bytes = serde_json::to_vec(&index).expect("JSON serialises");
            remote
                .push_manifest(&schema_tag(repo, subject), Bytes::from(bytes), OCI_INDEX)
                .await?;
        }
    }
    Ok(())
}

/// Adds to `index`'s manifests each descriptor whose digest it lacks; whether any was added.
fn add_descriptors(index: &mut Value, descriptors: impl Iterator<Item = Value>) -> bool {
    if !index["manifests"].is_array() {
        index["manifests"] = json!([]);
    }
    let manifests = index["manifests"].as_array_mut().expect("an array");
    let mut added = false;
    for d in descriptors {
        if !manifests.iter().any(|m| m["digest"] == d["digest"]) {
            manifests.push(d);
            added = true;
        }
    }
    added
}

/// What the registry's referrers API lists for `subject`, every page of it; `None` when the
/// registry has none (it answers 404, as registries before OCI 1.1 do).
async fn api(remote: &Remote, repo: &Reference, subject: &Digest) -> Result<Option<Vec<Entry>>> {
    let what = format!("referrers of {subject}");
    let tail = format!("{}/referrers/{subject}", repo.repository());
    let mut url = remote.endpoint.url(&tail);
    let mut listed = Vec::new();
    for _ in 0..MAX_PAGES {
        let Some((bytes, next)) = retry(|| page(remote, &url, &what)).await? else {
            return Ok(None);
        };
        match listing(&Digest::of(&bytes), OCI_INDEX, &bytes) {
            Ok(entries) => listed.extend(entries),
            Err(why) => {
                let context = format!("{what} at {}", remote.host());
                return Err(Error::bad_document(&context, why));
            }
        }
        match next {
            Some(next) => url = next,
            None => return Ok(Some(listed)),
        }
    }
    Err(Error::BadRemote(format!(
        "{what} at {}: more than {MAX_PAGES} pages",
        remote.host()
    )))
}

/// The descriptors an index of referrers lists.
fn listing(digest: &Digest, media_type: &str, bytes: &[u8]) -> store::Result<Vec<Entry>> {
    let index = Document::parse(digest, media_type, bytes)?;
    if !index.is_index() {
        return Err(store::Error::InvalidArchive(format!(
            "{digest} is not an index"
        )));
    }
    index.entries()
}

/// One page of a referrers listing and the URL of the next; `None` for a 404.
async fn page(remote: &Remote, url: &str, what: &str) -> Result<Option<(Vec<u8>, Option<String>)>> {
    let host = remote.host();
    let mut resp = remote.get(url, OCI_INDEX, what).await?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(refusal(resp, host, what).await);
    }
    let next = match resp.headers().get(LINK).and_then(|v| v.to_str().ok()) {
        Some(link) => Some(
            next_page(remote.base(), link)
                .map(|next| remote.endpoint.keep_ns(next))
                .ok_or_else(|| {
                    Error::BadRemote(format!(
                        "{what} at {host}: the next page is not on the registry ({link})"
                    ))
                })?,
        ),
        None => None,
    };
    let bytes = read_limited(&mut resp, MAX_JSON, host, what).await?;
    Ok(Some((bytes, next)))
}

/// The URL of a `Link: <…>; rel="next"` header, if it is on the registry at `base`.
fn next_page(base: &str, link: &str) -> Option<String> {
    let target = link.split(';').next()?.trim();
    let target = target.strip_prefix('<')?.strip_suffix('>')?;
    if target.starts_with('/') {
        Some(format!("{base}{target}"))
    } else {
        target
            .strip_prefix(base)
            .filter(|rest| rest.starts_with('/'))
            .map(|_| target.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_next_page_stays_on_the_registry() {
        let base = "https://r.example:5000";
        let next = |link: &str| next_page(base, link);
        assert_eq!(
            next(r#"</v2/a/referrers/sha256:1?n=2&last=x>; rel="next""#).as_deref(),
            Some("https://r.example:5000/v2/a/referrers/sha256:1?n=2&last=x")
        );
        assert_eq!(
            next(r#"<https://r.example:5000/v2/a/referrers/x>; rel="next""#).as_deref(),
            Some("https://r.example:5000/v2/a/referrers/x")
        );
        assert_eq!(next(r#"<https://elsewhere/v2/a>; rel="next""#), None);
        assert_eq!(next(r#"<https://r.example:50001/v2/a>; rel="next""#), None);
        assert_eq!(next("no brackets"), None);
    }

    #[test]
    fn descriptors_already_listed_are_not_added_twice() {
        let mut index = json!({"schemaVersion": 2, "manifests": [{"digest": "sha256:a"}]});
        let d = |x: &str| json!({"digest": x, "size": 1});
        assert!(!add_descriptors(&mut index, [d("sha256:a")].into_iter()));
        assert!(add_descriptors(
            &mut index,
            [d("sha256:a"), d("sha256:b")].into_iter()
        ));
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        let mut empty = json!({"schemaVersion": 2});
        assert!(add_descriptors(&mut empty, [d("sha256:c")].into_iter()));
        assert_eq!(empty["manifests"][0]["digest"], "sha256:c");
    }
}
