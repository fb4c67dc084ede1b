//! docker-archive: config and uncompressed layer tars under `blobs/sha256/` (docker 25's paths),
//! then `manifest.json`. Compressed layers are decompressed on the fly, counted in a first pass
//! because a tar header needs the size before the bytes.

use std::collections::HashSet;

use oci_spec::image::{ImageIndex, ImageManifest};
use tokio::io::BufReader;

use super::{Item, Out, TarWriter, blob_path};
use crate::blob::{self, Blobs, CHUNK};
use crate::decompress::{Compression, decoder};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{ConfigSummary, Platform, is_image_config, is_index};
use crate::limits::MAX_INDEX_DEPTH;
use crate::reference::ImageName;

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

pub(crate) async fn write<W: Out>(
    blobs: &Blobs,
    items: &[Item],
    platform: &Platform,
    writer: W,
) -> Result<W> {
    let mut tar = TarWriter::new(writer);
    let mut written = HashSet::new();
    let mut entries = Vec::new();
    for item in items {
        let manifest_digest = pick_manifest(
            blobs,
            &item.record.digest,
            &item.record.media_type,
            platform,
            0,
        )
        .await?;
        let manifest: ImageManifest = parse(blobs, &manifest_digest).await?;
        let config_digest = Digest::try_from(manifest.config().digest())?;
        let config_type = manifest.config().media_type().to_string();
        if !is_image_config(&config_type) {
            return Err(Error::Conflict(format!(
                "{manifest_digest} is not an image (its config is {config_type}); docker-archive holds images only"
            )));
        }
        let config: ConfigSummary = parse(blobs, &config_digest).await?;
        if written.insert(config_digest.clone()) {
            let file = blobs.open_blob(&config_digest).await?;
            tar.blob(&blob_path(&config_digest), manifest.config().size(), file)
                .await?;
        }
        let mut layers = Vec::new();
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::Corrupt(format!(
                "manifest {manifest_digest} has {} layers but its config {config_digest} lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let diff_id: Digest = diff_id.parse()?;
            let path = blob_path(&diff_id);
            if written.insert(diff_id.clone()) {
                write_layer(blobs, &mut tar, &Digest::try_from(layer.digest())?, &path).await?;
            }
            layers.push(path);
        }
        // Fully qualified, as podman writes them: podman reads `busybox:1.35` as
        // `localhost/busybox:1.35`, and docker normalises either form.
        let repo_tags = match (&item.ref_name, &item.name) {
            (Some(r), _) => vec![r.parse::<ImageName>()?.full()],
            (None, Some(n)) => vec![n.full()],
            (None, None) => vec![],
        };
        entries.push(Entry {
            config: blob_path(&config_digest),
            repo_tags,
            layers,
        });
    }
    tar.bytes(
        "manifest.json",
        &serde_json::to_vec(&entries).expect("manifest serialises"),
    )
    .await?;
    tar.finish().await
}

async fn parse<T: serde::de::DeserializeOwned>(blobs: &Blobs, digest: &Digest) -> Result<T> {
    let json = blobs.read_json(digest).await?;
    serde_json::from_slice(&json)
        .map_err(|e| Error::Corrupt(format!("stored blob {digest} does not parse: {e}")))
}

/// The manifest for `platform`: the image itself, or the matching entry of its index.
async fn pick_manifest(
    blobs: &Blobs,
    digest: &Digest,
    media_type: &str,
    platform: &Platform,
    depth: usize,
) -> Result<Digest> {
    if !is_index(media_type) {
        return Ok(digest.clone());
    }
    if depth >= MAX_INDEX_DEPTH {
        return Err(Error::Corrupt(format!(
            "stored index {digest} is nested more than {MAX_INDEX_DEPTH} deep"
        )));
    }
    let index: ImageIndex = parse(blobs, digest).await?;
    let mut offered = Vec::new();
    for m in index.manifests() {
        let child = Digest::try_from(m.digest())?;
        let media_type = m.media_type().to_string();
        if is_index(&media_type) {
            if let Ok(d) = Box::pin(pick_manifest(
                blobs,
                &child,
                &media_type,
                platform,
                depth + 1,
            ))
            .await
            {
                return Ok(d);
            }
            continue;
        }
        if let Some(offer) = m.platform().as_ref().and_then(Platform::of_descriptor) {
            // A buildx attestation (unknown/unknown) describes an image and is none.
            if offer.is_unknown() {
                continue;
            }
            if offer.satisfies(platform) {
                return Ok(child);
            }
            offered.push(offer.to_string());
        }
    }
    Err(Error::NotFound(format!(
        "image {digest} has no manifest for platform {platform} (it has: {})",
        offered.join(", ")
    )))
}

async fn write_layer<W: Out>(
    blobs: &Blobs,
    tar: &mut TarWriter<W>,
    digest: &Digest,
    path: &str,
) -> Result<()> {
    // Trust the bytes, not the media type: some tools label plain tar as gzip.
    let mut head = [0u8; 4];
    let mut file = blobs.open_blob(digest).await?;
    let n = blob::fill(&mut file, &mut head)
        .await
        .map_err(|e| io_err(blobs, digest, e))?;
    let compression = Compression::sniff(&head[..n]);
    let file = blobs.open_blob(digest).await?;
    if compression == Compression::None {
        let size = file
            .metadata()
            .await
            .map_err(|e| io_err(blobs, digest, e))?
            .len();
        return tar.blob(path, size, file).await;
    }
    let mut counter = decoder(BufReader::with_capacity(CHUNK, file), compression);
    let size = tokio::io::copy(&mut counter, &mut tokio::io::sink())
        .await
        .map_err(|e| io_err(blobs, digest, e))?;
    let file = blobs.open_blob(digest).await?;
    let reader = decoder(BufReader::with_capacity(CHUNK, file), compression);
    tar.file(path, size, reader).await
}

fn io_err(blobs: &Blobs, digest: &Digest, e: std::io::Error) -> Error {
    Error::Io {
        context: format!("reading {}", blobs.path(digest).display()),
        source: e,
    }
}
