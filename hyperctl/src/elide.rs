//! Walks a plain tar archive the way hyperd will read it, to leave out the bodies of the
//! `blobs/sha256/<hex>` entries hyperd already holds. The tar reader sees every header byte;
//! bodies go around it (sent in 1 MiB pieces, or left out), and the reader is then told they
//! passed. Everything not left out is sent exactly as it is in the archive, so hyperd reads the
//! same archive a full load sends, and checks the holes itself.

use std::future::Future;
use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use hyperd_proto::CHUNK_SIZE;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};
use tokio::sync::mpsc::Sender;

/// What the walk sends: archive bytes, or the length of a body left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Bytes(Bytes),
    Elided(u64),
}

/// Where the archive comes from: a file (with the length left from where it was opened) can skip
/// a body by seeking, a pipe only by reading it.
pub(crate) enum Source {
    File(tokio::fs::File, u64),
    Pipe(Pin<Box<dyn AsyncRead + Send>>),
}

impl Source {
    async fn skip(&mut self, n: u64) -> std::io::Result<u64> {
        match self {
            Source::File(f, _) => {
                f.seek(SeekFrom::Current(
                    i64::try_from(n).map_err(std::io::Error::other)?,
                ))
                .await?;
                Ok(n)
            }
            Source::Pipe(p) => {
                // In large reads: tokio's copy reads 8 KiB at a time.
                let mut buf = vec![0u8; CHUNK_SIZE];
                let mut left = n;
                while left > 0 {
                    let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    match p.read(&mut buf[..want]).await? {
                        0 => break,
                        k => left -= k as u64,
                    }
                }
                Ok(n - left)
            }
        }
    }

    /// Up to `max` bytes; fewer only at the end of the input.
    async fn read_up_to(&mut self, max: usize) -> std::io::Result<Bytes> {
        let mut buf = BytesMut::with_capacity(max);
        while buf.len() < max {
            let n = match self {
                Source::File(f, _) => f.read_buf(&mut buf).await?,
                Source::Pipe(p) => p.read_buf(&mut buf).await?,
            };
            if n == 0 {
                break;
            }
        }
        Ok(buf.freeze())
    }
}

impl AsyncRead for Source {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Source::File(f, _) => Pin::new(f).poll_read(cx, buf),
            Source::Pipe(p) => p.as_mut().poll_read(cx, buf),
        }
    }
}

/// What a walk found and left out.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Every blob entry with a body: `sha256:<hex>` and its size.
    pub(crate) blobs: Vec<(String, u64)>,
    pub(crate) elided: usize,
    pub(crate) elided_bytes: u64,
}

/// hyperd refuses an entry whose header metadata (PAX records, GNU long names) is larger; the
/// walk stops there instead of holding it, and the rest goes as it is for hyperd to refuse.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// The channel to hyperd closed: the call has ended, and its status says why.
#[derive(Debug, thiserror::Error)]
#[error("hyperd stopped reading the archive")]
pub(crate) struct Stopped;

/// The tar reader's input. Header bytes are read from the source and kept to be sent; `passed`
/// bytes are body bytes that went around the reader, which it now skips without reading.
struct Tap(Arc<Mutex<Shared>>);

struct Shared {
    source: Option<Source>,
    header_bytes: Vec<u8>,
    scratch: Vec<u8>,
    passed: u64,
}

impl AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut shared = self.0.lock().expect("tap lock poisoned");
        if shared.passed > 0 {
            let n = usize::try_from(shared.passed)
                .unwrap_or(usize::MAX)
                .min(buf.remaining());
            // The reader skips these bytes unread; an initialised buffer (its skip buffer is)
            // makes that free.
            buf.initialize_unfilled_to(n);
            buf.advance(n);
            shared.passed -= n as u64;
            return Poll::Ready(Ok(()));
        }
        let room = MAX_HEADER_BYTES.saturating_sub(shared.header_bytes.len());
        if room == 0 {
            return Poll::Ready(Err(std::io::Error::other("tar header metadata over 1 MiB")));
        }
        // Read through a small buffer of our own, so no read takes more than the room left.
        let Shared {
            source, scratch, ..
        } = &mut *shared;
        scratch.resize(room.min(buf.remaining()).min(64 << 10), 0);
        let mut into = ReadBuf::new(scratch);
        let source = source
            .as_mut()
            .expect("the source is back while the tar reader reads");
        std::task::ready!(Pin::new(source).poll_read(cx, &mut into))?;
        let n = into.filled().len();
        buf.put_slice(&shared.scratch[..n]);
        let Shared {
            header_bytes,
            scratch,
            ..
        } = &mut *shared;
        header_bytes.extend_from_slice(&scratch[..n]);
        Poll::Ready(Ok(()))
    }
}

/// Sends the archive from `source` into `out` (or, with `None`, only looks), leaving out each
/// blob entry's body for which `stored` says yes. Gives the source back at its end.
pub(crate) async fn walk<F, Fut>(
    source: Source,
    mut stored: F,
    out: Option<&Sender<Piece>>,
) -> anyhow::Result<(Walked, Source)>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let shared = Arc::new(Mutex::new(Shared {
        source: Some(source),
        header_bytes: Vec::new(),
        scratch: Vec::new(),
        passed: 0,
    }));
    let mut archive = tokio_tar::Archive::new(Tap(shared.clone()));
    let mut entries = archive.entries()?;
    let mut walked = Walked::default();
    let mut outbox = Outbox::new(out);
    let mut at = 0u64;
    loop {
        let next = entries.next().await;
        let header_bytes = std::mem::take(&mut shared.lock().expect("tap lock").header_bytes);
        at += header_bytes.len() as u64;
        outbox.bytes(&header_bytes).await?;
        // An entry the tar reader cannot make sense of ends the walk: the rest goes as it is
        // and hyperd gives the error a full load would.
        let Some(Ok(entry)) = next else { break };
        let size = entry.effective_size();
        if entry.raw_file_position() != at {
            break;
        }
        let blob = blob_digest(&entry).filter(|_| size > 0);
        let mut source = take_source(&shared);
        // A body cut short by the end of the file is sent as it is, to fail as it would.
        let whole = match &source {
            Source::File(_, len) => at.saturating_add(size) <= *len,
            Source::Pipe(_) => true,
        };
        let elide = match &blob {
            Some(digest) => {
                walked.blobs.push((digest.clone(), size));
                whole && stored(digest.clone()).await?
            }
            None => false,
        };
        let moved = if elide {
            let skipped = source.skip(size).await?;
            walked.elided += 1;
            walked.elided_bytes += skipped;
            outbox.elided(skipped).await?;
            skipped
        } else {
            copy(&mut source, size, &mut outbox).await?
        };
        at += moved;
        let mut s = shared.lock().expect("tap lock");
        s.source = Some(source);
        s.passed = moved;
        if moved < size {
            break;
        }
    }
    drop(entries);
    drop(archive);
    let mut source = take_source(&shared);
    if out.is_some() {
        copy(&mut source, u64::MAX, &mut outbox).await?;
    }
    outbox.flush().await?;
    Ok((walked, source))
}

/// Sends the rest of `source` as it is.
pub(crate) async fn send_all(source: &mut Source, out: &Sender<Piece>) -> anyhow::Result<()> {
    let mut outbox = Outbox::new(Some(out));
    copy(source, u64::MAX, &mut outbox).await?;
    outbox.flush().await
}

/// Gathers archive bytes into messages of up to 1 MiB: an archive of many small entries would
/// otherwise cost a message per header. With no channel, it only looks.
struct Outbox<'a> {
    out: Option<&'a Sender<Piece>>,
    pending: BytesMut,
}

impl<'a> Outbox<'a> {
    fn new(out: Option<&'a Sender<Piece>>) -> Self {
        Outbox {
            out,
            pending: BytesMut::new(),
        }
    }

    async fn bytes(&mut self, data: &[u8]) -> anyhow::Result<()> {
        if self.out.is_none() {
            return Ok(());
        }
        for part in data.chunks(CHUNK_SIZE) {
            if self.pending.len() + part.len() > CHUNK_SIZE {
                self.flush().await?;
            }
            self.pending.extend_from_slice(part);
        }
        Ok(())
    }

    /// A body's chunk: sent as it is when nothing is pending, without a copy.
    async fn chunk(&mut self, chunk: Bytes) -> anyhow::Result<()> {
        if self.pending.is_empty() && chunk.len() == CHUNK_SIZE {
            return self.send(Piece::Bytes(chunk)).await;
        }
        self.bytes(&chunk).await
    }

    async fn elided(&mut self, n: u64) -> anyhow::Result<()> {
        self.flush().await?;
        self.send(Piece::Elided(n)).await
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let bytes = self.pending.split().freeze();
        self.send(Piece::Bytes(bytes)).await
    }

    async fn send(&self, piece: Piece) -> anyhow::Result<()> {
        if let Some(out) = self.out {
            out.send(piece).await.map_err(|_| Stopped)?;
        }
        Ok(())
    }
}

fn take_source(shared: &Mutex<Shared>) -> Source {
    shared
        .lock()
        .expect("tap lock")
        .source
        .take()
        .expect("the source is with the tap between entries")
}

/// `sha256:<hex>` when the entry is a regular file at `blobs/sha256/<hex>`, as hyperd reads
/// names (a leading `./` dropped).
fn blob_digest<R: AsyncRead + Unpin>(entry: &tokio_tar::Entry<R>) -> Option<String> {
    if !entry.header().entry_type().is_file() {
        return None;
    }
    let path = entry.path_bytes().ok()?;
    let path = std::str::from_utf8(&path).ok()?;
    let hex = path
        .trim_start_matches("./")
        .strip_prefix("blobs/sha256/")?;
    let is_hex = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    is_hex.then(|| format!("sha256:{hex}"))
}

/// Sends up to `n` bytes of `source` in 1 MiB pieces (only skips them, when only looking);
/// returns how many there were.
async fn copy(source: &mut Source, n: u64, outbox: &mut Outbox<'_>) -> anyhow::Result<u64> {
    let mut left = n;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK_SIZE);
        let moved = if outbox.out.is_some() {
            let chunk = source.read_up_to(want).await?;
            let len = chunk.len() as u64;
            outbox.chunk(chunk).await?;
            len
        } else {
            source.skip(want as u64).await?
        };
        if moved == 0 {
            break;
        }
        left -= moved;
    }
    Ok(n - left)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

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
        let (walked, pieces) = collect(walk(source, ask, Some(&tx)), &mut rx).await;
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
        let (plan, _) = walk(open().await, |_| async { Ok(true) }, None)
            .await
            .unwrap();
        let planned: Vec<(String, u64)> = blobs
            .iter()
            .map(|(d, _, len)| (d.clone(), *len as u64))
            .collect();
        assert_eq!(plan.blobs, planned);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 10);
        let (walked, pieces) = collect(
            walk(open().await, |_| async { Ok(true) }, Some(&tx)),
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
        let (walked, pieces) =
            collect(walk(source, |_| async { Ok(true) }, Some(&tx)), &mut rx).await;
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
        let (_, pieces) = collect(walk(source, |_| async { Ok(true) }, Some(&tx)), &mut rx).await;
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
        let (walked, pieces) =
            collect(walk(source, |_| async { Ok(true) }, Some(&tx)), &mut rx).await;
        assert_eq!(layout(&pieces), (bytes, vec![]));
        assert!(walked.blobs.is_empty());
    }
}
