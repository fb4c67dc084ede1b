//! The one walk over an OCI graph: from a manifest or index through nested indexes to
//! manifests, configs and layers, checking every descriptor against what its [`Source`] holds.
//! Loads (an archive's staged blobs), CreateImage (the store's blobs), registry pulls and pushes
//! (in hyperd) walk through it; what each makes of the [`Graph`] is theirs.
//!
//! Checks, in the order made: at most [`MAX_DESCRIPTORS`] descriptors per walker, each digest a
//! sha256 one, each media type an RFC 6838 one, each blob held with the size its descriptor
//! promises, no index inside itself, indexes nested less than [`MAX_INDEX_DEPTH`] deep and
//! manifests no deeper than that (a manifest whose "layer" is another manifest is a document
//! like any other), each document read with the size its descriptor promises and what that
//! descriptor declares (and at most [`crate::limits::MAX_JSON`] bytes, which the source enforces).
//!
//! Each blob is looked at once and each document read and descended into once per walk: a
//! digest listed again (an index naming one manifest 20,000 times) is only checked against what
//! its first listing found. That is apart from the cycle check, which asks whether a digest is
//! on the path being walked, not whether it was walked before.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use oci_spec::image::Descriptor;

use crate::digest::Digest;
use crate::document::{self, BlobRef, Document};
use crate::error::Error;
use crate::image::{is_image_config, is_index, is_manifest, is_valid_media_type};
use crate::limits::{MAX_DESCRIPTORS, MAX_INDEX_DEPTH};

/// Where the blobs a walk visits come from: which it holds with which size, and documents.
pub trait Source: Send {
    /// What fetching fails with; the walk's own refusals are store errors turned into it.
    type Error: From<Error> + Send;
    /// Where the blobs are, as error messages say it: "in the archive", "stored".
    const WHERE: &'static str;
    /// The size of the blob `blob` names if the source holds it. A source backed by the store
    /// pins it first; one that checks sizes as blobs arrive (a registry) answers `blob.size`.
    fn size(
        &mut self,
        blob: &BlobRef,
    ) -> impl Future<Output = Result<Option<u64>, Self::Error>> + Send;
    /// A JSON blob held (a manifest, an index; for the store's own sources a config too), read
    /// whole, at most [`crate::limits::MAX_JSON`] bytes.
    fn json(&mut self, digest: &Digest) -> impl Future<Output = Result<Bytes, Self::Error>> + Send;
}

/// A source lent to a walker stays its owner's.
impl<S: Source> Source for &mut S {
    type Error = S::Error;
    const WHERE: &'static str = S::WHERE;

    fn size(
        &mut self,
        blob: &BlobRef,
    ) -> impl Future<Output = Result<Option<u64>, Self::Error>> + Send {
        S::size(self, blob)
    }

    fn json(&mut self, digest: &Digest) -> impl Future<Output = Result<Bytes, Self::Error>> + Send {
        S::json(self, digest)
    }
}

/// An image config a manifest points at: what its `diff_ids` must count.
#[derive(Clone, Debug)]
pub struct ImageConfig {
    /// The manifest.
    pub manifest: Digest,
    /// Its config.
    pub config: Digest,
    /// How many layers the manifest lists.
    pub layers: usize,
}

/// A manifest or index a walk read.
#[derive(Clone, Debug)]
pub struct Visited {
    /// Its digest.
    pub digest: Digest,
    /// Its media type, as the descriptor that led to it gives it.
    pub media_type: String,
    /// How deep: 0 for the top-level one.
    pub depth: usize,
}

/// What a walk from one top-level descriptor found.
#[derive(Clone, Debug)]
pub struct Graph {
    /// The top-level document; none when the top-level blob is neither manifest nor index.
    pub top: Option<Document>,
    /// Every blob, top-level first, each once, in the order visited.
    pub blobs: Vec<BlobRef>,
    /// The manifests and indexes among `blobs`, top-level first: what referrers may name as
    /// their subject.
    pub documents: Vec<Visited>,
    /// The image configs of the manifests visited (not an artifact's config), in that order.
    pub configs: Vec<ImageConfig>,
}

impl Graph {
    /// Bytes of all its blobs.
    pub fn total(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    /// An index inside the top-level one, if there is one.
    pub fn nested_index(&self) -> Option<&Visited> {
        self.documents
            .iter()
            .find(|d| d.depth > 0 && is_index(&d.media_type))
    }

    /// The blobs that are not documents: configs and layers.
    pub fn leaves(&self) -> Vec<BlobRef> {
        let documents: HashSet<&Digest> = self.documents.iter().map(|d| &d.digest).collect();
        let leaves = self.blobs.iter().filter(|b| !documents.contains(&b.digest));
        leaves.cloned().collect()
    }
}

/// Walks graphs through one source, counting descriptors across all its walks: an archive's
/// images, or a pull's image and referrers, share one limit.
pub struct Walker<S> {
    source: S,
    descriptors: usize,
}

type Step<'a, E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send + 'a>>;

/// One walk's state.
struct Walk {
    graph: Graph,
    /// Each blob looked at so far, with the size the source holds it with.
    sizes: HashMap<Digest, u64>,
    /// Each document descended into so far, under the media type it was read as (a document
    /// type decides how its bytes are read, so a digest listed under two is read as each).
    descended: HashSet<(Digest, String)>,
    /// The indexes being visited, outermost first: a cycle shows up here.
    stack: Vec<Digest>,
}

impl<S: Source> Walker<S> {
    /// A walker over `source` (owned, or lent as `&mut`).
    pub fn new(source: S) -> Self {
        Walker {
            source,
            descriptors: 0,
        }
    }

    /// The source walked, between walks.
    pub fn source(&mut self) -> &mut S {
        &mut self.source
    }

    /// The graph under the manifest or index `top` of `media_type`, named in `parent` (as
    /// messages say it: "the request", "the reference"). Anything else is refused.
    pub async fn walk_document(
        &mut self,
        top: &BlobRef,
        media_type: &str,
        parent: &str,
    ) -> Result<Graph, S::Error> {
        if !is_index(media_type) && !is_manifest(media_type) {
            return Err(document::not_a_document(media_type).into());
        }
        let desc = document::descriptor(top, media_type)?;
        self.walk(&desc, parent).await
    }

    /// The graph under the descriptor `top`, named in `parent`.
    pub(crate) async fn walk(&mut self, top: &Descriptor, parent: &str) -> Result<Graph, S::Error> {
        let mut walk = Walk {
            graph: Graph {
                top: None,
                blobs: Vec::new(),
                documents: Vec::new(),
                configs: Vec::new(),
            },
            sizes: HashMap::new(),
            descended: HashSet::new(),
            stack: Vec::new(),
        };
        self.visit(top, parent, 0, &mut walk).await?;
        Ok(walk.graph)
    }

    /// Checks one descriptor against what the source holds, records its blob, and descends
    /// into it when it is an index or a manifest.
    fn visit<'a>(
        &'a mut self,
        desc: &'a Descriptor,
        parent: &'a str,
        depth: usize,
        walk: &'a mut Walk,
    ) -> Step<'a, S::Error> {
        Box::pin(async move {
            self.descriptors += 1;
            if self.descriptors > MAX_DESCRIPTORS {
                let held = S::WHERE;
                return Err(Error::invalid(format!(
                    "more than {MAX_DESCRIPTORS} descriptors {held}"
                ))
                .into());
            }
            let digest = Digest::try_from(desc.digest())?;
            let media_type = desc.media_type().to_string();
            if !is_valid_media_type(&media_type) {
                return Err(Error::invalid(format!(
                    "{digest} in {parent} has media type {media_type:?}, which is not a media type"
                ))
                .into());
            }
            if walk.stack.contains(&digest) {
                return Err(Error::invalid(format!("index {digest} refers to itself")).into());
            }
            let (size, first) = self.look_at(desc, &digest, parent, walk).await?;
            let document = is_index(&media_type) || is_manifest(&media_type);
            if !document || !walk.descended.insert((digest.clone(), media_type.clone())) {
                return Ok(());
            }
            if first {
                walk.graph.documents.push(Visited {
                    digest: digest.clone(),
                    media_type: media_type.clone(),
                    depth,
                });
            }
            too_deep(&digest, &media_type, depth)?;
            let bytes = self.source.json(&digest).await?;
            if bytes.len() as u64 != size {
                return Err(Error::invalid(format!(
                    "{digest} in {parent}: descriptor says {size} bytes, but {} were read {}",
                    bytes.len(),
                    S::WHERE
                ))
                .into());
            }
            let doc = Document::parse(&digest, &media_type, &bytes)?;
            self.descend(&doc, depth, walk).await?;
            if depth == 0 {
                walk.graph.top = Some(doc);
            }
            Ok(())
        })
    }

    /// Visits what a document points at: an index's manifests (the index open on the stack
    /// meanwhile), or a manifest's config and layers.
    async fn descend(
        &mut self,
        doc: &Document,
        depth: usize,
        walk: &mut Walk,
    ) -> Result<(), S::Error> {
        let digest = doc.digest();
        let name = match doc.is_index() {
            true => format!("index {digest}"),
            false => format!("manifest {digest}"),
        };
        if doc.is_index() {
            walk.stack.push(digest.clone());
        }
        for child in doc.descriptors() {
            self.visit(child, &name, depth + 1, walk).await?;
        }
        if doc.is_index() {
            walk.stack.pop();
        }
        // An artifact's config is whatever its type says (often `{}`): only an image's counts.
        if let (Some(config_type), Some(layers)) = (doc.config_type(), doc.layer_count())
            && is_image_config(&config_type)
        {
            let config = doc.descriptors()[0];
            walk.graph.configs.push(ImageConfig {
                manifest: digest.clone(),
                config: Digest::try_from(config.digest())?,
                layers,
            });
        }
        Ok(())
    }

    /// The size of a descriptor's blob, asked of the source the first time the walk meets it
    /// (and then recorded among the graph's blobs), later checked against that answer; and
    /// whether this was the first time.
    async fn look_at(
        &mut self,
        desc: &Descriptor,
        digest: &Digest,
        parent: &str,
        walk: &mut Walk,
    ) -> Result<(u64, bool), S::Error> {
        if let Some(&size) = walk.sizes.get(digest) {
            return match size == desc.size() {
                true => Ok((size, false)),
                false => Err(mismatch(desc, digest, parent, size, S::WHERE).into()),
            };
        }
        let size = self.present(desc, digest, parent).await?;
        walk.sizes.insert(digest.clone(), size);
        walk.graph.blobs.push(BlobRef {
            digest: digest.clone(),
            size,
        });
        Ok((size, true))
    }

    /// The size of the source's copy of a descriptor's blob, which must be there as promised.
    async fn present(
        &mut self,
        desc: &Descriptor,
        digest: &Digest,
        parent: &str,
    ) -> Result<u64, S::Error> {
        let media_type = desc.media_type();
        let held = S::WHERE;
        let promised = BlobRef {
            digest: digest.clone(),
            size: desc.size(),
        };
        let Some(size) = self.source.size(&promised).await? else {
            if desc.urls().as_ref().is_some_and(|u| !u.is_empty()) {
                return Err(Error::invalid(format!(
                    "{media_type} {digest} in {parent} is a foreign layer that is not {held}; \
                     hyperd never fetches from URLs"
                ))
                .into());
            }
            return Err(Error::invalid(format!(
                "{media_type} {digest} named in {parent} is not {held}"
            ))
            .into());
        };
        if size != desc.size() {
            return Err(mismatch(desc, digest, parent, size, held).into());
        }
        Ok(size)
    }
}

fn mismatch(desc: &Descriptor, digest: &Digest, parent: &str, size: u64, held: &str) -> Error {
    Error::invalid(format!(
        "{digest} in {parent}: descriptor says {} bytes, but {size} are {held}",
        desc.size()
    ))
}

/// Refuses a document nested too deep, before it is read: an index at [`MAX_INDEX_DEPTH`], a
/// manifest below that (what the deepest index allowed lists). Every level costs the walk a
/// frame, so a chain of manifests each listing the next as a layer must end here too.
fn too_deep(digest: &Digest, media_type: &str, depth: usize) -> Result<(), Error> {
    let index = is_index(media_type);
    if depth < MAX_INDEX_DEPTH || (depth == MAX_INDEX_DEPTH && !index) {
        return Ok(());
    }
    let what = if index { "index" } else { "manifest" };
    Err(Error::invalid(format!(
        "{what} {digest} is nested more than {MAX_INDEX_DEPTH} deep"
    )))
}

#[cfg(test)]
mod tests;
