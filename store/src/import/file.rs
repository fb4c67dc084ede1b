//! A load's input in a file the client handed over. The tar reader reads headers and small
//! documents with positioned reads; the body of each regular entry the importer keeps is copied
//! by the kernel straight from the file (`blob/kernel.rs`), and the tar reader then passes over
//! it without a byte being read, as it does over the body of a blob the store holds.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::blob::Body;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// The importer's handle on the file: where bodies are, and which bytes need not be read.
pub(crate) struct Direct {
    file: Arc<File>,
    start: u64,
    /// Archive offsets below this are bodies taken otherwise; the reader passes over them.
    free_until: Arc<AtomicU64>,
    progress: Progress,
}

impl Direct {
    /// Opens `file` as an archive starting at byte `start`: the reader the tar reader reads,
    /// and the handle. Only a regular file open for reading is accepted.
    pub(crate) fn open(
        file: File,
        start: u64,
        progress: Progress,
    ) -> Result<(Self, impl AsyncRead + Send + 'static)> {
        let meta = file
            .metadata()
            .map_err(|e| Error::invalid(format!("examining the archive file: {e}")))?;
        if !meta.is_file() {
            return Err(Error::invalid(
                "the archive must be a regular file (not a directory, FIFO, socket or device)",
            ));
        }
        let mode = rustix::fs::fcntl_getfl(&file)
            .map_err(|e| Error::invalid(format!("examining the archive file: {e}")))?;
        if mode.contains(rustix::fs::OFlags::WRONLY) || mode.contains(rustix::fs::OFlags::PATH) {
            return Err(Error::invalid("the archive file is not open for reading"));
        }
        let file = Arc::new(file);
        let free_until = Arc::new(AtomicU64::new(0));
        let reader = Positioned {
            file: file.clone(),
            start,
            pos: 0,
            free_until: free_until.clone(),
            progress: progress.clone(),
        };
        let direct = Direct {
            file,
            start,
            free_until,
            progress,
        };
        Ok((direct, reader))
    }

    /// The body of `len` bytes at archive offset `at`, for the kernel to copy.
    pub(crate) fn body(&self, at: u64, len: u64) -> Body {
        Body {
            file: self.file.clone(),
            at: self.start + at,
            len,
            base: at,
            progress: self.progress.clone(),
        }
    }

    /// The reader may pass over everything before archive offset `end` without reading it.
    pub(crate) fn pass_over(&self, end: u64) {
        self.free_until.fetch_max(end, Ordering::Relaxed);
    }
}

/// The archive as an [`AsyncRead`] of positioned reads; the client's file offset is never moved.
struct Positioned {
    file: Arc<File>,
    start: u64,
    pos: u64,
    free_until: Arc<AtomicU64>,
    progress: Progress,
}

impl AsyncRead for Positioned {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let free = self.free_until.load(Ordering::Relaxed);
        let n = if self.pos < free {
            // Nobody reads these bytes: as with a hole, the buffer keeps what it held.
            let n = usize::try_from(free - self.pos)
                .unwrap_or(usize::MAX)
                .min(buf.remaining());
            buf.initialize_unfilled_to(n);
            buf.advance(n);
            n
        } else {
            // A read on the runtime's thread: what passes here is headers, padding and documents
            // of at most a few MiB, from the page cache; bodies go through the kernel copy.
            let at = self.start + self.pos;
            let n = self.file.read_at(buf.initialize_unfilled(), at)?;
            buf.advance(n);
            n
        };
        self.pos += n as u64;
        self.progress.reach(self.pos);
        Poll::Ready(Ok(()))
    }
}
