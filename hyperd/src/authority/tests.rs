//! The wrapper against byte streams built frame by frame: whatever the read sizes, frames that are
//! no header block come out unchanged, and each header block decodes on its own (h2's table stays
//! empty) to the client's fields with a usable `:authority`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::AnyAuthority;
use super::inbound::{LOCALHOST, MAX_BLOCK, MAX_OUT_FRAME};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SOCKET: &[u8] = b"/run/hyperd/hyperd.sock";

/// Hands out `data` in reads of the given sizes, cycling through them.
struct Chunked {
    data: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let size = self.sizes[self.turn % self.sizes.len()];
        self.turn += 1;
        let n = size.min(buf.remaining()).min(self.data.len() - self.at);
        buf.put_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

async fn through(data: &[u8], sizes: &[usize], read_size: usize) -> io::Result<Vec<u8>> {
    let mut w = AnyAuthority::new(Chunked {
        data: data.to_vec(),
        at: 0,
        sizes: sizes.to_vec(),
        turn: 0,
    });
    let mut out = Vec::new();
    let mut buf = vec![0; read_size];
    loop {
        match w.read(&mut buf).await? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn parse(mut b: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while !b.is_empty() {
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
        frames.push(Frame {
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
            payload: b[9..9 + len].to_vec(),
        });
        b = &b[9 + len..];
    }
    frames
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn request(authority: &[u8], path: &str) -> Fields {
    [
        (&b":method"[..], &b"POST"[..]),
        (b":scheme", b"http"),
        (b":path", path.as_bytes()),
        (b":authority", authority),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ]
    .iter()
    .map(|(n, v)| (n.to_vec(), v.to_vec()))
    .collect()
}

fn with_authority(mut fields: Fields, authority: &[u8]) -> Fields {
    for (n, v) in &mut fields {
        if n == b":authority" {
            *v = authority.to_vec();
        }
    }
    fields
}

fn encode(enc: &mut Encoder<'_>, fields: &Fields) -> Vec<u8> {
    enc.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])))
}

/// A client's connection: preface, SETTINGS, then requests whose blocks use the dynamic table,
/// CONTINUATION, PADDED and PRIORITY, with DATA and WINDOW_UPDATE frames between them. Returns
/// the bytes and the header lists h2 must see, in order.
fn session() -> (Vec<u8>, Vec<Fields>) {
    let mut enc = Encoder::new();
    let mut c = PREFACE.to_vec();
    c.extend(frame(0x4, 0, 0, &[0, 4, 0, 0x80, 0, 0])); // SETTINGS INITIAL_WINDOW_SIZE
    let one = request(SOCKET, "/grpc.health.v1.Health/Check");
    c.extend(frame(0x1, 0x4, 1, &encode(&mut enc, &one)));
    c.extend(frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]));
    // Same fields again: all indexed from the dynamic table, split over three frames.
    let block = encode(&mut enc, &one);
    assert!(
        block.contains(&(0x80 | 62)),
        "te: trailers indexed: {block:?}"
    );
    let two = [&block[..1], &block[1..2], &block[2..]];
    c.extend(frame(0x1, 0x1, 3, two[0]));
    c.extend(frame(0x9, 0, 3, two[1]));
    c.extend(frame(0x9, 0x4, 3, two[2]));
    c.extend(frame(0x8, 0, 0, &[0, 0, 1, 0]));
    // PADDED and PRIORITY, a valid authority, and a table shrunk to nothing and grown back.
    let three = request(b"localhost:80", "/hyperd.v1.ImageService/List");
    let mut payload = vec![3, 0, 0, 0, 1, 16];
    payload.extend([0x20, 0x3f, 0xe1, 0x1f]);
    payload.extend(encode(&mut Encoder::new(), &three));
    payload.extend([0; 3]);
    c.extend(frame(0x1, 0x8 | 0x20 | 0x4, 5, &payload));
    c.extend(frame(0x0, 0, 5, &vec![7; 3000]));
    c.extend(frame(0x0, 0x1, 5, &[]));
    let four = request(b"%2Frun%2Fhyperd.sock", "/x");
    c.extend(frame(0x1, 0x5, 7, &encode(&mut Encoder::new(), &four)));
    let expected = vec![
        with_authority(one.clone(), LOCALHOST),
        with_authority(one, LOCALHOST),
        three,
        with_authority(four, LOCALHOST),
    ];
    (c, expected)
}

/// Checks `out` against the session: the preface and every other frame as sent, each header block
/// decodable by a fresh decoder to the expected fields.
fn check(sent: &[u8], out: &[u8], expected: &[Fields]) {
    assert_eq!(&out[..24], PREFACE);
    let is_block = |f: &Frame| f.kind == 0x1 || f.kind == 0x9;
    let sent: Vec<Frame> = parse(&sent[24..]);
    let out: Vec<Frame> = parse(&out[24..]);
    let others = |fs: &[Frame]| -> Vec<(u8, u8, u32, Vec<u8>)> {
        fs.iter()
            .filter(|f| !is_block(f))
            .map(|f| (f.kind, f.flags, f.stream, f.payload.clone()))
            .collect()
    };
    assert_eq!(others(&out), others(&sent));
    let mut blocks: Vec<(u32, u8, Vec<u8>)> = Vec::new();
    for f in out.iter().filter(|f| is_block(f)) {
        assert!(f.payload.len() <= MAX_OUT_FRAME);
        let mut payload = &f.payload[..];
        if f.kind == 0x1 {
            assert_eq!(f.flags & 0x8, 0, "padding is dropped");
            if f.flags & 0x20 != 0 {
                assert_eq!(&payload[..5], &[0, 0, 0, 1, 16]);
                payload = &payload[5..];
            }
            blocks.push((f.stream, f.flags & 0x1, Vec::new()));
        }
        let last = blocks.last_mut().unwrap();
        assert_eq!(last.0, f.stream);
        last.2.extend_from_slice(payload);
    }
    let ends: Vec<u8> = blocks.iter().map(|b| b.1).collect();
    assert_eq!(ends, [0, 1, 0, 1], "END_STREAM kept");
    let decoded: Vec<Fields> = blocks
        .iter()
        .map(|b| Decoder::new().decode(&b.2).unwrap())
        .collect();
    assert_eq!(decoded, expected);
}

#[tokio::test]
async fn whole_reads_pass_frames_and_rewrite_only_bad_authorities() {
    let (sent, expected) = session();
    let out = through(&sent, &[1 << 20], 1 << 20).await.unwrap();
    check(&sent, &out, &expected);
}

#[tokio::test]
async fn a_split_at_every_byte_changes_nothing() {
    let (sent, expected) = session();
    for at in 1..sent.len() {
        let out = through(&sent, &[at, 1 << 20], 1 << 20).await.unwrap();
        check(&sent, &out, &expected);
    }
}

#[tokio::test]
async fn tiny_reads_on_either_side_change_nothing() {
    let (sent, expected) = session();
    for (sizes, read_size) in [
        (&[1][..], 1 << 20),
        (&[7, 3, 64], 5),
        (&[4096], 1),
        (&[9], 9),
    ] {
        let out = through(&sent, sizes, read_size).await.unwrap();
        check(&sent, &out, &expected);
    }
}

#[tokio::test]
async fn a_large_block_leaves_in_frames_of_16_kib() {
    let mut fields = request(SOCKET, "/x");
    fields.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
    let mut sent = PREFACE.to_vec();
    let block = encode(&mut Encoder::new(), &fields);
    sent.extend(frame(0x1, 0x0, 1, &block[..16_000]));
    sent.extend(frame(0x9, 0x0, 1, &block[16_000..30_000]));
    sent.extend(frame(0x9, 0x4, 1, &block[30_000..]));
    let out = through(&sent, &[1 << 20], 1 << 20).await.unwrap();
    let frames = parse(&out[24..]);
    let kinds: Vec<(u8, u8)> = frames.iter().map(|f| (f.kind, f.flags)).collect();
    assert_eq!(kinds, [(0x1, 0), (0x9, 0), (0x9, 4)]);
    let block: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
    assert_eq!(
        Decoder::new().decode(&block).unwrap(),
        with_authority(fields, LOCALHOST)
    );
}

/// The error the connection ends with, the same wherever the reads split the bytes.
async fn refused(tail: Vec<u8>) -> io::Error {
    let mut sent = PREFACE.to_vec();
    sent.extend(tail);
    let e = through(&sent, &[1 << 20], 1 << 20).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    for at in (1..sent.len()).step_by(sent.len() / 200 + 1) {
        let split = through(&sent, &[at, 1 << 20], 1 << 20).await.unwrap_err();
        assert_eq!(split.to_string(), e.to_string(), "split at {at}");
    }
    e
}

#[tokio::test]
async fn an_oversize_block_closes_the_connection() {
    let chunk = vec![0x40; MAX_BLOCK / 4];
    let mut tail = frame(0x1, 0, 1, &chunk);
    for _ in 0..4 {
        tail.extend(frame(0x9, 0, 1, &chunk));
    }
    let e = refused(tail).await;
    assert!(e.to_string().contains("size limit"), "{e}");
    let e = refused(frame(0x1, 0x4, 1, &vec![0; MAX_BLOCK + 1])).await;
    assert!(e.to_string().contains("size limit"), "{e}");
}

#[tokio::test]
async fn broken_blocks_close_the_connection() {
    // Index 70: the dynamic table is empty.
    refused(frame(0x1, 0x4, 1, &[0x80 | 70])).await;
    // Padding longer than the payload.
    refused(frame(0x1, 0x8 | 0x4, 1, &[9, 0x82])).await;
    // A DATA frame inside a header block.
    let mut tail = frame(0x1, 0, 1, &[0x82]);
    tail.extend(frame(0x0, 0, 1, b"x"));
    refused(tail).await;
    // A CONTINUATION for another stream, and one with no block open.
    let mut tail = frame(0x1, 0, 1, &[0x82]);
    tail.extend(frame(0x9, 0x4, 3, &[0x84]));
    refused(tail).await;
    refused(frame(0x9, 0x4, 1, &[0x82])).await;
    // A table size above h2's 4096.
    refused(frame(0x1, 0x4, 1, &[0x3f, 0xe2, 0x1f, 0x82])).await;
}

/// The wrapper's progress after the client sent `data` and stopped.
async fn progress_after(data: &[u8], read_size: usize) -> super::Progress {
    let mut w = AnyAuthority::new(Chunked {
        data: data.to_vec(),
        at: 0,
        sizes: vec![read_size],
        turn: 0,
    });
    let mut buf = vec![0; 1 << 20];
    while w.read(&mut buf).await.unwrap() > 0 {}
    w.progress()
}

#[tokio::test]
async fn progress_counts_whole_frames_and_blocks_whatever_the_reads() {
    let (sent, _) = session();
    let ends = |frames, blocks| super::Progress {
        frames,
        mid_frame: false,
        blocks,
        mid_block: false,
    };
    for read_size in [1, 7, 1 << 20] {
        // The preface and 11 frames, 4 of them header blocks; then a frame cut short.
        assert_eq!(progress_after(&sent, read_size).await, ends(12, 4));
        let cut = progress_after(&sent[..sent.len() - 1], read_size).await;
        assert!(cut.mid_frame && cut.frames == 11, "{cut:?}");
        let mut open = sent.clone();
        open.extend(frame(0x1, 0, 9, &[0x82]));
        let open = progress_after(&open, read_size).await;
        assert!(
            open.mid_block && !open.mid_frame && open.blocks == 4,
            "{open:?}"
        );
    }
}
