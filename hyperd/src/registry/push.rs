//! A push: the stored image exactly as stored (an index as an index, so every digest is the
//! one the store holds), blobs first, up to three at once, then manifests, the tag last; then
//! the referrers that travel with it, as a save writes them.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use oci_client::Reference;
use store::{BlobRef, Digest, ImageGraph, ImageName, ReferrerRecord, Referrers, Store};
use tokio_util::io::ReaderStream;

use super::endpoint::Config;
use super::error::Result;
use super::graph::{self, Walked};
use super::lease::Lease;
use super::mirrors;
use super::plan;
use super::referrers;
use super::remote::{Fetched, Remote};
use super::{BlobEvent, BlobState, Credential, Event, Events, PARALLEL_BLOBS, by_digest};

/// Repositories a blob is offered for mounting from, at most.
const MOUNT_TRIES: usize = 3;
/// Names of other repositories a push looks at for blobs to mount.
const MOUNT_NAMES: usize = 256;

pub(crate) struct Pushed {
    pub(crate) name: ImageName,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) uploaded: u32,
    pub(crate) mounted: u32,
    pub(crate) present: u32,
    pub(crate) referrers: u32,
}

/// A referrer a push sends, with the documents of its graph, itself first.
struct Travelling {
    record: ReferrerRecord,
    documents: Vec<Fetched>,
}

pub(crate) async fn push(
    store: &Store,
    config: &Config,
    name: &str,
    credential: &Credential,
    referrers: Referrers,
    events: &Events,
) -> Result<Pushed> {
    let name: ImageName = name.parse()?;
    // From metadata alone: nothing is read from the store before the lease holds it.
    let ImageGraph {
        record,
        referrers: with,
    } = store.images().graph(&name)?;
    let along = match referrers {
        Referrers::Include => with,
        Referrers::Omit => Vec::new(),
    };
    let reference = Reference::from(&name);
    // What is read from the store stays in it until the push ends, whatever `rmi` runs.
    let lease = Lease::create(store).await?;
    let held: Vec<Digest> = record
        .blobs
        .iter()
        .chain(along.iter().flat_map(|r| &r.blobs))
        .cloned()
        .collect();
    store.leases().hold_blobs(lease.id(), &held).await?;
    let top = BlobRef {
        digest: record.digest.clone(),
        size: record.size,
    };
    let Walked {
        documents,
        mut blobs,
    } = graph::from_store(store, &name, &top, &record.media_type).await?;
    let mut travelling = Vec::new();
    for record in along {
        let top = BlobRef {
            digest: record.digest.clone(),
            size: record.size,
        };
        let walked = graph::from_store(store, &name, &top, &record.media_type).await?;
        blobs.extend(walked.blobs);
        travelling.push(Travelling {
            record,
            documents: walked.documents,
        });
    }
    let blobs = plan::unique(blobs);
    let remote = mirrors::push_remote(config, &reference, credential).await?;
    let sending = Sending {
        store,
        remote: &remote,
        reference: &reference,
        events,
    };
    let (outcomes, records) = sending
        .send(&blobs, &documents, travelling)
        .await
        // A mirror is never sent the registry's credential: its refusal advises no login.
        .map_err(|e| remote.told(e))?;
    lease.release().await;
    store.images().used(&record.digest);
    let count = |s: BlobState| outcomes.iter().filter(|o| **o == s).count() as u32;
    tracing::info!(name = %name.full(), digest = %record.digest, "pushed");
    Ok(Pushed {
        name,
        digest: record.digest,
        size: record.size,
        uploaded: count(BlobState::Done),
        mounted: count(BlobState::Mounted),
        present: count(BlobState::Present),
        referrers: records.len() as u32,
    })
}

/// Where a push sends, and what it tells of it.
struct Sending<'a> {
    store: &'a Store,
    remote: &'a Remote,
    reference: &'a Reference,
    events: &'a Events,
}

impl Sending<'_> {
    /// The blobs, the image's documents, then each referrer's: the image first, as a registry
    /// may check that a referrer's subject is there. What each blob came to, and the referrers.
    async fn send(
        &self,
        blobs: &[BlobRef],
        documents: &[Fetched],
        travelling: Vec<Travelling>,
    ) -> Result<(Vec<BlobState>, Vec<ReferrerRecord>)> {
        let (remote, reference) = (self.remote, self.reference);
        let outcomes = send_blobs(self.store, remote, reference, blobs, self.events).await?;
        send_documents(remote, reference, documents).await?;
        let mut records = Vec::new();
        for t in travelling {
            let at = by_digest(reference, &t.record.digest);
            send_documents(remote, &at, &t.documents).await?;
            records.push(t.record);
        }
        referrers::publish(remote, reference, &records).await?;
        Ok((outcomes, records))
    }
}

/// Every blob, up to [`PARALLEL_BLOBS`] at once, each mounted or uploaded unless present.
async fn send_blobs(
    store: &Store,
    remote: &Remote,
    reference: &Reference,
    blobs: &[BlobRef],
    events: &Events,
) -> Result<Vec<BlobState>> {
    let sources = mount_sources(store, reference).await?;
    for b in blobs {
        events.blob(&b.digest, BlobState::Waiting, 0, b.size).await;
    }
    futures_util::stream::iter(blobs.iter().cloned())
        .map(|b| {
            let from = sources.get(&b.digest).cloned().unwrap_or_default();
            send_blob(store, remote, reference, b, from, events)
        })
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect()
        .await
}

/// A graph's documents, top-level first as walked: each manifest of an index by digest before
/// the index, which goes last under `top` (a tag, or its own digest).
async fn send_documents(remote: &Remote, top: &Reference, documents: &[Fetched]) -> Result<()> {
    let Some((first, inner)) = documents.split_first() else {
        return Ok(());
    };
    for d in inner {
        let at = by_digest(top, &d.digest);
        remote
            .push_manifest(&at, d.bytes.clone(), &d.media_type)
            .await?;
    }
    remote
        .push_manifest(top, first.bytes.clone(), &first.media_type)
        .await
}

/// For each blob, the other repositories of the target's registry that stored images are
/// named in and hold it: where the registry most likely has it already (pulled from or pushed
/// there), so a mount can replace the upload. The first [`MOUNT_NAMES`] such names in name order
/// are looked at, so that a push costs the same in a store of any size.
async fn mount_sources(store: &Store, target: &Reference) -> Result<HashMap<Digest, Vec<String>>> {
    let mut sources: HashMap<Digest, Vec<String>> = HashMap::new();
    let images = store.images();
    let others = images.named_in(target.registry(), target.repository(), MOUNT_NAMES)?;
    for (name, digest) in others {
        let blobs = match store.images().blobs_of(&digest) {
            Ok(blobs) => blobs,
            // Removed since the listing (an unrelated `rmi`): it offers nothing to mount.
            Err(store::Error::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        for digest in blobs {
            let repos = sources.entry(digest).or_default();
            if !repos.iter().any(|x| x == name.repository()) {
                repos.push(name.repository().to_owned());
            }
        }
    }
    Ok(sources)
}

async fn send_blob(
    store: &Store,
    remote: &Remote,
    repo: &Reference,
    blob: BlobRef,
    sources: Vec<String>,
    events: &Events,
) -> Result<BlobState> {
    let (digest, size) = (&blob.digest, blob.size);
    if remote.has_blob(repo, digest).await? {
        events.blob(digest, BlobState::Present, size, size).await;
        return Ok(BlobState::Present);
    }
    for from in sources.iter().take(MOUNT_TRIES) {
        if remote.mount(repo, from, digest).await {
            events
                .send(Event::Blob(BlobEvent {
                    digest: digest.clone(),
                    state: BlobState::Mounted,
                    done: size,
                    total: size,
                    from: Some(from.clone()),
                }))
                .await;
            return Ok(BlobState::Mounted);
        }
    }
    events.blob(digest, BlobState::Moving, 0, size).await;
    remote
        .push_blob(repo, digest, size, || {
            body(store.clone(), digest.clone(), size, events.clone())
        })
        .await?;
    events.blob(digest, BlobState::Done, size, size).await;
    Ok(BlobState::Done)
}

/// The blob's bytes from its file, 1 MiB at a time, counted as they go.
fn body(
    store: Store,
    digest: Digest,
    size: u64,
    events: Events,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let open = {
        let digest = digest.clone();
        async move { store.content().read_blob(&digest, 0, 0).await }
    };
    let mut sent = 0u64;
    futures_util::stream::once(open)
        .map(|opened| match opened {
            Ok(read) => ReaderStream::with_capacity(read.file, 1 << 20).left_stream(),
            Err(e) => {
                futures_util::stream::once(async move { Err(std::io::Error::other(e.to_string())) })
                    .right_stream()
            }
        })
        .flatten()
        .inspect_ok(move |b| {
            sent += b.len() as u64;
            events.bytes(&digest, sent, size);
        })
}
