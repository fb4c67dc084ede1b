//! Where an archive goes. A stream gets every byte through a buffer; a file a client handed over
//! gets the headers and documents written at their offsets and each blob's body copied from the
//! blob file by the kernel, and is synced once at the end. The bytes are the same either way.
//!
//! Streamed (Save), blob files go straight into the tar stream through a 1 MiB copy buffer, and
//! hyperd relays the stream through a 1 MiB pipe into `Save` messages; hyperctl writes them with
//! early writeback and renames the file into place once it is synced. Into a handed-over file
//! (SaveFile, `hyperd/src/handoff/mod.rs`), headers, padding and documents are written at their
//! offsets, each blob's body is copied from the blob file by the kernel, and the file is cut to the
//! archive's length and synced once. Both go through the same `TarWriter`, so the bytes are those a
//! streamed save writes (a test compares them). Only a regular file open for writing, and not for
//! appending, is taken. A save pins every blob of its images before it writes a byte.
//!
//! Into a handed-over file, what fails writing that file is the client's (a seal, its file
//! system full or read-only) and is told apart from the store's own failures
//! ([`Error::FileUnwritable`]); a stopped save ends its copy within one step, as a load does
//! (`blob/threads.rs`).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncReadExt, AsyncWrite, BufReader};

use crate::blob::{Failed, Threads, copy_range};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// tokio-tar's own `append` copies through `tokio::io::copy`, 8 KiB at a time, which halved
/// save throughput.
const COPY_BUFFER: usize = 1 << 20;

/// An archive's destination, which decides how a blob file's bytes get there.
pub(crate) trait Out: AsyncWrite + Unpin + Send {
    /// Appends the first `size` bytes of `blob`; returns how many there were.
    fn append_file(
        &mut self,
        blob: tokio::fs::File,
        size: u64,
    ) -> impl Future<Output = io::Result<u64>> + Send;
}

/// A stream: bytes are copied through a buffer.
pub(crate) struct Streamed<W>(pub(crate) W);

impl<W: AsyncWrite + Unpin + Send> Out for Streamed<W> {
    async fn append_file(&mut self, blob: tokio::fs::File, size: u64) -> io::Result<u64> {
        let mut body = BufReader::with_capacity(COPY_BUFFER, blob.take(size));
        tokio::io::copy_buf(&mut body, &mut self.0).await
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Streamed<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// A regular file a client handed over, written from offset 0 with positioned writes: the
/// client's file offset is never moved. Blob bodies are copied on the save's `threads`.
pub(crate) struct Direct {
    file: Arc<File>,
    pos: u64,
    progress: Progress,
    threads: Threads,
}

/// What an I/O error on the way out of a [`Direct`] carries, so that [`blame`] can tell it from
/// the store's own failures once the tar writer has wrapped it in [`Error::Io`].
#[derive(Debug, thiserror::Error)]
enum Marked {
    /// Writing the client's file failed.
    #[error("{0}")]
    Unwritable(io::Error),
    /// The save was stopped.
    #[error("stopped")]
    Stopped,
}

fn marked(m: Marked) -> io::Error {
    io::Error::other(m)
}

/// A save's error as the caller should see it: a failure writing the client's file is
/// [`Error::FileUnwritable`], a stop [`Error::Cancelled`]; the rest are the store's.
pub(crate) fn blame(e: Error) -> Error {
    let Error::Io { context, source } = e else {
        return e;
    };
    if !source.get_ref().is_some_and(|inner| inner.is::<Marked>()) {
        return Error::Io { context, source };
    }
    let inner = source.into_inner().expect("checked").downcast::<Marked>();
    match *inner.expect("checked") {
        Marked::Unwritable(e) => Error::FileUnwritable(format!("{context}: {e}")),
        Marked::Stopped => Error::Cancelled,
    }
}

impl Direct {
    /// Accepts only a regular file open for writing, and not for appending (which would put
    /// every positioned write at the end).
    pub(crate) fn open(file: File, progress: Progress, threads: Threads) -> Result<Self> {
        let refuse = |why: &str| Error::Conflict(format!("cannot save into that file: {why}"));
        let meta = file.metadata().map_err(|e| refuse(&e.to_string()))?;
        if !meta.is_file() {
            return Err(refuse(
                "it is not a regular file (a directory, FIFO, socket or device)",
            ));
        }
        let mode = rustix::fs::fcntl_getfl(&file).map_err(|e| refuse(&e.to_string()))?;
        use rustix::fs::OFlags;
        if !(mode.contains(OFlags::WRONLY) || mode.contains(OFlags::RDWR)) {
            return Err(refuse("it is not open for writing"));
        }
        if mode.contains(OFlags::APPEND) {
            return Err(refuse("it is open for appending"));
        }
        Ok(Direct {
            file: Arc::new(file),
            pos: 0,
            progress,
            threads,
        })
    }

    /// Cuts the file to the archive's length and syncs it, once; returns the length.
    pub(crate) async fn finish(self) -> Result<u64> {
        let len = self.pos;
        tokio::task::spawn_blocking(move || {
            self.file.set_len(len)?;
            self.file.sync_data()
        })
        .await
        .expect("sync thread panicked")
        .map_err(|e| Error::FileUnwritable(format!("cutting and syncing the archive: {e}")))?;
        Ok(len)
    }
}

impl Out for Direct {
    async fn append_file(&mut self, blob: tokio::fs::File, size: u64) -> io::Result<u64> {
        let blob = blob.into_std().await;
        let (out, at, progress) = (self.file.clone(), self.pos, self.progress.clone());
        let copied = self
            .threads
            .run(move |stop| {
                copy_range(&blob, 0, &out, at, size, stop, &mut |n| {
                    progress.reach(at + n)
                })
            })
            .await;
        match copied {
            Ok(()) => {
                self.pos += size;
                Ok(size)
            }
            Err(Failed::Read(e)) => Err(e),
            Err(Failed::Write(e)) => Err(marked(Marked::Unwritable(e))),
            Err(Failed::Stopped) => Err(marked(Marked::Stopped)),
            // The caller finds the blob shorter than its size and reports it.
            Err(Failed::Short(n)) => Ok(n),
        }
    }
}

impl AsyncWrite for Direct {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // On the runtime's thread: what passes here is headers, padding, documents and, in a
        // docker-format save, decompressed layers in 1 MiB writes into the page cache.
        let n = self
            .file
            .write_at(buf, self.pos)
            .map_err(|e| marked(Marked::Unwritable(e)))?;
        self.pos += n as u64;
        self.progress.reach(self.pos);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
