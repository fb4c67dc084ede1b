//! Archives of tiny images, the scale benchmark's input: image K is `scale/imgK:v1`, a distinct
//! config and manifest of its own over one 5-byte layer that every image shares. Built from K
//! alone, so any image's digests can be known again without the archive.

use std::ops::Range;
use std::path::Path;

use integration::fixtures::{LAYOUT, hex_of, index_json, sha};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// The layer every tiny image shares (not a tar: hyperd stores layers as blobs, unread).
const LAYER: &[u8] = b"tiny\n";

/// One tiny image's documents.
pub(crate) struct Tiny {
    pub(crate) name: String,
    pub(crate) config: Vec<u8>,
    pub(crate) manifest: Vec<u8>,
}

impl Tiny {
    pub(crate) fn new(k: usize) -> Tiny {
        let layer = sha(LAYER);
        let config = serde_json::to_vec(&json!({
            "created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
            "config": {"Labels": {"scale.image": k.to_string()}},
            "rootfs": {"type": "layers", "diff_ids": [layer]},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": LAYER.len()}],
        }))
        .unwrap();
        Tiny {
            name: format!("scale/img{k}:v1"),
            config,
            manifest,
        }
    }

    pub(crate) fn manifest_digest(&self) -> String {
        sha(&self.manifest)
    }

    pub(crate) fn config_digest(&self) -> String {
        sha(&self.config)
    }
}

/// Writes an OCI-layout archive of images `ks` to `path`: oci-layout, index.json, the shared
/// layer, then each image's config and manifest.
pub(crate) async fn write_archive(path: &Path, ks: Range<usize>) {
    let images: Vec<Tiny> = ks.map(Tiny::new).collect();
    let index = index_json(
        images
            .iter()
            .map(|t| {
                json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": t.manifest_digest(), "size": t.manifest.len(),
                    "annotations": {"org.opencontainers.image.ref.name": t.name},
                })
            })
            .collect(),
    );
    let file = tokio::fs::File::create(path).await.unwrap();
    // Terminated (two zero blocks at the end), as containerd's importer reads the same file.
    let mut b = tokio_tar::Builder::new(tokio::io::BufWriter::with_capacity(1 << 20, file));
    let mut add = async |name: &str, data: &[u8]| {
        let mut h = tokio_tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).await.unwrap();
    };
    add("oci-layout", LAYOUT).await;
    add("index.json", &index).await;
    add(&blob_path(&sha(LAYER)), LAYER).await;
    for t in &images {
        add(&blob_path(&t.config_digest()), &t.config).await;
        add(&blob_path(&t.manifest_digest()), &t.manifest).await;
    }
    let mut w = b.into_inner().await.unwrap();
    w.flush().await.unwrap();
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", hex_of(digest))
}
