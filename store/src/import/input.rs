//! What a load reads: archive bytes, in which a client may have left out the bodies of blobs the
//! store already holds. A left-out body (a hole) reads as bytes nobody looks at: the importer
//! accepts a hole only where it skips a stored blob's body unread, and refuses the load when a
//! hole falls anywhere else, before anything is committed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures_util::Stream;
use tokio::io::{AsyncRead, ReadBuf};

use super::file::Direct;
use crate::blob::Threads;
use crate::error::Result;
use crate::progress::Progress;

/// One piece of a load's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// The next bytes of the archive.
    Bytes(Bytes),
    /// The next this-many bytes of the archive were left out by the client: the body of a
    /// `blobs/sha256/<hex>` entry whose blob the store holds.
    Elided(u64),
}

/// A load's input: the archive's bytes, and the holes passed in them.
pub(crate) struct Input {
    pub(crate) reader: Pin<Box<dyn AsyncRead + Send>>,
    pub(crate) holes: Holes,
    /// Set when the archive is a file the client handed over, whose bodies the kernel copies.
    pub(crate) direct: Option<Direct>,
}

impl Input {
    /// An archive read whole, with no holes.
    pub(crate) fn plain(reader: impl AsyncRead + Send + 'static) -> Self {
        Input {
            reader: Box::pin(reader),
            holes: Holes::default(),
            direct: None,
        }
    }

    /// An archive in a file the client handed over, starting at byte `start`, whose bodies are
    /// copied on `threads`.
    pub(crate) fn file(
        file: std::fs::File,
        start: u64,
        progress: Progress,
        threads: Threads,
    ) -> Result<Self> {
        let (direct, reader) = Direct::open(file, start, progress, threads)?;
        Ok(Input {
            reader: Box::pin(reader),
            holes: Holes::default(),
            direct: Some(direct),
        })
    }

    /// An archive sent as pieces, which may leave stored blobs' bodies out.
    pub(crate) fn pieces(
        stream: impl Stream<Item = std::io::Result<Piece>> + Send + Unpin + 'static,
    ) -> Self {
        let holes = Holes::default();
        Input {
            reader: Box::pin(Pieces::new(stream, holes.clone())),
            holes,
            direct: None,
        }
    }
}

/// Holes that can be outstanding between two checks: one body, maybe sent as several pieces.
const MAX_OPEN_HOLES: usize = 16;

/// The holes the reader has passed, as `(offset, length)` in the archive, and where a hole may
/// fall right now: inside the body of the stored blob the importer is skipping, nowhere else.
/// A hole elsewhere fails the read the moment the reader reaches it, before any of its bytes are
/// hashed, staged or parsed; it is still recorded, so the importer can say what it was.
#[derive(Clone, Default)]
pub(crate) struct Holes(Arc<Mutex<HoleState>>);

#[derive(Default)]
struct HoleState {
    passed: VecDeque<(u64, u64)>,
    /// `(offset, length)` of the stored body being skipped.
    allowed: Option<(u64, u64)>,
    /// A whole-compressed archive, whose offsets are not the tar's.
    forbidden: bool,
}

impl Holes {
    /// The holes passed since the last call, in archive order.
    pub(crate) fn take_passed(&self) -> VecDeque<(u64, u64)> {
        std::mem::take(&mut self.0.lock().expect("hole lock poisoned").passed)
    }

    pub(crate) fn forbid(&self) {
        self.0.lock().expect("hole lock poisoned").forbidden = true;
    }

    /// Holes may fall inside `len` bytes at `offset`, a stored blob's body the importer skips.
    pub(crate) fn allow(&self, offset: u64, len: u64) {
        self.0.lock().expect("hole lock poisoned").allowed = Some((offset, len));
    }

    /// Holes may fall nowhere.
    pub(crate) fn disallow(&self) {
        self.0.lock().expect("hole lock poisoned").allowed = None;
    }

    fn record(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let mut state = self.0.lock().expect("hole lock poisoned");
        if state.forbidden {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the client left bytes out of a compressed archive; only a plain tar may leave \
                 out stored blobs",
            ));
        }
        if let Some((start, n)) = state.passed.back_mut()
            && *start + *n == offset
        {
            *n += len;
        } else if state.passed.len() >= MAX_OPEN_HOLES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the client left out more ranges than there are entries",
            ));
        } else {
            state.passed.push_back((offset, len));
        }
        let end = offset.checked_add(len);
        let inside = state
            .allowed
            .is_some_and(|(at, n)| offset >= at && end.is_some_and(|e| e <= at + n));
        if !inside {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the client left out {len} bytes at offset {offset}, not a stored blob's body"
                ),
            ));
        }
        Ok(())
    }
}

/// The archive as an [`AsyncRead`] over a stream of pieces.
pub(crate) struct Pieces<S> {
    stream: S,
    chunk: Bytes,
    hole: u64,
    offset: u64,
    holes: Holes,
}

impl<S> Pieces<S> {
    pub(crate) fn new(stream: S, holes: Holes) -> Self {
        Pieces {
            stream,
            chunk: Bytes::new(),
            hole: 0,
            offset: 0,
            holes,
        }
    }
}

impl<S: Stream<Item = std::io::Result<Piece>> + Unpin> AsyncRead for Pieces<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(buf.remaining());
                buf.put_slice(&self.chunk[..n]);
                self.chunk.advance(n);
                self.offset += n as u64;
                return Poll::Ready(Ok(()));
            }
            if self.hole > 0 {
                // Nobody reads a hole's bytes, so the buffer keeps whatever it held: free when
                // the reader's buffer is initialised (the tar reader's skip buffer is), zeroed
                // otherwise.
                let n = usize::try_from(self.hole)
                    .unwrap_or(usize::MAX)
                    .min(buf.remaining());
                buf.initialize_unfilled_to(n);
                buf.advance(n);
                self.hole -= n as u64;
                self.offset += n as u64;
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
                Some(Ok(Piece::Bytes(b))) => self.chunk = b,
                Some(Ok(Piece::Elided(n))) => {
                    let offset = self.offset;
                    self.holes.record(offset, n)?;
                    self.hole = n;
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;
    use tokio::io::AsyncReadExt;

    use super::*;

    fn pieces(parts: Vec<Piece>) -> (Pieces<impl Stream<Item = std::io::Result<Piece>>>, Holes) {
        let holes = Holes::default();
        holes.allow(0, u64::MAX);
        let s = stream::iter(parts.into_iter().map(Ok));
        (Pieces::new(s, holes.clone()), holes)
    }

    #[tokio::test]
    async fn holes_read_as_their_length_and_are_recorded_where_they_fall() {
        let (mut r, holes) = pieces(vec![
            Piece::Bytes(Bytes::from_static(b"abc")),
            Piece::Elided(5),
            Piece::Elided(2),
            Piece::Bytes(Bytes::from_static(b"de")),
            Piece::Elided(1),
        ]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 3 + 7 + 2 + 1);
        assert_eq!(&out[..3], b"abc");
        assert_eq!(&out[10..12], b"de");
        assert_eq!(Vec::from(holes.take_passed()), vec![(3, 7), (12, 1)]);
        assert!(holes.take_passed().is_empty());
    }

    #[tokio::test]
    async fn a_forbidden_hole_is_an_error() {
        let (mut r, holes) = pieces(vec![Piece::Elided(5)]);
        holes.forbid();
        let err = r.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert!(err.to_string().contains("compressed"), "{err}");
    }

    #[tokio::test]
    async fn many_separate_holes_without_a_check_are_refused() {
        let mut parts = Vec::new();
        for _ in 0..=MAX_OPEN_HOLES {
            parts.push(Piece::Bytes(Bytes::from_static(b"x")));
            parts.push(Piece::Elided(1));
        }
        let (mut r, _) = pieces(parts);
        assert!(r.read_to_end(&mut Vec::new()).await.is_err());
    }

    #[tokio::test]
    async fn a_hole_outside_the_allowed_body_fails_the_read_at_once() {
        let (mut r, holes) = pieces(vec![
            Piece::Bytes(Bytes::from_static(b"head")),
            Piece::Elided(10),
            Piece::Elided(1 << 40),
        ]);
        holes.allow(4, 10);
        let mut out = vec![0u8; 14];
        r.read_exact(&mut out).await.unwrap();
        let err = r.read(&mut out).await.unwrap_err();
        assert!(
            err.to_string().contains("not a stored blob's body"),
            "{err}"
        );
        assert_eq!(Vec::from(holes.take_passed()), vec![(4, 10 + (1 << 40))]);
        let (mut r, holes) = pieces(vec![Piece::Elided(1)]);
        holes.disallow();
        assert!(r.read(&mut out).await.is_err());
    }
}
