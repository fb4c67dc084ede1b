//! docker-archive (`docker save`): `manifest.json` names a config and layer tars by path. Each
//! layer is checked against the config's `rootfs.diff_ids`, and the image gets an OCI manifest
//! built only from the archive's bytes, so the same archive always yields the same digests.

use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder, MediaType};
use tokio::io::BufReader;

use super::Candidate;
use super::archive::Ingested;
use super::oci::ConfigSummary;
use crate::blob::{self, CHUNK, Compression};
use crate::digest::Digest;
use crate::limits::MAX_LINK_HOPS;
use crate::meta::ImageRecord;
use crate::{Error, Result};

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
    let mut path = super::archive::normalize(path.as_bytes())?;
    for _ in 0..=MAX_LINK_HOPS {
        if let Some(d) = ingested.files.get(&path) {
            return Ok(d.clone());
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
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(Error::invalid(format!(
                "config {config_digest} lists {} diff_ids but manifest.json lists {} layers",
                config.rootfs.diff_ids.len(),
                entry.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let digest = lookup(ingested, path)?;
            let info = ingested.present[&digest].clone();
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
        let config_size = ingested.present[&config_digest].size;
        let manifest = synthesized_manifest(&config_digest, config_size, &layers);
        let manifest_digest = ingested
            .staging
            .write(
                &mut manifest.as_slice(),
                manifest.len() as u64,
                None,
                "generated manifest",
            )
            .await?;
        let mut blobs = vec![manifest_digest.clone(), config_digest.clone()];
        let mut total = manifest.len() as u64 + config_size;
        for (d, info) in &layers {
            if !blobs.contains(d) {
                blobs.push(d.clone());
                total += info.size;
            }
        }
        let record = ImageRecord {
            digest: manifest_digest,
            media_type: MediaType::ImageManifest.to_string(),
            size: manifest.len() as u64,
            id: config_digest,
            created: config.created.clone(),
            total_size: total,
            platforms: vec![config.platform()],
            blobs,
        };
        out.push(Candidate {
            record,
            ref_names: Vec::new(),
            containerd_name: None,
            repo_tags: entry.repo_tags.unwrap_or_default(),
        });
    }
    Ok(out)
}

fn synthesized_manifest(
    config: &Digest,
    config_size: u64,
    layers: &[(Digest, blob::BlobInfo)],
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
    let mut reader = crate::decompress::decoder(BufReader::with_capacity(CHUNK, file), compression);
    let (d, _, _) = blob::drain(&mut reader, u64::MAX, &format!("layer {digest}")).await?;
    Ok(d)
}
