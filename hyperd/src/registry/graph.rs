//! The registry and the store as sources of the store's one walk ([`store::Walker`]): a pull
//! walks what a registry serves, a push what the store holds, each checked as a load checks an
//! archive. The documents read on the way are kept, for the pull to store and the push to send.

use std::collections::HashMap;

use bytes::Bytes;
use oci_client::Reference;
use store::limits::MAX_JSON;
use store::{BlobRef, Digest, Graph, ImageName, Source, Store, Walker};
use tokio::io::AsyncReadExt;

use super::by_digest;
use super::error::{Error, Result};
use super::remote::{Fetched, Remote};

/// A walked graph as a transfer moves it.
pub(super) struct Walked {
    /// The manifests and indexes, top-level first, as read (each under the media type its
    /// descriptor gives it).
    pub(super) documents: Vec<Fetched>,
    /// The other blobs, configs and layers, each once.
    pub(super) blobs: Vec<BlobRef>,
}

/// Documents fetched from a registry by digest (digest checked, at most 4 MiB, in
/// [`Remote::manifest`]).
struct Registry<'a> {
    remote: &'a Remote,
    repo: &'a Reference,
    read: HashMap<Digest, Bytes>,
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
        if let Some(bytes) = self.read.get(digest) {
            return Ok(bytes.clone());
        }
        let fetched = self.remote.manifest(&by_digest(self.repo, digest)).await?;
        self.read.insert(digest.clone(), fetched.bytes.clone());
        Ok(fetched.bytes)
    }
}

/// The graph under `top`, a manifest or index the registry sent for `repo`.
pub(super) async fn from_registry(
    remote: &Remote,
    repo: &Reference,
    top: Fetched,
) -> Result<Walked> {
    let host = remote.host();
    let blob = BlobRef {
        digest: top.digest.clone(),
        size: top.bytes.len() as u64,
    };
    let mut source = Registry {
        remote,
        repo,
        read: HashMap::from([(top.digest, top.bytes)]),
    };
    let graph = Walker::new(&mut source)
        .walk_document(&blob, &top.media_type, "the reference")
        .await
        .map_err(|e| match e {
            // What the walk refuses, the registry sent.
            Error::Store(store::Error::InvalidArchive(m)) => {
                Error::BadRemote(format!("{} from {host}: {m}", repo.whole()))
            }
            e => e,
        })?;
    if let Some(nested) = graph.nested_index() {
        return Err(Error::BadRemote(format!(
            "manifest {} from {host}: an index inside an index, which pulls do not follow",
            nested.digest
        )));
    }
    Ok(walked(graph, source.read))
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
        let bytes = read_json(self.store, digest).await?;
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
    Ok(walked(graph, source.read))
}

/// The graph's documents with the bytes the walk read, and its other blobs.
fn walked(graph: Graph, mut read: HashMap<Digest, Bytes>) -> Walked {
    let blobs = graph.leaves();
    let documents = graph
        .documents
        .into_iter()
        .map(|d| Fetched {
            bytes: read
                .remove(&d.digest)
                .expect("the walk read every document"),
            digest: d.digest,
            media_type: d.media_type,
        })
        .collect();
    Walked { documents, blobs }
}

async fn read_json(store: &Store, digest: &Digest) -> Result<Bytes> {
    let store::BlobRead { file, len } = store.content().read_blob(digest, 0, 0).await?;
    if len > MAX_JSON {
        return Err(Error::Store(store::Error::Corrupt(format!(
            "manifest {digest} is {len} bytes, over the {MAX_JSON}-byte limit"
        ))));
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
