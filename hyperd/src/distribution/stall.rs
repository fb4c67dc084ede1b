//! A client that stops reading an answer (a blob half sent) would hold its connection, its
//! place under the cap and its buffers for ever: hyper waits on the socket and has no timeout
//! for that. [`Watched`] notes since when a write has been waiting for the socket, and
//! [`stalled`] completes once one has waited longer than the stall limit, so the connection is
//! dropped. A client that reads slowly but reads is never cut off.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Since when a write has been waiting, if one is.
pub(super) type Waiting = Arc<Mutex<Option<Instant>>>;

/// An I/O object whose waiting writes are noted in [`Waiting`].
pub(super) struct Watched<I> {
    io: I,
    waiting: Waiting,
}

impl<I> Watched<I> {
    pub(super) fn new(io: I) -> (Self, Waiting) {
        let waiting = Waiting::default();
        (
            Watched {
                io,
                waiting: waiting.clone(),
            },
            waiting,
        )
    }

    fn note<T>(&self, polled: Poll<T>) -> Poll<T> {
        let mut waiting = self.waiting.lock().expect("stall watch");
        match polled.is_pending() {
            true => *waiting.get_or_insert_with(Instant::now),
            false => {
                return polled.map(|r| {
                    *waiting = None;
                    r
                });
            }
        };
        polled
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.note(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Completes once a write has waited `limit` for the client to read.
pub(super) async fn stalled(waiting: Waiting, limit: Duration) {
    loop {
        let since = *waiting.lock().expect("stall watch");
        match since {
            Some(t) if t.elapsed() >= limit => return,
            Some(t) => tokio::time::sleep_until(t + limit).await,
            None => tokio::time::sleep(limit).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_that_waits_past_the_limit_is_reported() {
        let (ours, mut theirs) = tokio::io::duplex(16);
        let (mut watched, waiting) = Watched::new(ours);
        // The pipe holds 16 bytes: the rest waits for a reader.
        let writer = tokio::spawn(async move { watched.write_all(&[0; 64]).await });
        let limit = Duration::from_millis(50);
        tokio::time::timeout(Duration::from_secs(60), stalled(waiting.clone(), limit))
            .await
            .expect("the stall is reported");
        // Reading lets the write go on: nothing waits any more.
        let mut sink = Vec::new();
        let reader = tokio::spawn(async move {
            tokio::io::copy(&mut theirs, &mut sink).await.ok();
        });
        writer.await.unwrap().unwrap();
        assert_eq!(*waiting.lock().unwrap(), None);
        reader.abort();
    }
}
