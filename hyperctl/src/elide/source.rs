//! Where the archive comes from, and the two ways past a body: a file seeks, a pipe reads.

use std::io::SeekFrom;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hyperd_proto::CHUNK_SIZE;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, ReadBuf};

/// Where the archive comes from: a file (with the length left from where it was opened) can skip
/// a body by seeking, a pipe only by reading it.
pub(crate) enum Source {
    File(tokio::fs::File, u64),
    Pipe(Pin<Box<dyn AsyncRead + Send>>),
}

impl Source {
    /// Goes past up to `n` bytes; returns how many there were.
    pub(super) async fn skip(&mut self, n: u64) -> std::io::Result<u64> {
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
    pub(super) async fn read_up_to(&mut self, max: usize) -> std::io::Result<Bytes> {
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

    /// Whether `size` bytes from `at` are all there. A pipe's length is unknown, so yes.
    pub(super) fn holds(&self, at: u64, size: u64) -> bool {
        match self {
            Source::File(_, len) => at.saturating_add(size) <= *len,
            Source::Pipe(_) => true,
        }
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
