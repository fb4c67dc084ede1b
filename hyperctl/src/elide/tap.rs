//! The tar reader's input. Header bytes are read from the source and kept to be sent; body bytes
//! go around the reader (the walk moves them), and the reader is then told they `passed`, which
//! it skips without reading.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::source::Source;

/// hyperd refuses an entry whose header metadata (PAX records, GNU long names) is larger; the
/// walk stops there instead of holding it, and the rest goes as it is for hyperd to refuse.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// One end is the tar reader's input, a clone stays with the walk: the source goes back and
/// forth between them, with the walk between entries and with the reader while it reads headers.
#[derive(Clone)]
pub(super) struct Tap(Arc<Mutex<Shared>>);

struct Shared {
    source: Option<Source>,
    header_bytes: Vec<u8>,
    scratch: Vec<u8>,
    passed: u64,
}

impl Tap {
    pub(super) fn new(source: Source) -> Self {
        Tap(Arc::new(Mutex::new(Shared {
            source: Some(source),
            header_bytes: Vec::new(),
            scratch: Vec::new(),
            passed: 0,
        })))
    }

    /// The header bytes the reader has read since the last call.
    pub(super) fn take_header_bytes(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.lock().expect("tap lock").header_bytes)
    }

    /// The source, for the walk to move a body (or the rest) itself.
    pub(super) fn take_source(&self) -> Source {
        self.0
            .lock()
            .expect("tap lock")
            .source
            .take()
            .expect("the source is with the tap between entries")
    }

    /// The source back from the walk, which moved `passed` body bytes around the reader.
    pub(super) fn give_back(&self, source: Source, passed: u64) {
        let mut shared = self.0.lock().expect("tap lock");
        shared.source = Some(source);
        shared.passed = passed;
    }
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
