//! An archive means one thing or is refused: header metadata past its bound, names outside the
//! grammar, a name given to two images, a layout without its `oci-layout` file, a media type
//! that is not one, counts that disagree. Each refusal names its cause and leaves the store as
//! it was (`refused` checks that).

use crate::common::*;
use serde_json::json;
use store::limits::MAX_TAR_METADATA;
use tokio_tar::{EntryType, Header};

/// A header of `entry_type` carrying `body`, padded to whole blocks.
fn extension(entry_type: EntryType, path: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Header::new_ustar();
    h.set_entry_type(entry_type);
    h.set_size(body.len() as u64);
    h.set_path(path).unwrap();
    h.set_cksum();
    let mut block = h.as_bytes().to_vec();
    block.extend_from_slice(body);
    block.resize(block.len().div_ceil(512) * 512, 0);
    block
}

/// One PAX record, `LEN key=value\n`, whose length counts its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = format!(" {key}={value}\n");
    let mut len = rest.len() + 1;
    while format!("{len}").len() + rest.len() > len {
        len += 1;
    }
    format!("{len}{rest}").into_bytes()
}

/// A valid image archive with `block` spliced in before its last entry.
async fn with_before_last(block: Vec<u8>) -> Vec<u8> {
    let img = plain().await;
    let mut bytes = tar(&with_index(&img, vec![img.descriptor(&[])])).await;
    let (_, last) = tar_offsets(&bytes).into_iter().last().unwrap();
    bytes.splice(last..last, block);
    bytes
}

/// Loads a valid image with `block` spliced in, and checks the image is there.
async fn loads_whole(block: Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store
        .images()
        .load(reader(with_before_last(block).await), &[])
        .await
        .unwrap();
    assert_eq!(rows(&store).len(), 1);
}

const OVER: usize = MAX_TAR_METADATA as usize + 4096;

#[tokio::test]
async fn a_pax_header_over_the_limit_is_refused() {
    let block = extension(
        EntryType::XHeader,
        "pax",
        &pax_record("comment", &"v".repeat(OVER)),
    );
    refused(with_before_last(block).await, "byte limit").await;
}

/// The tar reader hands global headers over as entries of their own instead of buffering them,
/// so a large one is skipped like any body the importer has no use for.
#[tokio::test]
async fn a_large_global_pax_header_is_skipped_not_buffered() {
    let record = pax_record("comment", &"v".repeat(OVER));
    let block = extension(EntryType::XGlobalHeader, "global", &record);
    loads_whole(block).await;
}

#[tokio::test]
async fn entry_names_and_link_targets_over_path_max_are_refused() {
    let long = format!("junk/{}", "n".repeat(5000));
    let mut named = extension(EntryType::XHeader, "pax", &pax_record("path", &long));
    named.extend(extension(EntryType::Regular, "short", b"x"));
    refused(with_before_last(named).await, "over the 4096-byte limit").await;
    let mut linked = extension(EntryType::XHeader, "pax", &pax_record("linkpath", &long));
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Symlink);
    h.set_path("junk/link").unwrap();
    h.set_link_name("short").unwrap();
    h.set_size(0);
    h.set_cksum();
    linked.extend_from_slice(h.as_bytes());
    refused(with_before_last(linked).await, "over the 4096-byte limit").await;
}

/// A hard link may carry data (POSIX allows it): the body is skipped as data, not counted as
/// the next entry's metadata.
#[tokio::test]
async fn a_link_that_carries_data_loads() {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Link);
    h.set_path("extra/hardlink").unwrap();
    h.set_link_name("oci-layout").unwrap();
    let body = vec![7u8; 3 << 20];
    h.set_size(body.len() as u64);
    h.set_cksum();
    let mut block = h.as_bytes().to_vec();
    block.extend_from_slice(&body);
    loads_whole(block).await;
}

/// Only a `blobs/sha256/<hex>` entry is a layout's blob: other readers of layouts would not find
/// a config kept elsewhere, so hyperd does not either.
#[tokio::test]
async fn a_blob_held_only_outside_blobs_is_missing() {
    let img = plain().await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    let config = format!("blobs/sha256/{}", hex_of(&img.id()));
    let at = e.iter().position(|x| x.path == config).unwrap();
    e[at].path = "elsewhere/config.json".to_owned();
    refused(tar(&e).await, "is not in the archive").await;
}

#[tokio::test]
async fn gnu_long_names_and_link_names_over_the_limit_are_refused() {
    let name = vec![b'a'; OVER];
    let block = extension(EntryType::GNULongName, "././@LongLink", &name);
    refused(with_before_last(block).await, "byte limit").await;
    let block = extension(EntryType::GNULongLink, "././@LongLink", &name);
    refused(with_before_last(block).await, "byte limit").await;
}

#[tokio::test]
async fn metadata_within_the_limit_still_loads() {
    let block = extension(
        EntryType::XHeader,
        "pax",
        &pax_record("comment", &"v".repeat(512 << 10)),
    );
    loads_whole(block).await;
}

#[tokio::test]
async fn one_ref_name_for_two_images_is_refused() {
    let a = Image::new(&["a"], "amd64", Comp::None).await;
    let b = Image::new(&["b"], "amd64", Comp::None).await;
    let named = [("org.opencontainers.image.ref.name", "app:1")];
    let archive = oci_archive(&[(&a, &named), (&b, &named)]).await;
    refused(archive, "gives ref name \"app:1\" to two different images").await;
}

#[tokio::test]
async fn ref_names_outside_the_grammar_are_refused_by_name() {
    let long = "a".repeat(300);
    for bad in ["has space:1", long.as_str(), "../../x:v1"] {
        let img = plain().await;
        let archive = oci_archive(&[(&img, &[("org.opencontainers.image.ref.name", bad)])]).await;
        refused(archive, &format!("{bad:?}, which is not a valid ref name")).await;
    }
}

#[tokio::test]
async fn an_oci_layout_without_its_oci_layout_file_is_refused() {
    let img = plain().await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    e.retain(|e| e.path != "oci-layout");
    refused(tar(&e).await, "no oci-layout file").await;
}

#[tokio::test]
async fn a_media_type_that_is_not_one_is_refused() {
    let img = plain().await;
    let mut desc = img.descriptor(&[]);
    desc["mediaType"] = json!("application/vnd oci manifest");
    refused(
        tar(&with_index(&img, vec![desc])).await,
        "is not a media type",
    )
    .await;
}

#[tokio::test]
async fn an_oci_manifest_whose_config_lists_other_layers_is_refused() {
    let img = plain().await;
    let doubled = img.manifest_with(|m| {
        let first = m["layers"][0].clone();
        m["layers"].as_array_mut().unwrap().push(first);
    });
    let desc = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&doubled), "size": doubled.len()});
    let mut e = with_index(&img, vec![desc]);
    e.push(Entry::blob(&doubled));
    refused(tar(&e).await, "lists 1 diff_ids").await;
}
