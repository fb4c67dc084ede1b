//! The registry and the store as sources of the store's one walk ([`store::Walker`]): a pull
//! walks what a registry serves, a push what the store holds, each checked as a load checks an
//! archive. The documents read on the way are kept, for the pull to store and the push to send.

use std::collections::HashMap;

use bytes::Bytes;
use oci_client::Reference;
use store::{BlobRef, Digest, Document, Graph, ImageName, Source, Store, Walker, is_index};

use super::by_digest;
use super::error::{Error, Result};
use super::mirrors::Sources;
use super::remote::Fetched;

/// A walked graph as a transfer moves it.
pub(super) struct Walked {
    /// The manifests and indexes, top-level first, as read (each under the media type its
    /// descriptor gives it).
    pub(super) documents: Vec<Fetched>,
    /// The other blobs, configs and layers, each once.
    pub(super) blobs: Vec<BlobRef>,
}

/// Documents fetched from a registry or its mirrors by digest (digest checked, at most 4 MiB,
/// in `Remote::manifest`).
struct Registry<'a> {
    remote: &'a Sources<'a>,
    repo: &'a Reference,
    read: HashMap<Digest, Bytes>,
    /// The documents the walk under way asked for, in order: who sent them is who a refusal
    /// of the walk names.
    asked: Vec<Digest>,
}

impl Source for Registry<'_> {
    type Error = Error;
    const WHERE: &'static str = "at the registry";

    /// What the descriptor promises: a blob's size is checked as it downloads (the store's
    /// writer refuses any other), and asking first would cost a request per blob.
    async fn size(&mut self, blob: &BlobRef) -> Result<Option<u64>> {
        Ok(Some(blob.size))
    }

    async fn json(&mut self, digest: &Digest) -> Result<Bytes> {
        self.asked.push(digest.clone());
        if let Some(bytes) = self.read.get(digest) {
            return Ok(bytes.clone());
        }
        let fetched = self.remote.manifest(&by_digest(self.repo, digest)).await?;
        self.read.insert(digest.clone(), fetched.bytes.clone());
        Ok(fetched.bytes)
    }
}

/// A pull's walks of what a registry serves, through one walker: the descriptor limit counts
/// the image and its referrers together, and no document is fetched twice.
pub(super) struct Pulling<'a>(Walker<Registry<'a>>);

impl<'a> Pulling<'a> {
    pub(super) fn new(remote: &'a Sources<'a>, repo: &'a Reference) -> Self {
        Pulling(Walker::new(Registry {
            remote,
            repo,
            read: HashMap::new(),
            asked: Vec::new(),
        }))
    }

    /// The graph under `top`, a manifest or index the registry sent for the pull's reference.
    pub(super) async fn walk(&mut self, top: Fetched) -> Result<Walked> {
        let (remote, repo) = {
            let source = self.0.source();
            (source.remote, source.repo)
        };
        refuse_nested(remote, &top)?;
        let blob = BlobRef {
            digest: top.digest.clone(),
            size: top.bytes.len() as u64,
        };
        let source = self.0.source();
        source.asked = vec![top.digest.clone()];
        source.read.insert(top.digest, top.bytes);
        let walk = self
            .0
            .walk_document(&blob, &top.media_type, "the reference")
            .await;
        let senders = senders(remote, &self.0.source().asked);
        let graph = walk.map_err(|e| match e {
            // What the walk refuses, the hosts that sent its documents sent.
            Error::Store(e @ store::Error::InvalidArchive(_)) => {
                Error::bad_document(&format!("{} from {senders}", repo.whole()), e)
            }
            e => e,
        })?;
        // Only reachable through a manifest that lists an index as a layer or config.
        if let Some(nested) = graph.nested_index() {
            return Err(nested_index(&senders, &nested.digest));
        }
        Ok(walked(graph, &self.0.source().read))
    }
}

/// An index that lists an index, refused from its own listing before anything it lists is
/// fetched.
fn refuse_nested(remote: &Sources, top: &Fetched) -> Result<()> {
    if !is_index(&top.media_type) {
        return Ok(());
    }
    let entries = Document::parse(&top.digest, &top.media_type, &top.bytes)
        .and_then(|index| index.entries())
        .map_err(|e| {
            let sender = remote.sent_by(&top.digest);
            Error::bad_document(&format!("manifest {} from {sender}", top.digest), e)
        })?;
    match entries.iter().find(|e| is_index(&e.media_type)) {
        Some(nested) => Err(nested_index(
            &remote.sent_by(&top.digest),
            &nested.blob.digest,
        )),
        None => Ok(()),
    }
}

/// The hosts that sent `documents`, as messages name them, each once, in order: a mirror
/// named as one (`sent_by`), the registry as itself.
fn senders(remote: &Sources, documents: &[Digest]) -> String {
    let mut named: Vec<String> = Vec::new();
    for sender in documents.iter().map(|d| remote.sent_by(d)) {
        if !named.contains(&sender) {
            named.push(sender);
        }
    }
    named.join(" and ")
}

/// `digest`, an index listed inside one of the documents `sender` sent.
fn nested_index(sender: &str, digest: &Digest) -> Error {
    Error::BadRemote(format!(
        "manifest {digest} from {sender}: an index inside an index, which pulls do not follow"
    ))
}

/// Documents read from the store's blobs, blob sizes from their files.
struct Stored<'a> {
    store: &'a Store,
    read: HashMap<Digest, Bytes>,
}

impl Source for Stored<'_> {
    type Error = Error;
    const WHERE: &'static str = "stored";

    async fn size(&mut self, blob: &BlobRef) -> Result<Option<u64>> {
        let sizes = self
            .store
            .content()
            .blob_sizes(vec![blob.digest.clone()])
            .await?;
        Ok(sizes.into_iter().next().flatten())
    }

    async fn json(&mut self, digest: &Digest) -> Result<Bytes> {
        if let Some(bytes) = self.read.get(digest) {
            return Ok(bytes.clone());
        }
        let bytes = Bytes::from(self.store.content().read_json(digest).await?);
        self.read.insert(digest.clone(), bytes.clone());
        Ok(bytes)
    }
}

/// The graph under `top`, a manifest or index of `media_type` the store holds for `name`.
pub(super) async fn from_store(
    store: &Store,
    name: &ImageName,
    top: &BlobRef,
    media_type: &str,
) -> Result<Walked> {
    let mut source = Stored {
        store,
        read: HashMap::new(),
    };
    let graph = Walker::new(&mut source)
        .walk_document(top, media_type, "the stored image")
        .await
        .map_err(|e| match e {
            // A stored graph the walk refuses is damage to the store.
            Error::Store(store::Error::InvalidArchive(m)) => Error::Store(store::Error::Corrupt(m)),
            e => e,
        })?;
    if graph.nested_index().is_some() {
        return Err(Error::InvalidArgument(format!(
            "{name} holds an index inside its index, which push does not send"
        )));
    }
    Ok(walked(graph, &source.read))
}

/// The graph's documents with the bytes the walk read, and its other blobs.
fn walked(graph: Graph, read: &HashMap<Digest, Bytes>) -> Walked {
    let blobs = graph.leaves();
    let documents = graph
        .documents
        .into_iter()
        .map(|d| Fetched {
            bytes: read
                .get(&d.digest)
                .expect("the walk read every document")
                .clone(),
            digest: d.digest,
            media_type: d.media_type,
        })
        .collect();
    Walked { documents, blobs }
}
