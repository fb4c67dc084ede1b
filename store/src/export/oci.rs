//! OCI image layout: `oci-layout`, `index.json` with one descriptor per image, then each blob once.

use std::collections::{BTreeMap, HashSet};

use super::{Item, Out, TarWriter, blob_path};
use crate::blob::Blobs;
use crate::error::{Error, Result};
use crate::image::{CONTAINERD_NAME, Platform, REF_NAME, is_manifest};
use oci_spec::image::{DescriptorBuilder, ImageIndexBuilder, MediaType};

pub(crate) async fn write<W: Out>(blobs: &Blobs, items: &[Item], writer: W) -> Result<W> {
    let mut tar = TarWriter::new(writer);
    tar.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .await?;
    tar.bytes("index.json", &index_json(items)).await?;
    tar.dir("blobs/").await?;
    tar.dir("blobs/sha256/").await?;
    let mut written = HashSet::new();
    for item in items {
        for digest in &item.record.blobs {
            if !written.insert(digest.clone()) {
                continue;
            }
            let file = blobs.open_blob(digest).await?;
            let size = file.metadata().await.map_err(|e| Error::Io {
                context: format!("reading {}", blobs.path(digest).display()),
                source: e,
            })?;
            tar.blob(&blob_path(digest), size.len(), file).await?;
        }
    }
    tar.finish().await
}

fn index_json(items: &[Item]) -> Vec<u8> {
    let manifests = items
        .iter()
        .map(|item| {
            let mut annotations = BTreeMap::new();
            if let Some(r) = &item.ref_name {
                annotations.insert(REF_NAME.to_owned(), r.clone());
            }
            if let Some(n) = &item.name {
                annotations.insert(CONTAINERD_NAME.to_owned(), n.full());
            }
            let mut d = DescriptorBuilder::default()
                .media_type(MediaType::from(item.record.media_type.as_str()))
                .digest(oci_spec::image::Digest::from(&item.record.digest))
                .size(item.record.size);
            if !annotations.is_empty() {
                d = d.annotations(
                    annotations
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                );
            }
            if is_manifest(&item.record.media_type)
                && let Some(p) = item.record.platforms.first().and_then(|p| oci_platform(p))
            {
                d = d.platform(p);
            }
            d.build().expect("descriptor has all required fields")
        })
        .collect::<Vec<_>>();
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .expect("index has all required fields");
    // serde_json writes a HashMap in its iteration order; go through Value, whose maps are sorted,
    // so that the same images always give the same bytes.
    let value = serde_json::to_value(&index).expect("index serialises");
    serde_json::to_vec(&value).expect("index serialises")
}

/// The descriptor's platform, from the form the record keeps.
fn oci_platform(p: &str) -> Option<oci_spec::image::Platform> {
    p.parse::<Platform>().ok()?.to_oci()
}
