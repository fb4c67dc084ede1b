//! Every decompression the store does goes through here, bounded against decompression bombs.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

use crate::limits::{BOMB_GRACE, MAX_EXPANSION};

/// How a blob or archive is compressed, told by its first bytes rather than by any label: some
/// tools label plain tar as gzip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub(crate) fn sniff(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// `reader` decompressed as `compression` says, failing with InvalidData once the output outgrows
/// the input by more than [`MAX_EXPANSION`] (past [`BOMB_GRACE`]).
pub(crate) fn decoder<R: AsyncBufRead + Unpin + Send + 'static>(
    reader: R,
    compression: Compression,
) -> Pin<Box<dyn AsyncRead + Send>> {
    bounded(reader, compression, BOMB_GRACE)
}

fn bounded<R: AsyncBufRead + Unpin + Send + 'static>(
    reader: R,
    compression: Compression,
    grace: u64,
) -> Pin<Box<dyn AsyncRead + Send>> {
    let consumed = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: reader,
        consumed: consumed.clone(),
    };
    let decoded: Pin<Box<dyn AsyncRead + Send>> = match compression {
        Compression::None => return Box::pin(counted),
        Compression::Gzip => {
            let mut d = GzipDecoder::new(counted);
            d.multiple_members(true);
            Box::pin(d)
        }
        Compression::Zstd => Box::pin(ZstdDecoder::new(counted)),
    };
    Box::pin(Bounded {
        inner: decoded,
        consumed,
        produced: 0,
        grace,
    })
}

/// Counts the compressed bytes the decoder consumes.
struct Counted<R> {
    inner: R,
    consumed: Arc<AtomicU64>,
}

impl<R: AsyncBufRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<R: AsyncBufRead + Unpin> AsyncBufRead for Counted<R> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<&[u8]>> {
        Pin::new(&mut self.get_mut().inner).poll_fill_buf(cx)
    }

    fn consume(mut self: Pin<&mut Self>, amt: usize) {
        self.consumed.fetch_add(amt as u64, Ordering::Relaxed);
        Pin::new(&mut self.inner).consume(amt);
    }
}

/// Fails the decompressed stream once it outgrows the compressed one past the limits.
struct Bounded {
    inner: Pin<Box<dyn AsyncRead + Send>>,
    consumed: Arc<AtomicU64>,
    produced: u64,
    grace: u64,
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = self.inner.as_mut().poll_read(cx, buf);
        self.produced += (buf.filled().len() - before) as u64;
        let consumed = self.consumed.load(Ordering::Relaxed).max(1);
        if self.produced > self.grace && self.produced / consumed > MAX_EXPANSION {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "decompressed {} bytes from {consumed}: over the {MAX_EXPANSION}:1 limit for compressed data",
                    self.produced
                ),
            )));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn gzip(data: &[u8]) -> Vec<u8> {
        use async_compression::tokio::write::GzipEncoder;
        use tokio::io::AsyncWriteExt;
        let mut e = GzipEncoder::new(Vec::new());
        e.write_all(data).await.unwrap();
        e.shutdown().await.unwrap();
        e.into_inner()
    }

    #[tokio::test]
    async fn a_gzip_bomb_is_cut_off_and_ordinary_data_passes() {
        let grace = 1 << 20;
        let bomb = gzip(&vec![0u8; 8 << 20]).await;
        let mut d = bounded(std::io::Cursor::new(bomb), Compression::Gzip, grace);
        let err = tokio::io::copy(&mut d, &mut tokio::io::sink())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("100:1"), "{err}");

        let text: Vec<u8> = (0..(4u32 << 20) / 8)
            .flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes().repeat(2))
            .collect();
        let packed = gzip(&text).await;
        let mut out = Vec::new();
        bounded(std::io::Cursor::new(packed), Compression::Gzip, grace)
            .read_to_end(&mut out)
            .await
            .unwrap();
        assert_eq!(out, text);
    }
}
