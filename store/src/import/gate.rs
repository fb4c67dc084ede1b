//! Bounds the header metadata the tar reader may buffer. The reader collects PAX extended
//! headers and GNU long names and link names whole, before it yields the entry they describe,
//! and sets no limit of its own: a 512 MiB PAX header would sit in memory. Every byte it reads
//! between yielding two entries (header blocks, those extensions, padding, skipped bodies) passes
//! this gate, which refuses once one entry's metadata passes [`MAX_TAR_METADATA`]. Bodies are
//! read by the importer itself with the gate open.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};

use crate::limits::MAX_TAR_METADATA;

/// The importer's handle: shut before asking for the next entry, open while reading its body.
#[derive(Clone, Default)]
pub(super) struct Gate {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    consumed: AtomicU64,
    /// The offset the reader may not pass; `u64::MAX` while the gate is open.
    until: AtomicU64,
}

impl Gate {
    /// From here until [`Gate::open`], the reader may consume the `unread` bytes left of the
    /// current entry's body (the tar reader skips them) and then at most [`MAX_TAR_METADATA`].
    pub(super) fn limit(&self, unread: u64) {
        let consumed = self.state.consumed.load(Ordering::Relaxed);
        self.state.until.store(
            consumed
                .saturating_add(unread)
                .saturating_add(MAX_TAR_METADATA),
            Ordering::Relaxed,
        );
    }

    pub(super) fn open(&self) {
        self.state.until.store(u64::MAX, Ordering::Relaxed);
    }

    pub(super) fn wrap<R>(&self, inner: R) -> Gated<R> {
        self.open();
        Gated {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The tar reader's input, read through the gate.
pub(super) struct Gated<R> {
    inner: R,
    state: Arc<State>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Gated<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let consumed = self.state.consumed.load(Ordering::Relaxed);
        let allowed = self
            .state
            .until
            .load(Ordering::Relaxed)
            .saturating_sub(consumed);
        if allowed == 0 {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "an entry's tar header metadata (PAX extended headers, GNU long names) is over the {MAX_TAR_METADATA}-byte limit"
                ),
            )));
        }
        let room = buf
            .remaining()
            .min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let n = if buf.initialized().len() - buf.filled().len() >= room {
            // Passed on as initialised memory, so that a reader may skip instead of writing
            // (a hole a client left out of the archive costs nothing to pass over).
            let filled = buf.filled().len();
            let mut limited = ReadBuf::new(&mut buf.initialized_mut()[filled..filled + room]);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut limited))?;
            let n = limited.filled().len();
            buf.advance(n);
            n
        } else {
            let mut limited = buf.take(room);
            let start = limited.filled().as_ptr();
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut limited))?;
            // A reader may swap in a ReadBuf of its own; then nothing of ours was initialised.
            assert_eq!(
                limited.filled().as_ptr(),
                start,
                "reader replaced the read buffer"
            );
            let n = limited.filled().len();
            // SAFETY: `limited` was carved from `buf`'s unfilled part, is still that memory
            // (checked above), and the reader initialised its first `n` bytes.
            unsafe { buf.assume_init(n) };
            buf.advance(n);
            n
        };
        self.state.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_shut_gate_passes_the_limit_and_no_more() {
        let data = vec![7u8; (MAX_TAR_METADATA * 3) as usize];
        let gate = Gate::default();
        let mut reader = gate.wrap(data.as_slice());
        let mut body = vec![0u8; (MAX_TAR_METADATA * 2) as usize];
        reader.read_exact(&mut body).await.unwrap();
        gate.limit(0);
        let mut rest = Vec::new();
        let err = reader.read_to_end(&mut rest).await.unwrap_err();
        assert_eq!(rest.len() as u64, MAX_TAR_METADATA);
        assert!(err.to_string().contains("limit"), "{err}");
        gate.open();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), data.len() - body.len());
    }
}
