//! A pull: resolve the reference, choose what to store, write each missing blob through the
//! store's verified writer under a lease, then name the image in one transaction. A pull that
//! fails drops its lease, so whatever it wrote is collected.

use bytes::{Bytes, BytesMut};
use std::sync::Mutex;

use futures_util::{Stream, StreamExt, TryStreamExt};
use oci_client::Reference;
use store::{
    Began, BlobRef, Created, Digest, Document, ImageName, Platform, Referrers, Store, WriteStart,
};

use super::endpoint::Config;
use super::error::{Error, Result, from_write, read_error};
use super::graph::{Pulling, Walked};
use super::lease::Lease;
use super::mirrors::Sources;
use super::plan::{self, Platforms};
use super::platform;
use super::referrers::{self, Found, Referrer};
use super::remote::{Fetched, retry};
use super::{BlobState, Credential, Event, Events, PARALLEL_BLOBS, by_digest, parse_reference};

/// Bytes gathered from the registry before they are handed to the writer in one piece.
const PIECE: usize = 1 << 20;

pub(crate) struct PullOptions {
    pub(crate) reference: String,
    pub(crate) credential: Credential,
    pub(crate) platform: Option<String>,
    pub(crate) all_platforms: bool,
    /// Whether the referrers (signatures, SBOMs) the registry lists for what is pulled come too.
    pub(crate) referrers: Referrers,
}

pub(crate) struct Pulled {
    pub(crate) name: Option<ImageName>,
    pub(crate) digest: Digest,
    /// The image ID; none for an artifact that refers to a stored image (a signature, say).
    pub(crate) id: Option<Digest>,
    pub(crate) downloaded: u32,
    pub(crate) present: u32,
    pub(crate) downloaded_bytes: u64,
    /// The bytes of the blobs the store held already (`present` of them).
    pub(crate) present_bytes: u64,
    pub(crate) referrers: u32,
}

/// What a pull stores: the documents (manifests, index) it has in memory, the blobs they point
/// at, and which document is the image.
struct Wanted {
    top: Digest,
    media_type: String,
    documents: Vec<Fetched>,
    blobs: Vec<BlobRef>,
    /// The referrers that come too, every subject before its referrers.
    referrers: Vec<Referrer>,
}

/// What storing a pull's blobs took.
struct Counts {
    downloaded: u32,
    present: u32,
    downloaded_bytes: u64,
    present_bytes: u64,
}

pub(crate) async fn pull(
    store: &Store,
    config: &Config,
    opts: PullOptions,
    events: &Events,
) -> Result<Pulled> {
    let reference = parse_reference(&opts.reference)?;
    // A tag names the image it pulls; a digest names none.
    let name = match reference.digest() {
        None => Some(ImageName::try_from(&reference)?),
        Some(_) => None,
    };
    let platforms = match (opts.all_platforms, &opts.platform) {
        (true, _) => Platforms::All,
        (false, Some(p)) => Platforms::One(p.parse::<Platform>()?),
        (false, None) => Platforms::One(Platform::host()),
    };
    // The registry's mirrors, if its hosts.toml lists any, then the registry.
    let remote = Sources::new(config, &reference, &opts.credential)?;
    let mut walks = Pulling::new(&remote, &reference);
    let asked = platforms_asked(&opts, &platforms);
    let mut plan = resolve(&remote, &reference, &platforms, asked, &mut walks).await?;
    if opts.referrers == Referrers::Include {
        let subjects: Vec<Digest> = plan.documents.iter().map(|d| d.digest.clone()).collect();
        plan.add(referrers::discover(&remote, &reference, &subjects, &mut walks).await?);
    }
    events.send(plan.resolved()).await;
    let lease = Lease::create(store).await?;
    let result = store_image(store, &remote, &reference, &plan, name, &lease, events).await;
    lease.release().await;
    let pulled = result?;
    let (digest, downloaded, present) = (&pulled.digest, pulled.downloaded, pulled.present);
    let mirrors = remote.mirrors_used().join(", ");
    tracing::info!(reference = %reference.whole(), %digest, downloaded, present, mirrors, "pulled");
    Ok(pulled)
}

impl Wanted {
    /// The referrers found, with what they need.
    fn add(&mut self, found: Found) {
        self.documents.extend(found.documents);
        self.referrers = found.referrers;
        let blobs = std::mem::take(&mut self.blobs);
        self.blobs = plan::unique(blobs.into_iter().chain(found.blobs));
    }

    /// What the pull will store, as its first event tells.
    fn resolved(&self) -> Event {
        let documents = self.documents.iter().map(|d| BlobRef {
            digest: d.digest.clone(),
            size: d.bytes.len() as u64,
        });
        Event::Resolved {
            digest: self.top.clone(),
            media_type: self.media_type.clone(),
            blobs: documents.chain(self.blobs.iter().cloned()).collect(),
        }
    }
}

/// Writes what the pull wants under its lease, then names the image and records its referrers.
async fn store_image(
    store: &Store,
    remote: &Sources<'_>,
    reference: &Reference,
    plan: &Wanted,
    name: Option<ImageName>,
    lease: &Lease,
    events: &Events,
) -> Result<Pulled> {
    let counts = store_all(store, remote, reference, plan, lease.id(), events).await?;
    let names: Vec<ImageName> = name.iter().cloned().collect();
    let created = store
        .images()
        .create_image(&plan.top, Some(&plan.media_type), &names)
        .await?;
    let referrers = store_referrers(store, &plan.referrers).await?;
    let (digest, id) = match created {
        Created::Image(image) => (image.digest, Some(image.id)),
        Created::Referrer(r) => (r.digest, None),
    };
    Ok(Pulled {
        name,
        digest,
        id,
        downloaded: counts.downloaded,
        present: counts.present,
        downloaded_bytes: counts.downloaded_bytes,
        present_bytes: counts.present_bytes,
        referrers,
    })
}

/// Records each pulled referrer, subjects first; how many.
async fn store_referrers(store: &Store, referrers: &[Referrer]) -> Result<u32> {
    for r in referrers {
        store
            .images()
            .create_referrer(&r.digest, Some(&r.media_type))
            .await?;
    }
    Ok(referrers.len() as u32)
}

/// The platform `--platform` named, which a lone manifest must then be of.
fn platforms_asked<'a>(opts: &PullOptions, platforms: &'a Platforms) -> Option<&'a Platform> {
    match platforms {
        Platforms::One(p) if opts.platform.is_some() => Some(p),
        _ => None,
    }
}

/// Reads the reference's manifest or index and, for an index, the manifests it needs.
async fn resolve(
    remote: &Sources<'_>,
    reference: &Reference,
    platforms: &Platforms,
    asked: Option<&Platform>,
    walks: &mut Pulling<'_>,
) -> Result<Wanted> {
    let mut top = remote.manifest(reference).await?;
    if let Platforms::One(wanted) = platforms
        && store::is_index(&top.media_type)
    {
        let entries = Document::parse(&top.digest, &top.media_type, &top.bytes)
            .and_then(|index| index.entries())
            .map_err(|e| Error::bad_document(&sent(remote, &top), e))?;
        let child = plan::choose(&entries, wanted).ok_or_else(|| {
            let offered: Vec<String> = entries
                .iter()
                .filter_map(|e| e.platform.as_ref().map(ToString::to_string))
                .collect();
            Error::NoPlatform(format!(
                "{} has no image for {wanted} (it has {}); pull another with --platform, \
                 or all with --all-platforms",
                reference.whole(),
                offered.join(", ")
            ))
        })?;
        top = remote
            .manifest(&by_digest(reference, &child.blob.digest))
            .await?;
        let (promised, came) = (child.blob.size, top.bytes.len());
        if came as u64 != promised {
            let why = format!("the index says {promised} bytes, but {came} came");
            return Err(bad(remote, &top, &why));
        }
        if store::is_index(&top.media_type) {
            return Err(bad(
                remote,
                &top,
                "an index where the index promised a manifest",
            ));
        }
    } else if let Some(wanted) = asked {
        platform::refuse_other(remote, reference, &top, wanted).await?;
    }
    let (digest, media_type) = (top.digest.clone(), top.media_type.clone());
    let Walked { documents, blobs } = walks.walk(top).await?;
    Ok(Wanted {
        top: digest,
        media_type,
        documents,
        blobs,
        referrers: Vec::new(),
    })
}

fn bad(remote: &Sources<'_>, doc: &Fetched, why: &str) -> Error {
    Error::BadRemote(format!("{}: {why}", sent(remote, doc)))
}

/// Where a document came from, as messages say it.
fn sent(remote: &Sources<'_>, doc: &Fetched) -> String {
    format!(
        "manifest {} from {}",
        doc.digest,
        remote.sent_by(&doc.digest)
    )
}

/// Writes every document and blob the store lacks.
async fn store_all(
    store: &Store,
    remote: &Sources<'_>,
    repo: &Reference,
    plan: &Wanted,
    lease: &str,
    events: &Events,
) -> Result<Counts> {
    for doc in &plan.documents {
        let blob = BlobRef {
            digest: doc.digest.clone(),
            size: doc.bytes.len() as u64,
        };
        if let Some(mut write) = begin(store, remote, &blob, lease).await? {
            let unfinished = Unfinished::new(store, lease, &blob.digest);
            write.write(doc.bytes.clone()).await?;
            unfinished.finished();
        }
    }
    for b in &plan.blobs {
        events.blob(&b.digest, BlobState::Waiting, 0, b.size).await;
    }
    let results: Vec<Option<u64>> = futures_util::stream::iter(plan.blobs.iter().cloned())
        .map(|b| fetch(store, remote, repo, b, lease, events))
        .buffer_unordered(PARALLEL_BLOBS)
        .try_collect()
        .await?;
    let downloaded = results.iter().flatten().count() as u32;
    // A blob fetched is fetched whole (its size checked), so the rest of the bytes were present.
    let downloaded_bytes: u64 = results.iter().flatten().sum();
    let wanted: u64 = plan.blobs.iter().map(|b| b.size).sum();
    Ok(Counts {
        downloaded,
        present: results.len() as u32 - downloaded,
        downloaded_bytes,
        present_bytes: wanted - downloaded_bytes,
    })
}

fn write_ref(lease: &str, digest: &Digest) -> String {
    format!("pull-{lease}-{}", digest.hex())
}

/// Opens a write of `blob` under the lease; `None` when the store holds it already (it is then
/// on the lease too, so nothing can collect it before the image is named).
async fn begin(
    store: &Store,
    remote: &Sources<'_>,
    blob: &BlobRef,
    lease: &str,
) -> Result<Option<Box<store::ContentWrite>>> {
    let start = WriteStart {
        reference: write_ref(lease, &blob.digest),
        expected: blob.digest.clone(),
        total: blob.size,
        lease: Some(lease.to_owned()),
        offset: 0,
    };
    match store.content().begin_write(start).await {
        Ok(Began::Done(_)) => Ok(None),
        Ok(Began::Open(w)) => Ok(Some(w)),
        // The one request here a registry decides: a size that is not the stored blob's.
        Err(store::Error::InvalidArgument(m)) => {
            Err(Error::BadRemote(format!("{} says: {m}", remote.host())))
        }
        Err(e) => Err(e.into()),
    }
}

/// A pull's write of one blob, aborted unless it finished: when it fails, and also when the
/// pull is dropped midway (another blob failed, the client hung up). A write merely dropped is
/// kept for a resume, its partial file until idle writes expire, which a pull never resumes.
struct Unfinished<'a> {
    store: &'a Store,
    reference: Option<String>,
}

impl<'a> Unfinished<'a> {
    fn new(store: &'a Store, lease: &str, digest: &Digest) -> Self {
        let reference = Some(write_ref(lease, digest));
        Unfinished { store, reference }
    }

    fn finished(mut self) {
        self.reference = None;
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(reference) = self.reference.take() {
            let _ = self.store.content().abort_write(&reference);
        }
    }
}

/// Downloads one blob unless the store has it; returns the bytes downloaded, `None` if present.
async fn fetch(
    store: &Store,
    remote: &Sources<'_>,
    repo: &Reference,
    blob: BlobRef,
    lease: &str,
    events: &Events,
) -> Result<Option<u64>> {
    let (blob, avoid) = (&blob, Mutex::new(Vec::new()));
    let downloaded = retry(|| async {
        let Some(mut write) = begin(store, remote, blob, lease).await? else {
            return Ok(None);
        };
        let unfinished = Unfinished::new(store, lease, &blob.digest);
        let filled = fill(&mut write, remote, repo, blob, events, &avoid).await?;
        unfinished.finished();
        Ok(Some(filled))
    })
    .await?;
    let state = if downloaded.is_some() {
        BlobState::Done
    } else {
        BlobState::Present
    };
    events.blob(&blob.digest, state, blob.size, blob.size).await;
    Ok(downloaded)
}

/// Streams the blob's body into the write from the first host that answers, other than the
/// mirrors in `avoid`, whose bodies of it failed before.
async fn fill(
    write: &mut store::ContentWrite,
    remote: &Sources<'_>,
    repo: &Reference,
    blob: &BlobRef,
    events: &Events,
    avoid: &Mutex<Vec<String>>,
) -> Result<u64> {
    let skip = avoid.lock().expect("hosts passed over").clone();
    let (host, body) = remote.blob(repo, &blob.digest, blob.size, &skip).await?;
    events
        .blob(&blob.digest, BlobState::Moving, 0, blob.size)
        .await;
    let streamed = stream_into(write, &host, body, blob, events).await;
    streamed.map_err(|e| remote.pass_over(&host, e, avoid))
}

/// Streams a blob's body into the write in 1 MiB pieces; the write verifies and commits it.
async fn stream_into(
    write: &mut store::ContentWrite,
    host: &str,
    mut body: impl Stream<Item = std::io::Result<Bytes>> + Unpin,
    blob: &BlobRef,
    events: &Events,
) -> Result<u64> {
    let (digest, size) = (&blob.digest, blob.size);
    let mut piece = BytesMut::with_capacity(PIECE);
    let mut received = 0u64;
    let mut put = async |piece: Bytes, received: u64| -> Result<()> {
        write
            .write(piece)
            .await
            .map_err(|e| from_write(host, digest, e))?;
        events.bytes(digest, received, size);
        Ok(())
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| read_error(host, digest, &e))?;
        received += chunk.len() as u64;
        if received > size {
            return Err(Error::BadRemote(format!(
                "blob {digest} from {host}: more than the {size} bytes the manifest gives"
            )));
        }
        piece.extend_from_slice(&chunk);
        if piece.len() >= PIECE {
            put(piece.split().freeze(), received).await?;
        }
    }
    if received < size {
        return Err(Error::BadRemote(format!(
            "blob {digest} from {host}: {received} of its {size} bytes, then the body ended"
        )));
    }
    if !piece.is_empty() {
        put(piece.freeze(), received).await?;
    }
    Ok(received)
}
