//! Stores of many images, made fast: OCI layouts of tiny images that share one 5-byte layer and
//! differ only in their config, for the listing tests and the scale benchmark.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::json;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio_tar::{Builder, Header};

use crate::fixtures::{LAYOUT, hex_of, index_json, sha};

/// The layer every tiny image has. The store never reads a layer's contents, only its digest.
pub const TINY_LAYER: &[u8] = b"tiny\n";

const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// When tiny image `k` was created: `k` seconds after 2024-01-01T00:00:00Z, so a larger `k` is
/// newer and lists first. Up to the end of January: `k` under 2,678,400.
pub fn tiny_created(k: usize) -> String {
    assert!(
        k < 31 * 86_400,
        "tiny image {k} would be created after January"
    );
    let (day, rest) = (k / 86_400, k % 86_400);
    let (h, m, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    format!("2024-01-{:02}T{h:02}:{m:02}:{s:02}Z", day + 1)
}

/// Tiny image `k`: its config (whose digest is its ID) and its manifest.
pub fn tiny_image(k: usize) -> (Vec<u8>, Vec<u8>) {
    let config = serde_json::to_vec(&json!({
        "created": tiny_created(k),
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"k": k.to_string()}},
        "rootfs": {"type": "layers", "diff_ids": [sha(TINY_LAYER)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": LAYER_TYPE, "digest": sha(TINY_LAYER), "size": TINY_LAYER.len()}],
    }))
    .unwrap();
    (config, manifest)
}

/// Writes `dir/tiny-A-B.tar` (for `images` = A..B), an OCI layout holding tiny image `k` for each
/// `k` in `images`, named `name(k)` by its `org.opencontainers.image.ref.name` (give a full
/// reference, `scale/img1:v1`, for the load to take it as the name): a config with label `k`
/// created at [`tiny_created`]`(k)`, and its manifest over [`TINY_LAYER`]. Image `k` is the same
/// bytes in every archive, so archives of ranges that do not overlap hold distinct images.
///
/// index.json costs about 220 bytes an image and a load reads at most 4 MiB of it
/// (`store::limits::MAX_JSON`): one archive holds at most about 19,000 images.
pub async fn tiny_images_layout(
    dir: &Path,
    images: Range<usize>,
    name: impl Fn(usize) -> String,
) -> PathBuf {
    let path = dir.join(format!("tiny-{}-{}.tar", images.start, images.end));
    let file = tokio::fs::File::create(&path).await.unwrap();
    let mut tar = Builder::new(BufWriter::with_capacity(1 << 20, file));
    let mut blobs = Vec::with_capacity(images.len() * 2);
    let mut descriptors = Vec::with_capacity(images.len());
    for k in images {
        let (config, manifest) = tiny_image(k);
        descriptors.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&manifest),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": name(k)},
        }));
        blobs.extend([config, manifest]);
    }
    append(&mut tar, "oci-layout", LAYOUT).await;
    append(&mut tar, "index.json", &index_json(descriptors)).await;
    for blob in std::iter::once(TINY_LAYER).chain(blobs.iter().map(Vec::as_slice)) {
        append(
            &mut tar,
            &format!("blobs/sha256/{}", hex_of(&sha(blob))),
            blob,
        )
        .await;
    }
    let mut out = tar.into_inner().await.unwrap();
    out.shutdown().await.unwrap();
    path
}

async fn append<W: tokio::io::AsyncWrite + Unpin + Send>(
    tar: &mut Builder<W>,
    path: &str,
    data: &[u8],
) {
    let mut header = Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, path, data).await.unwrap();
}
