//! The walk over an in-memory source.

use std::collections::HashMap;

use super::*;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Blobs in memory; `sizes` overrides what a blob's size is said to be, `reads` counts the
/// documents read and `asked` the sizes asked.
#[derive(Default)]
struct Memory {
    blobs: HashMap<Digest, Bytes>,
    sizes: HashMap<Digest, u64>,
    reads: usize,
    asked: usize,
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
        self.asked += 1;
        let held = self.blobs.get(&blob.digest).map(|b| b.len() as u64);
        Ok(self.sizes.get(&blob.digest).copied().or(held))
    }

    async fn json(&mut self, digest: &Digest) -> Result<Bytes, Error> {
        self.reads += 1;
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

/// A chain of `length` manifests, each listing the next as a layer: the first of them.
fn manifest_chain(source: &mut Memory, length: usize) -> BlobRef {
    let config = source.put(r#"{"rootfs":{"diff_ids":["x"]}}"#);
    let mut next = source.put("layer");
    let mut next_type = "application/vnd.oci.image.layer.v1.tar";
    for _ in 0..length {
        next = source.put(&format!(
            r#"{{"schemaVersion":2,"config":{},"layers":[{}]}}"#,
            desc(CONFIG, &config),
            desc(next_type, &next)
        ));
        next_type = MANIFEST;
    }
    next
}

#[tokio::test]
async fn a_manifest_nested_deeper_than_an_index_may_be_is_refused_unread() {
    // The deepest index allowed (depth MAX_INDEX_DEPTH - 1) may list manifests: they are read.
    let mut source = Memory::default();
    let top = manifest_chain(&mut source, MAX_INDEX_DEPTH + 1);
    let graph = Walker::new(&mut source)
        .walk_document(&top, MANIFEST, "test")
        .await
        .unwrap();
    assert_eq!(graph.documents.last().unwrap().depth, MAX_INDEX_DEPTH);
    // One deeper is refused before it is read, however long the chain goes on.
    let mut source = Memory::default();
    let top = manifest_chain(&mut source, 1_000);
    let e = Walker::new(&mut source)
        .walk_document(&top, MANIFEST, "test")
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(message.contains("manifest sha256:"), "{message}");
    assert!(
        message.contains(&format!("is nested more than {MAX_INDEX_DEPTH} deep")),
        "{message}"
    );
    assert_eq!(source.reads, MAX_INDEX_DEPTH + 1);
}

#[tokio::test]
async fn a_document_of_another_size_than_its_descriptor_says_is_refused() {
    // The source answers what the descriptor promises, as a registry's does.
    let mut source = Memory::default();
    let (_, manifest) = image(&mut source);
    let bytes = source.blobs[&manifest.digest].clone();
    source
        .sizes
        .insert(manifest.digest.clone(), bytes.len() as u64 + 1);
    let listing = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{MANIFEST}","digest":"{}","size":{}}}]}}"#,
        manifest.digest,
        bytes.len() + 1
    );
    let top = source.put(&listing);
    let e = Walker::new(&mut source)
        .walk_document(&top, INDEX, "test")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("were read in memory"), "{e}");
}

/// An index listing `manifest` `times` times, then whatever `extra` lists.
fn repeating(source: &mut Memory, manifest: &BlobRef, times: usize, extra: &str) -> BlobRef {
    let entries = vec![desc(MANIFEST, manifest); times];
    source.put(&format!(
        r#"{{"schemaVersion":2,"manifests":[{}{extra}]}}"#,
        entries.join(",")
    ))
}

#[tokio::test]
async fn a_document_listed_many_times_is_read_and_looked_at_once() {
    let mut source = Memory::default();
    let (_, manifest) = image(&mut source);
    let top = repeating(&mut source, &manifest, 10_000, "");
    let graph = Walker::new(&mut source)
        .walk_document(&top, INDEX, "test")
        .await
        .unwrap();
    assert_eq!(graph.blobs.len(), 4);
    assert_eq!(graph.documents.len(), 2);
    assert_eq!(graph.configs.len(), 1);
    // The index and the manifest read; the index, manifest, config and layer each asked once.
    assert_eq!((source.reads, source.asked), (2, 4));
}

#[tokio::test]
async fn a_repeat_promising_another_size_is_refused_unasked() {
    let mut source = Memory::default();
    let (_, manifest) = image(&mut source);
    let liar = BlobRef {
        size: manifest.size + 1,
        ..manifest.clone()
    };
    let top = repeating(
        &mut source,
        &manifest,
        2,
        &format!(",{}", desc(MANIFEST, &liar)),
    );
    let e = Walker::new(&mut source)
        .walk_document(&top, INDEX, "test")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("descriptor says"), "{e}");
    assert_eq!(source.reads, 2);
}
