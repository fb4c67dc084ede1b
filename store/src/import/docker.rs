//! docker-archive (`docker save`): `manifest.json` names a config and layer tars by path. Each
//! layer is checked against the config's `rootfs.diff_ids`, and the image gets an OCI manifest
//! built only from the archive's bytes, so the same archive always yields the same digests.

use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder, MediaType};
use tokio::io::BufReader;

use super::Candidate;
use super::archive::Ingested;
use super::entry::normalize;
use crate::blob::{self, BlobInfo, CHUNK};
use crate::decompress::{self, Compression};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{ConfigSummary, ImageRecord};
use crate::limits::MAX_LINK_HOPS;

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The RepoTags of each image in `manifest.json`, by config digest: names for an OCI index that
/// came with a docker manifest (docker save since v25).
pub(crate) fn repo_tags(
    ingested: &Ingested,
    manifest_json: &[u8],
) -> Result<Vec<(Digest, Vec<String>)>> {
    let entries = parse(manifest_json)?;
    entries
        .into_iter()
        .map(|e| {
            Ok((
                lookup(ingested, &e.config)?,
                e.repo_tags.unwrap_or_default(),
            ))
        })
        .collect()
}

fn parse(manifest_json: &[u8]) -> Result<Vec<Entry>> {
    serde_json::from_slice(manifest_json).map_err(|e| {
        Error::invalid(format!(
            "manifest.json is not a docker-archive manifest: {e}"
        ))
    })
}

/// Finds the blob behind an archive path, following links inside the archive.
fn lookup(ingested: &Ingested, path: &str) -> Result<Digest> {
    let mut path = normalize(path.as_bytes())?;
    for _ in 0..=MAX_LINK_HOPS {
        if let Some(d) = ingested.file(&path) {
            return Ok(d);
        }
        match ingested.links.get(&path) {
            Some(target) => path = target.clone(),
            None => {
                return Err(Error::invalid(format!(
                    "manifest.json names {path:?}, which is not in the archive"
                )));
            }
        }
    }
    Err(Error::invalid(format!(
        "{path:?}: more than {MAX_LINK_HOPS} links deep"
    )))
}

pub(crate) async fn resolve(
    ingested: &mut Ingested,
    manifest_json: &[u8],
) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for entry in parse(manifest_json)? {
        let config_digest = lookup(ingested, &entry.config)?;
        let config = ConfigSummary::parse(&config_digest, &ingested.read_json(&config_digest)?)?;
        let layers = checked_layers(ingested, &entry, &config, &config_digest).await?;
        let record = stage_manifest(ingested, config_digest, &config, &layers).await?;
        out.push(Candidate {
            record,
            ref_names: Vec::new(),
            containerd_name: None,
            repo_tags: entry.repo_tags.unwrap_or_default(),
        });
    }
    Ok(out)
}

/// The entry's layers, each checked against the config's diff_id for it.
async fn checked_layers(
    ingested: &Ingested,
    entry: &Entry,
    config: &ConfigSummary,
    config_digest: &Digest,
) -> Result<Vec<(Digest, BlobInfo)>> {
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != entry.layers.len() {
        return Err(Error::invalid(format!(
            "config {config_digest} lists {} diff_ids but manifest.json lists {} layers",
            diff_ids.len(),
            entry.layers.len()
        )));
    }
    let mut layers = Vec::new();
    for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
        let digest = lookup(ingested, path)?;
        let info = ingested.info(&digest)?.clone();
        let actual = match info.compression {
            Compression::None => digest.clone(),
            c => uncompressed_digest(ingested, &digest, c).await?,
        };
        if actual.to_string() != *diff_id {
            return Err(Error::DigestMismatch {
                what: format!("layer {path:?} against the config's diff_id"),
                expected: diff_id.clone(),
                actual: actual.to_string(),
            });
        }
        layers.push((digest, info));
    }
    Ok(layers)
}

/// Stages the OCI manifest the image gets and returns its record.
async fn stage_manifest(
    ingested: &mut Ingested,
    config_digest: Digest,
    config: &ConfigSummary,
    layers: &[(Digest, BlobInfo)],
) -> Result<ImageRecord> {
    let config_size = ingested.info(&config_digest)?.size;
    let manifest = synthesized_manifest(&config_digest, config_size, layers);
    let staged = ingested
        .staging
        .write_unnamed(
            &mut manifest.as_slice(),
            manifest.len() as u64,
            "generated manifest",
        )
        .await?;
    let mut blobs = vec![staged.digest.clone(), config_digest.clone()];
    let mut total = staged.info.size + config_size;
    for (d, info) in layers {
        if !blobs.contains(d) {
            blobs.push(d.clone());
            total += info.size;
        }
    }
    Ok(ImageRecord {
        manifests: vec![staged.digest.clone()],
        artifact: false,
        digest: staged.digest,
        media_type: MediaType::ImageManifest.to_string(),
        size: staged.info.size,
        id: config_digest,
        created: config.created.clone(),
        total_size: total,
        platforms: vec![config.platform().to_string()],
        blobs,
    })
}

fn synthesized_manifest(
    config: &Digest,
    config_size: u64,
    layers: &[(Digest, BlobInfo)],
) -> Vec<u8> {
    let descriptor = |media_type: MediaType, digest: &Digest, size: u64| {
        DescriptorBuilder::default()
            .media_type(media_type)
            .digest(oci_spec::image::Digest::from(digest))
            .size(size)
            .build()
            .expect("descriptor has all required fields")
    };
    let layers = layers
        .iter()
        .map(|(d, info)| {
            let media_type = match info.compression {
                Compression::None => MediaType::ImageLayer,
                Compression::Gzip => MediaType::ImageLayerGzip,
                Compression::Zstd => MediaType::ImageLayerZstd,
            };
            descriptor(media_type, d, info.size)
        })
        .collect::<Vec<_>>();
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(MediaType::ImageConfig, config, config_size))
        .layers(layers)
        .build()
        .expect("manifest has all required fields");
    serde_json::to_vec(&manifest).expect("manifest serialises")
}

/// Digest of a compressed layer's uncompressed bytes: its diff_id.
async fn uncompressed_digest(
    ingested: &Ingested,
    digest: &Digest,
    compression: Compression,
) -> Result<Digest> {
    let path = ingested.blob_path(digest);
    let file = tokio::fs::File::open(&path).await.map_err(|e| Error::Io {
        context: format!("opening {}", path.display()),
        source: e,
    })?;
    let mut reader = decompress::decoder(BufReader::with_capacity(CHUNK, file), compression);
    let hashed = blob::drain(&mut reader, u64::MAX, &format!("layer {digest}")).await?;
    Ok(hashed.digest)
}
