use std::collections::HashSet;
use std::future::Future;

use super::*;

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A layout-like tar: a small file, two blobs (one 1000 bytes, one 3 MiB), a PAX-named
/// entry; with the offset and length of each blob's body.
async fn archive() -> (Vec<u8>, Vec<(String, usize, usize)>) {
    let small = vec![7u8; 1000];
    let big: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let mut builder = tokio_tar::Builder::new(Vec::new());
    let mut add = async |path: &str, data: &[u8]| {
        let mut h = tokio_tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tokio_tar::EntryType::Regular);
        builder.append_data(&mut h, path, data).await.unwrap();
    };
    add("oci-layout", b"{}").await;
    let mut blobs = Vec::new();
    for data in [&small, &big] {
        let hex = sha256_hex(data);
        add(&format!("blobs/sha256/{hex}"), data).await;
        blobs.push((format!("sha256:{hex}"), data.len()));
    }
    add(&format!("{}/long-name", "d".repeat(150)), b"x").await;
    let bytes = builder.into_inner().await.unwrap();
    let offsets = blobs
        .into_iter()
        .map(|(d, len)| {
            let hex = d.trim_start_matches("sha256:").as_bytes().to_vec();
            let at = bytes
                .windows(hex.len())
                .position(|w| w == hex.as_slice())
                .unwrap();
            (d, at - "blobs/sha256/".len() + 512, len)
        })
        .collect();
    (bytes, offsets)
}

async fn collect(
    walk: impl Future<Output = anyhow::Result<(Walked, Source)>>,
    rx: &mut tokio::sync::mpsc::Receiver<Piece>,
) -> (Walked, Vec<Piece>) {
    let (walked, _) = walk.await.unwrap();
    let mut pieces = Vec::new();
    while let Ok(p) = rx.try_recv() {
        pieces.push(p);
    }
    (walked, pieces)
}

/// The pieces laid out as the archive they stand for: holes as (offset, length).
fn layout(pieces: &[Piece]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let (mut bytes, mut holes) = (Vec::new(), Vec::new());
    for p in pieces {
        match p {
            Piece::Bytes(b) => bytes.extend_from_slice(b),
            Piece::Elided(n) => {
                holes.push((bytes.len(), *n as usize));
                bytes.resize(bytes.len() + *n as usize, 0);
            }
        }
    }
    (bytes, holes)
}

fn zeroed(archive: &[u8], holes: &[(usize, usize)]) -> Vec<u8> {
    let mut out = archive.to_vec();
    for &(at, len) in holes {
        out[at..at + len].fill(0);
    }
    out
}

#[tokio::test]
async fn a_pipe_walk_leaves_out_exactly_the_stored_bodies() {
    let (bytes, blobs) = archive().await;
    let stored: HashSet<String> = [blobs[1].0.clone()].into();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 10);
    let source = Source::Pipe(Box::pin(std::io::Cursor::new(bytes.clone())));
    let ask = |d: String| std::future::ready(Ok(stored.contains(&d)));
    let (walked, pieces) = collect(walk(source, ask, Output::Channel(&tx)), &mut rx).await;
    let (laid, holes) = layout(&pieces);
    assert_eq!(holes, vec![(blobs[1].1, blobs[1].2)]);
    assert_eq!(laid, zeroed(&bytes, &holes));
    assert_eq!(walked.blobs.len(), 2);
    assert_eq!((walked.elided, walked.elided_bytes), (1, 3 << 20));
}

#[tokio::test]
async fn a_file_is_planned_by_its_headers_then_sent_like_a_pipe() {
    let (bytes, blobs) = archive().await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let open = || async {
        Source::File(
            tokio::fs::File::open(file.path()).await.unwrap(),
            bytes.len() as u64,
        )
    };
    let (plan, _) = walk(open().await, |_| async { Ok(true) }, Output::Look)
        .await
        .unwrap();
    let planned: Vec<(String, u64)> = blobs
        .iter()
        .map(|(d, _, len)| (d.clone(), *len as u64))
        .collect();
    assert_eq!(plan.blobs, planned);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 10);
    let (walked, pieces) = collect(
        walk(open().await, |_| async { Ok(true) }, Output::Channel(&tx)),
        &mut rx,
    )
    .await;
    let (laid, holes) = layout(&pieces);
    let expect: Vec<(usize, usize)> = blobs.iter().map(|(_, at, len)| (*at, *len)).collect();
    assert_eq!(holes, expect);
    assert_eq!(laid, zeroed(&bytes, &holes));
    assert_eq!(walked.elided, 2);
}

#[tokio::test]
async fn a_body_cut_short_by_the_end_of_a_file_is_sent_as_it_is() {
    let (bytes, blobs) = archive().await;
    let cut = &bytes[..blobs[1].1 + 1000];
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), cut).unwrap();
    let source = Source::File(
        tokio::fs::File::open(file.path()).await.unwrap(),
        cut.len() as u64,
    );
    let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 10);
    let (walked, pieces) = collect(
        walk(source, |_| async { Ok(true) }, Output::Channel(&tx)),
        &mut rx,
    )
    .await;
    let (laid, holes) = layout(&pieces);
    assert_eq!(holes, vec![(blobs[0].1, blobs[0].2)]);
    assert_eq!(laid, zeroed(cut, &holes));
    assert_eq!(walked.elided, 1);
}

#[tokio::test]
async fn what_is_not_a_tar_is_sent_as_it_is() {
    let junk: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 10);
    let source = Source::Pipe(Box::pin(std::io::Cursor::new(junk.clone())));
    let (_, pieces) = collect(
        walk(source, |_| async { Ok(true) }, Output::Channel(&tx)),
        &mut rx,
    )
    .await;
    assert_eq!(layout(&pieces), (junk, vec![]));
}

#[tokio::test]
async fn huge_header_metadata_ends_the_walk_and_goes_as_it_is() {
    let (tail, _) = archive().await;
    let len = 3 << 20;
    let mut h = tokio_tar::Header::new_ustar();
    h.set_entry_type(tokio_tar::EntryType::XHeader);
    h.set_size(len as u64);
    h.set_cksum();
    let mut bytes = h.as_bytes().to_vec();
    let record = format!("{len} comment=");
    bytes.extend_from_slice(record.as_bytes());
    bytes.resize(512 + len - 1, b'v');
    bytes.push(b'\n');
    bytes.resize(512 + len.div_ceil(512) * 512, 0);
    bytes.extend_from_slice(&tail);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 10);
    let source = Source::Pipe(Box::pin(std::io::Cursor::new(bytes.clone())));
    let (walked, pieces) = collect(
        walk(source, |_| async { Ok(true) }, Output::Channel(&tx)),
        &mut rx,
    )
    .await;
    assert_eq!(layout(&pieces), (bytes, vec![]));
    assert!(walked.blobs.is_empty());
}
