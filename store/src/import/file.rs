//! A load's input in a file the client handed over (`hyperd/src/handoff/mod.rs`), read through the
//! one import path: the same gate, checks and refusals as a streamed load.
//!
//! The tar reader reads headers, padding and small documents with positioned reads. For the body of
//! each regular entry the importer keeps (a blob the store lacks, or a docker-archive file such as
//! `<id>/layer.tar`), it knows from the tar reader where the body starts in the file
//! (`raw_file_position`) and how long it is; the kernel copies it into the staging file
//! (`blob/kernel.rs`: `copy_file_range`, a page-cache copy on ext4, a shared extent on XFS or
//! btrfs; across filesystems, where the kernel refuses, through a 1 MiB buffer), and a second
//! thread hashes the staging file behind the copy, 8 MiB at a time, starting writeback of each
//! step. The one size-and-digest check (`Hashed::verify`) then decides, as for a streamed body. The
//! tar reader is told where the copied body ends and passes over it without a byte being read, as
//! it passes over a stored blob's body, which is not read at all.
//!
//! The hash is of the copy, never of the client's file: the client can write its file while hyperd
//! copies it, and the copy is what gets published. On XFS or btrfs the copy shares the source's
//! extents and has no pages of its own in the page cache, so the hash reads it from disk: that is
//! the price of hashing what is published (only ext4 and tmpfs were measured). A whole-compressed
//! archive has no file offsets for its entries, so it is decompressed and hashed as a streamed one
//! is. A file cut short while hyperd reads it ends the copy early and the load is refused. Nothing
//! of a body passes through hyperd's heap: the hashing thread reads 1 MiB at a time from the page
//! cache into one buffer.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::blob::{Body, Threads};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// The importer's handle on the file: where bodies are, and which bytes need not be read.
pub(crate) struct Direct {
    file: Arc<File>,
    start: u64,
    /// Archive offsets below this are bodies taken otherwise; the reader passes over them.
    free_until: Arc<AtomicU64>,
    progress: Progress,
    /// The load's threads, which its kernel copies run on.
    threads: Threads,
}

impl Direct {
    /// Opens `file` as an archive starting at byte `start`: the reader the tar reader reads,
    /// and the handle. Only a regular file open for reading is accepted.
    pub(crate) fn open(
        file: File,
        start: u64,
        progress: Progress,
        threads: Threads,
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
            threads,
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
            threads: self.threads.clone(),
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
