//! The one walk over an OCI graph: from a manifest or index through nested indexes to
//! manifests, configs and layers, checking every descriptor against what its [`Source`] holds.
//! Loads (an archive's staged blobs), CreateImage (the store's blobs), registry pulls and pushes
//! (in hyperd) walk through it; what each makes of the [`Graph`] is theirs.
//!
//! Checks, in the order made: at most [`MAX_DESCRIPTORS`] descriptors per walker, each digest a
//! sha256 one, each media type an RFC 6838 one, each blob held with the size its descriptor
//! promises, no index inside itself, indexes nested less than [`MAX_INDEX_DEPTH`] deep, each
//! document what its descriptor declares (and at most [`crate::limits::MAX_JSON`] bytes, which
//! the source enforces).

use std::collections::HashSet;
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

/// Walks graphs through one source, counting descriptors across all its walks.
pub struct Walker<'s, S> {
    source: &'s mut S,
    descriptors: usize,
}

type Step<'a, E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send + 'a>>;

/// One walk's state.
struct Walk {
    graph: Graph,
    seen: HashSet<Digest>,
    /// The indexes being visited, outermost first: a cycle shows up here.
    stack: Vec<Digest>,
}

impl<'s, S: Source> Walker<'s, S> {
    /// A walker over `source`.
    pub fn new(source: &'s mut S) -> Self {
        Walker {
            source,
            descriptors: 0,
        }
    }

    /// The source walked, between walks.
    pub(crate) fn source(&mut self) -> &mut S {
        self.source
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
            seen: HashSet::new(),
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
                return Err(Error::invalid(format!(
                    "archive names more than {MAX_DESCRIPTORS} descriptors"
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
            let size = self.present(desc, &digest, parent).await?;
            if walk.stack.contains(&digest) {
                return Err(Error::invalid(format!("index {digest} refers to itself")).into());
            }
            let document = is_index(&media_type) || is_manifest(&media_type);
            if walk.seen.insert(digest.clone()) {
                let blob = BlobRef {
                    digest: digest.clone(),
                    size,
                };
                walk.graph.blobs.push(blob);
                if document {
                    walk.graph.documents.push(Visited {
                        digest: digest.clone(),
                        media_type: media_type.clone(),
                        depth,
                    });
                }
            }
            if !document {
                return Ok(());
            }
            if is_index(&media_type) && depth >= MAX_INDEX_DEPTH {
                return Err(Error::invalid(format!(
                    "index {digest} is nested more than {MAX_INDEX_DEPTH} deep"
                ))
                .into());
            }
            let bytes = self.source.json(&digest).await?;
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
            return Err(Error::invalid(format!(
                "{digest} in {parent}: descriptor says {} bytes, but {size} are {held}",
                desc.size()
            ))
            .into());
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

    /// Blobs in memory; `sizes` overrides what a blob's size is said to be.
    #[derive(Default)]
    struct Memory {
        blobs: HashMap<Digest, Bytes>,
        sizes: HashMap<Digest, u64>,
    }

    impl Memory {
        fn put(&mut self, bytes: &str) -> BlobRef {
            let digest = Digest::of(bytes.as_bytes());
            self.blobs
                .insert(digest.clone(), Bytes::from(bytes.to_owned()));
            BlobRef {
                digest,
                size: bytes.len() as u64,
            }
        }
    }

    impl Source for Memory {
        type Error = Error;
        const WHERE: &'static str = "in memory";

        async fn size(&mut self, blob: &BlobRef) -> Result<Option<u64>, Error> {
            let held = self.blobs.get(&blob.digest).map(|b| b.len() as u64);
            Ok(self.sizes.get(&blob.digest).copied().or(held))
        }

        async fn json(&mut self, digest: &Digest) -> Result<Bytes, Error> {
            Ok(self.blobs[digest].clone())
        }
    }

    fn desc(media_type: &str, b: &BlobRef) -> String {
        format!(
            r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
            b.digest, b.size
        )
    }

    /// An index of one image manifest: the source, the index and the manifest.
    fn image(source: &mut Memory) -> (BlobRef, BlobRef) {
        let config = source.put(r#"{"rootfs":{"diff_ids":["x"]}}"#);
        let layer = source.put("layer");
        let manifest = source.put(&format!(
            r#"{{"schemaVersion":2,"config":{},"layers":[{}]}}"#,
            desc(CONFIG, &config),
            desc("application/vnd.oci.image.layer.v1.tar", &layer)
        ));
        let index = source.put(&format!(
            r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
            desc(MANIFEST, &manifest)
        ));
        (index, manifest)
    }

    #[tokio::test]
    async fn a_walk_lists_documents_top_first_then_the_leaves() {
        let mut source = Memory::default();
        let (index, manifest) = image(&mut source);
        let mut walker = Walker::new(&mut source);
        let graph = walker.walk_document(&index, INDEX, "test").await.unwrap();
        let documents: Vec<&Digest> = graph.documents.iter().map(|d| &d.digest).collect();
        assert_eq!(documents, [&index.digest, &manifest.digest]);
        assert_eq!(graph.blobs.len(), 4);
        assert_eq!(graph.leaves().len(), 2);
        assert!(graph.nested_index().is_none());
        assert_eq!(graph.configs[0].manifest, manifest.digest);
        assert_eq!(graph.configs[0].layers, 1);
        assert!(graph.top.is_some_and(|t| t.is_index()));
        let refused = walker.walk_document(&index, "text/plain", "test").await;
        assert!(refused.unwrap_err().to_string().contains("neither"));
    }

    #[tokio::test]
    async fn a_blob_of_another_size_or_an_absent_one_is_refused() {
        let mut source = Memory::default();
        let (index, manifest) = image(&mut source);
        source.sizes.insert(manifest.digest.clone(), 1);
        let e = Walker::new(&mut source)
            .walk_document(&index, INDEX, "test")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("descriptor says"), "{e}");
        source.blobs.remove(&manifest.digest);
        source.sizes.clear();
        let e = Walker::new(&mut source)
            .walk_document(&index, INDEX, "test")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("is not in memory"), "{e}");
    }

    #[tokio::test]
    async fn an_index_inside_itself_is_refused() {
        // Content addressing makes a cycle impossible to build honestly; a source can lie.
        let mut source = Memory::default();
        let fake = Digest::of(b"fake");
        let listing = |size: usize| {
            format!(
                r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{INDEX}","digest":"{fake}","size":{size}}}]}}"#
            )
        };
        let size = listing(0).len() + 2;
        let own = listing(size);
        assert_eq!(own.len(), size);
        source.blobs.insert(fake.clone(), Bytes::from(own));
        let top = BlobRef {
            digest: fake,
            size: size as u64,
        };
        let e = Walker::new(&mut source)
            .walk_document(&top, INDEX, "test")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("refers to itself"), "{e}");
    }
}
