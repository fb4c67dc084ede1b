//! OCI image layout: `oci-layout`, `index.json` with one descriptor per image, then one per
//! referrer (with its `artifactType` and no name, as oras and docker lay them out), then each
//! blob once.

use std::collections::{BTreeMap, HashSet};

use super::{Item, Out, TarWriter, blob_path};
use crate::blob::Blobs;
use crate::error::{Error, Result};
use crate::image::{CONTAINERD_NAME, Platform, REF_NAME, REF_NAME_OLD, is_manifest};
use crate::referrer::ReferrerRecord;
use oci_spec::image::{DescriptorBuilder, ImageIndexBuilder, MediaType};

pub(crate) async fn write<W: Out>(
    blobs: &Blobs,
    items: &[Item],
    referrers: &[ReferrerRecord],
    writer: W,
) -> Result<W> {
    let mut tar = TarWriter::new(writer);
    tar.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .await?;
    tar.bytes("index.json", &index_json(items, referrers))
        .await?;
    tar.dir("blobs/").await?;
    tar.dir("blobs/sha256/").await?;
    let mut written = HashSet::new();
    let image_blobs = items.iter().flat_map(|i| &i.record.blobs);
    for digest in image_blobs.chain(referrers.iter().flat_map(|r| &r.blobs)) {
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
    tar.finish().await
}

fn index_json(items: &[Item], referrers: &[ReferrerRecord]) -> Vec<u8> {
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
    let mut value = serde_json::to_value(&index).expect("index serialises");
    let listed = value["manifests"]
        .as_array_mut()
        .expect("an index lists manifests");
    listed.extend(referrers.iter().map(unnamed_descriptor));
    serde_json::to_vec(&value).expect("index serialises")
}

/// A referrer's descriptor without the name keys its own annotations might carry: a name there
/// would make other tools take it for an image.
fn unnamed_descriptor(r: &ReferrerRecord) -> serde_json::Value {
    let mut d = r.descriptor();
    if let Some(a) = d.get_mut("annotations").and_then(|a| a.as_object_mut()) {
        for key in [REF_NAME, REF_NAME_OLD, CONTAINERD_NAME] {
            a.remove(key);
        }
        if a.is_empty() {
            d.as_object_mut()
                .expect("a descriptor is an object")
                .remove("annotations");
        }
    }
    d
}

/// The descriptor's platform, from the form the record keeps.
fn oci_platform(p: &str) -> Option<oci_spec::image::Platform> {
    p.parse::<Platform>().ok()?.to_oci()
}
