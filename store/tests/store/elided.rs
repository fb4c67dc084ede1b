//! Blobs the store holds are never read again from an archive, and a client may leave their
//! bodies out: a hole anywhere else refuses the load and changes nothing.

use std::collections::HashSet;

use crate::common::*;
use bytes::Bytes;
use store::{Error, Piece, Store};

/// An archive's entries as (path, body offset, body length), read from the ustar headers the
/// fixtures write.
fn bodies(archive: &[u8]) -> Vec<(String, usize, usize)> {
    tar_offsets(archive)
        .into_iter()
        .map(|(_, pos)| {
            let name = &archive[pos..pos + 100];
            let name = String::from_utf8_lossy(&name[..name.iter().position(|b| *b == 0).unwrap()]);
            let size = std::str::from_utf8(&archive[pos + 124..pos + 136])
                .unwrap()
                .trim_matches(|c| c == '\0' || c == ' ');
            (
                name.into_owned(),
                pos + 512,
                usize::from_str_radix(size, 8).unwrap(),
            )
        })
        .collect()
}

/// `archive` as pieces, with the byte ranges `holes` left out.
fn with_holes(archive: &[u8], holes: &[(usize, usize)]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(start, len) in holes {
        out.push(Piece::Bytes(Bytes::copy_from_slice(&archive[at..start])));
        out.push(Piece::Elided(len as u64));
        at = start + len;
    }
    out.push(Piece::Bytes(Bytes::copy_from_slice(&archive[at..])));
    out
}

/// The body ranges of the `blobs/sha256/<hex>` entries whose digests are in `stored`.
fn stored_bodies(archive: &[u8], stored: &HashSet<String>) -> Vec<(usize, usize)> {
    bodies(archive)
        .into_iter()
        .filter(|(path, _, _)| {
            path.strip_prefix("blobs/sha256/")
                .is_some_and(|hex| stored.contains(hex))
        })
        .map(|(_, at, len)| (at, len))
        .collect()
}

async fn load_pieces(store: &Store, pieces: Vec<Piece>) -> store::Result<()> {
    let stream = futures_util::stream::iter(pieces.into_iter().map(Ok));
    store.images().load_pieces(stream, &[]).await.map(drop)
}

fn hexes(img: &Image) -> HashSet<String> {
    [&img.manifest, &img.config]
        .into_iter()
        .chain(img.layers.iter().map(|(b, _)| b))
        .map(|b| hex_of(&sha(b)).to_owned())
        .collect()
}

/// A store holding `base`, and the tempdir it lives in.
async fn holding(base: &Image) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let archive = oci_archive(&[(base, &[("io.containerd.image.name", "base:1")])]).await;
    store.images().load(reader(archive), &[]).await.unwrap();
    (dir, store)
}

/// Loads `pieces` into a store holding `base`, expects a refusal mentioning `expect`, and
/// checks that the store is as it was.
async fn refused(base: &Image, pieces: Vec<Piece>, expect: &str) -> Error {
    let (dir, store) = holding(base).await;
    let rows_before = rows(&store);
    let blobs_before = blob_files(dir.path());
    let err = load_pieces(&store, pieces).await.unwrap_err();
    assert!(err.to_string().contains(expect), "{err} lacks {expect:?}");
    assert_eq!(rows(&store), rows_before);
    assert_eq!(blob_files(dir.path()), blobs_before);
    assert_eq!(ingest_files(dir.path()), 0);
    err
}

async fn base_and_next() -> (Image, Image, Vec<u8>) {
    let base = Image::new(&["shared", "base"], "amd64", Comp::None).await;
    let next = Image::new(&["shared", "next"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&next, &[("io.containerd.image.name", "next:1")])]).await;
    (base, next, archive)
}

#[tokio::test]
async fn a_stored_blobs_bytes_in_an_archive_are_never_read() {
    let base = Image::new(&["keep"], "amd64", Comp::None).await;
    let (dir, store) = holding(&base).await;
    let blobs_before = blob_files(dir.path());
    let mut e = oci_entries(&[(&base, &[("io.containerd.image.name", "evil:1")])]);
    e.last_mut().unwrap().data[600] ^= 1;
    store
        .images()
        .load(reader(tar(&e).await), &[])
        .await
        .unwrap();
    let evil = store.images().inspect("evil:1").await.unwrap();
    assert_eq!(evil.record.id.to_string(), base.id());
    assert_eq!(blob_files(dir.path()), blobs_before);
    assert!(store.check().await.unwrap().problems.is_empty());
}

#[tokio::test]
async fn leaving_out_stored_bodies_loads_what_the_whole_archive_loads() {
    let (base, _, archive) = base_and_next().await;
    let holes = stored_bodies(&archive, &hexes(&base));
    assert_eq!(holes.len(), 1, "the shared layer");
    let (dir_a, whole) = holding(&base).await;
    whole
        .images()
        .load(reader(archive.clone()), &[])
        .await
        .unwrap();
    let (dir_b, elided) = holding(&base).await;
    load_pieces(&elided, with_holes(&archive, &holes))
        .await
        .unwrap();
    assert_eq!(rows(&elided), rows(&whole));
    assert_eq!(blob_files(dir_b.path()), blob_files(dir_a.path()));
    assert!(elided.check().await.unwrap().problems.is_empty());
    drop((dir_a, dir_b));
}

#[tokio::test]
async fn a_reload_may_leave_out_every_blob() {
    let base = Image::new(&["a", "b"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&base, &[("io.containerd.image.name", "again:1")])]).await;
    let holes = stored_bodies(&archive, &hexes(&base));
    assert_eq!(holes.len(), 4);
    let (_dir, store) = holding(&base).await;
    load_pieces(&store, with_holes(&archive, &holes))
        .await
        .unwrap();
    assert_eq!(
        store
            .images()
            .inspect("again:1")
            .await
            .unwrap()
            .record
            .id
            .to_string(),
        base.id()
    );
}

#[tokio::test]
async fn a_hole_over_a_header_is_refused() {
    let (base, _, archive) = base_and_next().await;
    let (_, header) = tar_offsets(&archive)[1];
    let err = refused(&base, with_holes(&archive, &[(header, 512)]), "left out").await;
    assert!(matches!(err, Error::InvalidArchive(_)), "{err:?}");
}

#[tokio::test]
async fn a_hole_over_a_blob_the_store_lacks_is_a_conflict() {
    let (base, next, archive) = base_and_next().await;
    let new: HashSet<String> = hexes(&next).difference(&hexes(&base)).cloned().collect();
    let holes = stored_bodies(&archive, &new);
    let err = refused(&base, with_holes(&archive, &holes[..1]), "does not hold").await;
    assert!(matches!(err, Error::LeftOutBlobGone(_)), "{err:?}");
}

#[tokio::test]
async fn a_hole_over_part_of_a_stored_body_or_past_it_is_refused() {
    let (base, _, archive) = base_and_next().await;
    let (at, len) = stored_bodies(&archive, &hexes(&base))[0];
    refused(&base, with_holes(&archive, &[(at, len - 1)]), "left out").await;
    refused(
        &base,
        with_holes(&archive, &[(at + 1, len - 1)]),
        "left out",
    )
    .await;
    refused(&base, with_holes(&archive, &[(at, len + 1)]), "left out").await;
}

#[tokio::test]
async fn holes_in_a_compressed_archive_are_refused() {
    let (base, _, archive) = base_and_next().await;
    let gz = gzip(&archive).await;
    refused(&base, with_holes(&gz, &[(100, 10)]), "compressed").await;
}

#[tokio::test]
async fn a_hole_over_a_body_the_store_lacks_is_refused_before_a_byte_of_it_is_read() {
    // A terabyte the client never sends: were its bytes staged, this would fill the disk.
    let base = Image::new(&["lacks"], "amd64", Comp::None).await;
    let mut header = tokio_tar::Header::new_gnu();
    let path = format!("blobs/sha256/{}", "ab".repeat(32));
    header.set_path(&path).unwrap();
    header.set_size(1 << 40);
    header.set_entry_type(tokio_tar::EntryType::Regular);
    header.set_cksum();
    let pieces = vec![
        Piece::Bytes(Bytes::copy_from_slice(header.as_bytes())),
        Piece::Elided(1 << 40),
    ];
    let err = refused(&base, pieces, "does not hold").await;
    assert!(matches!(err, Error::LeftOutBlobGone(_)), "{err:?}");
}
