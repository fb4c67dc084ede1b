//! The benchmark's archives, written from layer files without holding them in memory.

use std::path::{Path, PathBuf};

use integration::fixtures::*;
use tokio::io::AsyncWriteExt;

/// Writes an OCI archive of `layers` (each an uncompressed layer tar in a file) without holding
/// them in memory; returns the image's ref name.
pub(crate) async fn write_archive(path: &Path, layers: &[(PathBuf, String, u64)], name: &str) {
    let diff_ids: Vec<&String> = layers.iter().map(|(_, d, _)| d).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": layers.iter().map(|(_, d, size)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size,
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    let index = index_json(vec![serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&manifest), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": name},
    })]);
    let file = tokio::fs::File::create(path).await.unwrap();
    let mut b =
        tokio_tar::Builder::new_non_terminated(tokio::io::BufWriter::with_capacity(1 << 20, file));
    let add = async |b: &mut tokio_tar::Builder<_>,
                     p: &str,
                     size: u64,
                     data: &mut (dyn tokio::io::AsyncRead + Unpin + Send)| {
        let mut h = tokio_tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        b.append_data(&mut h, p, data).await.unwrap();
    };
    add(&mut b, "oci-layout", LAYOUT.len() as u64, &mut &LAYOUT[..]).await;
    add(
        &mut b,
        "index.json",
        index.len() as u64,
        &mut index.as_slice(),
    )
    .await;
    for doc in [&manifest, &config] {
        add(
            &mut b,
            &format!("blobs/sha256/{}", hex_of(&sha(doc))),
            doc.len() as u64,
            &mut doc.as_slice(),
        )
        .await;
    }
    for (file, digest, size) in layers {
        let mut f = tokio::fs::File::open(file).await.unwrap();
        add(
            &mut b,
            &format!("blobs/sha256/{}", hex_of(digest)),
            *size,
            &mut f,
        )
        .await;
    }
    let mut w = b.into_inner().await.unwrap();
    w.flush().await.unwrap();
}

pub(crate) async fn make_layer(dir: &Path, tar_bytes: Vec<u8>, n: usize) -> (PathBuf, String, u64) {
    let path = dir.join(format!("layer-{n}.tar"));
    let digest = sha(&tar_bytes);
    tokio::fs::write(&path, &tar_bytes).await.unwrap();
    (path, digest, tar_bytes.len() as u64)
}
