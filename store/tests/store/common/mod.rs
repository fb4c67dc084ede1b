//! Store-side helpers for the store's tests; the archives come from `integration::fixtures`.
#![allow(dead_code, unreachable_pub)]

use std::io::Cursor;
use std::path::Path;

pub use integration::fixtures::*;
use store::{Error, ImageName, Store};

/// docker-archive of the host's platform.
pub const DOCKER: store::Format = store::Format::Docker { platform: None };

/// docker-archive of `platform` (`os/arch[/variant]`).
pub fn docker_for(platform: &str) -> store::Format {
    store::Format::Docker {
        platform: Some(platform.parse().unwrap()),
    }
}

pub fn reader(bytes: Vec<u8>) -> Cursor<Vec<u8>> {
    Cursor::new(bytes)
}

pub fn name(s: &str) -> ImageName {
    s.parse().unwrap()
}

pub fn map(pairs: &[(&str, &str)]) -> Vec<(ImageName, String)> {
    pairs
        .iter()
        .map(|(n, r)| (name(n), r.to_string()))
        .collect()
}

pub async fn open(dir: &Path) -> Store {
    Store::open(dir).await.unwrap()
}

pub async fn save(
    store: &Store,
    images: &[(&str, Option<&str>)],
    format: store::Format,
) -> Vec<u8> {
    let items: Vec<store::SaveItem> = images
        .iter()
        .map(|(i, r)| store::SaveItem {
            image: i.to_string(),
            ref_name: r.map(str::to_owned),
        })
        .collect();
    store
        .images()
        .save(&items, format, Vec::new())
        .await
        .unwrap()
}

/// (tag or `<none>`, image ID) rows, sorted.
pub fn rows(store: &Store) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = store
        .images()
        .list()
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.name.map_or("<none>".into(), |n| n.to_string()),
                s.id.to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

pub fn blob_files(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

pub fn ingest_files(root: &Path) -> usize {
    walk(&root.join("ingest"))
}

fn walk(p: &Path) -> usize {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                1 + walk(&e.path())
            } else {
                1
            }
        })
        .sum()
    })
}

/// Loads `a:1` and `b:1`, two images whose first layer is the same blob.
pub async fn load_two_sharing_a_layer(store: &Store, shared: &str) -> (Image, Image) {
    let a = Image::new(&[shared, "a"], "amd64", Comp::None).await;
    let b = Image::new(&[shared, "b"], "amd64", Comp::None).await;
    let archive = oci_archive(&[
        (&a, &[("io.containerd.image.name", "a:1")]),
        (&b, &[("io.containerd.image.name", "b:1")]),
    ])
    .await;
    store.images().load(reader(archive), &[]).await.unwrap();
    (a, b)
}

/// Loads `archive` into a store that already holds one image, and checks the refusal left that
/// store as it was.
pub async fn refused(archive: Vec<u8>, expect: &str) -> Error {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let keep = Image::new(&["keep"], "amd64", Comp::None).await;
    store
        .images()
        .load(
            reader(oci_archive(&[(&keep, &[("io.containerd.image.name", "keep:1")])]).await),
            &[],
        )
        .await
        .unwrap();
    let rows_before = rows(&store);
    let blobs_before = blob_files(dir.path());
    let err = store.images().load(reader(archive), &[]).await.unwrap_err();
    assert!(
        err.to_string().contains(expect),
        "error {err:?} does not mention {expect:?}"
    );
    assert_eq!(rows(&store), rows_before, "tags changed");
    assert_eq!(blob_files(dir.path()), blobs_before, "blobs changed");
    assert_eq!(ingest_files(dir.path()), 0, "temp files left behind");
    let outside = dir.path().parent().unwrap().join("escaped");
    assert!(!outside.exists(), "wrote outside the root");
    assert!(store.check().await.unwrap().problems.is_empty());
    err
}

pub async fn plain() -> Image {
    Image::new(&["bad"], "amd64", Comp::None).await
}

pub fn with_index(img: &Image, descriptors: Vec<serde_json::Value>) -> Vec<Entry> {
    let mut e = vec![
        Entry::file("oci-layout", LAYOUT),
        Entry::file("index.json", &index_json(descriptors)),
    ];
    e.extend(img.blob_entries());
    e
}

/// (index, byte offset) of each header in an uncompressed tar.
pub fn tar_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 512 <= bytes.len() && bytes[pos] != 0 {
        let size_field = std::str::from_utf8(&bytes[pos + 124..pos + 136])
            .unwrap()
            .trim_matches(|c| c == '\0' || c == ' ');
        let size = usize::from_str_radix(size_field, 8).unwrap();
        out.push((out.len(), pos));
        pos += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// A blob no record lists, as a crash between publishing and committing leaves one; its hex.
pub fn write_orphan(root: &Path) -> String {
    let orphan = b"orphan";
    let hex = hex_of(&sha(orphan)).to_owned();
    std::fs::write(root.join("blobs/sha256").join(&hex), orphan).unwrap();
    hex
}
