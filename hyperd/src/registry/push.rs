//! A push: the stored image exactly as stored (an index as an index, so every digest is the
//! one the store holds), blobs first, up to three at once, then manifests, the tag last; then
//! the referrers that travel with it, as a save writes them.

use std::collections::HashMap;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use oci_client::{Reference, RegistryOperation};
use store::limits::MAX_JSON;
use store::{Digest, ImageName, Store};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::endpoint::Config;
use super::error::{Error, Result};
use super::lease::Lease;
use super::plan::{self, BlobRef, Child, Document};
use super::referrers;
use super::remote::Remote;
use super::{BlobState, Credential, Event, Events, PARALLEL_BLOBS, by_digest, parse_reference};

/// Repositories a blob is offered for mounting from, at most.
const MOUNT_TRIES: usize = 3;

pub(crate) struct Pushed {
    pub(crate) name: ImageName,
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) uploaded: u32,
    pub(crate) mounted: u32,
    pub(crate) present: u32,
    pub(crate) referrers: u32,
}

pub(crate) async fn push(
    store: &Store,
    config: &Config,
    name: &str,
    credential: &Credential,
    with_referrers: bool,
    events: &Events,
) -> Result<Pushed> {
    let name: ImageName = name.parse()?;
    let image = store.images().inspect(&name.full()).await?;
    let reference = parse_reference(&name.full())?;
    let top_type = image.record.media_type.clone();
    let top = Bytes::from(image.manifest);
    let (mut blobs, children) = graph(store, &name, &top_type, &top).await?;
    let mut referrers = Vec::new();
    for record in image.referrers.into_iter().filter(|_| with_referrers) {
        let bytes = read_json(store, &record.digest).await?;
        let (b, c) = graph(store, &name, &record.media_type, &bytes).await?;
        blobs.extend(b);
        referrers.push((record, bytes, c));
    }
    let blobs = plan::unique(blobs);
    // What is read from the store stays in it until the push ends, whatever `rmi` runs.
    let lease = Lease::create(store).await?;
    let documents = std::iter::once(&image.record.digest)
        .chain(children.iter().map(|(c, _)| &c.blob.digest))
        .chain(referrers.iter().flat_map(|(r, _, c)| {
            std::iter::once(&r.digest).chain(c.iter().map(|(c, _)| &c.blob.digest))
        }));
    let held: Vec<Digest> = documents
        .chain(blobs.iter().map(|b| &b.digest))
        .cloned()
        .collect();
    store.leases().hold_blobs(lease.id(), &held).await?;
    let remote = Remote::connect(config, &reference, credential, RegistryOperation::Push).await?;
    let sources = mount_sources(store, &reference).await?;
    for b in &blobs {
        events.blob(&b.digest, BlobState::Waiting, 0, b.size).await;
    }
    let outcomes: Vec<BlobState> = futures_util::stream::iter(blobs.iter().cloned())
        .map(|b| {
            let from = sources.get(&b.digest).cloned().unwrap_or_default();
            send_blob(store, &remote, &reference, b, from, events)
        })
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect()
        .await?;
    push_manifests(&remote, &reference, children).await?;
    remote
        .push_manifest(&reference, top.clone(), &top_type)
        .await?;
    // The image first: a registry may check that a referrer's subject is there.
    let mut records = Vec::new();
    for (record, bytes, children) in referrers {
        push_manifests(&remote, &reference, children).await?;
        let at = by_digest(&reference, &record.digest);
        remote.push_manifest(&at, bytes, &record.media_type).await?;
        records.push(record);
    }
    referrers::publish(&remote, &reference, &records).await?;
    lease.release().await;
    let count = |s: BlobState| outcomes.iter().filter(|o| **o == s).count() as u32;
    tracing::info!(name = %name.full(), digest = %image.record.digest, "pushed");
    Ok(Pushed {
        name,
        digest: image.record.digest,
        size: top.len() as u64,
        uploaded: count(BlobState::Done),
        mounted: count(BlobState::Mounted),
        present: count(BlobState::Present),
        referrers: records.len() as u32,
    })
}

/// The blobs of a stored manifest; of an index, its manifests and all their blobs.
async fn graph(
    store: &Store,
    name: &ImageName,
    media_type: &str,
    bytes: &[u8],
) -> Result<(Vec<BlobRef>, Vec<(Child, Bytes)>)> {
    let entries = match plan::parse(media_type, bytes).map_err(corrupt)? {
        Document::Manifest(blobs) => return Ok((blobs, Vec::new())),
        Document::Index(entries) => entries,
    };
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    for entry in entries {
        let bytes = read_json(store, &entry.blob.digest).await?;
        match plan::parse(&entry.media_type, &bytes).map_err(corrupt)? {
            Document::Manifest(b) => blobs.extend(b),
            Document::Index(_) => {
                return Err(Error::InvalidArgument(format!(
                    "{name} holds an index inside its index, which push does not send"
                )));
            }
        }
        children.push((entry, bytes));
    }
    Ok((plan::unique(blobs), children))
}

/// An index's manifests, by digest, before the index that lists them.
async fn push_manifests(
    remote: &Remote,
    reference: &Reference,
    children: Vec<(Child, Bytes)>,
) -> Result<()> {
    for (entry, bytes) in children {
        let at = by_digest(reference, &entry.blob.digest);
        remote.push_manifest(&at, bytes, &entry.media_type).await?;
    }
    Ok(())
}

/// A stored manifest the record lists but that does not parse is damage to the store.
fn corrupt(why: String) -> Error {
    Error::Store(store::Error::Corrupt(why))
}

async fn read_json(store: &Store, digest: &Digest) -> Result<Bytes> {
    let store::BlobRead { file, len } = store.content().read_blob(digest, 0, 0).await?;
    if len > MAX_JSON {
        return Err(corrupt(format!(
            "manifest {digest} is {len} bytes, over the {MAX_JSON}-byte limit"
        )));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| store::Error::Io {
            context: format!("reading blob {digest}"),
            source: e,
        })?;
    Ok(Bytes::from(bytes))
}

/// For each blob, the other repositories of the target's registry that stored images are
/// named in and hold it: where the registry most likely has it already (pulled from or pushed
/// there), so a mount can replace the upload.
async fn mount_sources(store: &Store, target: &Reference) -> Result<HashMap<Digest, Vec<String>>> {
    let mut sources: HashMap<Digest, Vec<String>> = HashMap::new();
    for image in store.images().list()? {
        let Some(name) = image.name else { continue };
        let Ok(r) = parse_reference(&name.full()) else {
            continue;
        };
        if r.registry() != target.registry() || r.repository() == target.repository() {
            continue;
        }
        for digest in store.images().blobs_of(&image.digest)? {
            let repos = sources.entry(digest).or_default();
            if !repos.iter().any(|x| x == r.repository()) {
                repos.push(r.repository().to_owned());
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
                .send(Event::Blob {
                    digest: digest.clone(),
                    state: BlobState::Mounted,
                    done: size,
                    total: size,
                    from: Some(from.clone()),
                })
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
) -> impl futures_util::Stream<Item = oci_client::errors::Result<Bytes>> + Send + 'static {
    let open = {
        let digest = digest.clone();
        async move { store.content().read_blob(&digest, 0, 0).await }
    };
    let mut sent = 0u64;
    futures_util::stream::once(open)
        .map(|opened| match opened {
            Ok(read) => ReaderStream::with_capacity(read.file, 1 << 20)
                .map_err(oci_client::errors::OciDistributionError::IoError)
                .left_stream(),
            Err(e) => futures_util::stream::once(async move {
                Err(oci_client::errors::OciDistributionError::IoError(
                    std::io::Error::other(e.to_string()),
                ))
            })
            .right_stream(),
        })
        .flatten()
        .inspect_ok(move |b| {
            sent += b.len() as u64;
            events.bytes(&digest, sent, size);
        })
}
