//! The hashing copy every blob goes through: the async side reads, a blocking thread hashes and
//! (for a staged blob) writes, so the two overlap on two cores.

use std::io::Write;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::BlobInfo;
use crate::decompress::Compression;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, IoContext, Result, ended_early};

/// Read and hash in slices that fit in L2: sha256 measured fastest fed 128-256 KiB at a time
/// (about 1.4 GB/s, against 0.96 GB/s in 1 MiB slices).
pub(crate) const CHUNK: usize = 256 * 1024;
/// Bytes handed from the reading task to the hashing thread at a time.
const HANDOFF: usize = 1 << 20;
/// Buffers in flight between them: bounds a copy's memory to a few MiB.
const HANDOFF_DEPTH: usize = 4;
/// Dirty bytes after which writeback of a blob is started, so that the fsync when a commit
/// publishes it finds little left to do instead of the whole blob.
const WRITEBACK_STEP: u64 = 8 << 20;

/// What hashing a stream found.
pub(crate) struct Hashed {
    pub(crate) digest: Digest,
    pub(crate) len: u64,
    pub(crate) compression: Compression,
}

impl Hashed {
    /// The one check that bytes are what their name or descriptor promised: size, then digest.
    pub(crate) fn verify(&self, size: u64, digest: &Digest, what: &str) -> Result<()> {
        self.check_size(size, what)?;
        if self.digest != *digest {
            return Err(Error::DigestMismatch {
                what: what.to_owned(),
                expected: digest.to_string(),
                actual: self.digest.to_string(),
            });
        }
        Ok(())
    }

    pub(crate) fn check_size(&self, size: u64, what: &str) -> Result<()> {
        if self.len != size {
            return Err(Error::invalid(format!(
                "{what}: expected {size} bytes, got {}",
                self.len
            )));
        }
        Ok(())
    }

    pub(crate) fn info(&self) -> BlobInfo {
        BlobInfo {
            size: self.len,
            compression: self.compression,
        }
    }
}

/// Where the hashing thread puts the bytes it has hashed.
pub(crate) trait Sink: Send + 'static {
    fn put(&mut self, buf: &[u8]) -> std::io::Result<()>;
    /// What a write error was writing.
    fn describe(&self) -> String;
}

/// Keeps nothing: for bytes that are only verified.
struct Discard;

impl Sink for Discard {
    fn put(&mut self, _: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
    fn describe(&self) -> String {
        "(not written)".to_owned()
    }
}

/// A file, with writeback started as it fills.
pub(crate) struct Writeback {
    file: std::fs::File,
    path: PathBuf,
    written: u64,
    synced: u64,
}

impl Writeback {
    pub(crate) fn create(path: PathBuf) -> Result<Self> {
        let file =
            std::fs::File::create(&path).context(|| format!("creating {}", path.display()))?;
        Ok(Writeback {
            file,
            path,
            written: 0,
            synced: 0,
        })
    }
}

impl Writeback {
    /// Waits until the file's bytes are on disk.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .context(|| format!("syncing {}", self.path.display()))
    }
}

impl Sink for Writeback {
    fn put(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        if self.written - self.synced >= WRITEBACK_STEP {
            start_writeback(&self.file, self.synced, self.written - self.synced);
            self.synced = self.written;
        }
        Ok(())
    }
    fn describe(&self) -> String {
        format!("writing {}", self.path.display())
    }
}

/// The hashing side of a copy: hashes what it is given and puts it in its sink. It lives as long
/// as the blob is being written, so a write that arrives in pieces over several streams keeps
/// its hash state instead of re-reading what it has.
pub(crate) struct Copier<S> {
    hasher: Hasher,
    head: Vec<u8>,
    sink: S,
}

impl<S: Sink> Copier<S> {
    pub(crate) fn new(sink: S) -> Self {
        Copier {
            hasher: Hasher::default(),
            head: Vec::with_capacity(4),
            sink,
        }
    }

    /// Hashes and stores the next bytes. Blocks on the sink: call it off the async threads.
    pub(crate) fn put(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.head.len() < 4 {
            let want = 4 - self.head.len();
            self.head.extend(buf.iter().take(want));
        }
        for slice in buf.chunks(CHUNK) {
            self.hasher.update(slice);
        }
        self.sink.put(buf)
    }

    /// Bytes put so far.
    pub(crate) fn len(&self) -> u64 {
        self.hasher.len()
    }

    /// What was hashed, and the sink.
    pub(crate) fn finish(self) -> (Hashed, S) {
        let len = self.hasher.len();
        let hashed = Hashed {
            digest: self.hasher.finish(),
            len,
            compression: Compression::sniff(&self.head),
        };
        (hashed, self.sink)
    }
}

/// Reads and hashes `reader` to its end without keeping it: to check bytes kept elsewhere.
pub(crate) async fn drain<R: AsyncRead + Unpin>(
    reader: &mut R,
    size_hint: u64,
    what: &str,
) -> Result<Hashed> {
    hash_copy(reader, size_hint, Discard, what).await
}

/// Copies `reader` into `sink`, hashing on the way. Read errors are the input's fault and write
/// errors the store's, so they come back as different variants.
pub(crate) async fn hash_copy<R: AsyncRead + Unpin, S: Sink>(
    reader: &mut R,
    size_hint: u64,
    sink: S,
    what: &str,
) -> Result<Hashed> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(HANDOFF_DEPTH);
    // Spent buffers go back to the reader: a copy reuses a fixed set instead of allocating 1 MiB
    // per handoff, which fragments the allocator's arenas and grows the daemon's RSS.
    let (spare_tx, mut spare_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(HANDOFF_DEPTH + 2);
    let describe = sink.describe();
    let worker = tokio::task::spawn_blocking(move || -> std::io::Result<Hashed> {
        let mut copier = Copier::new(sink);
        while let Some(buf) = rx.blocking_recv() {
            copier.put(&buf)?;
            let _ = spare_tx.try_send(buf);
        }
        Ok(copier.finish().0)
    });
    // No larger than the entry can fill: small blobs are common and a zeroed megabyte each made
    // archives of many small entries crawl.
    let want = HANDOFF.min(size_hint.saturating_add(1).try_into().unwrap_or(HANDOFF));
    let read_result: Result<()> = async {
        loop {
            let mut buf = match spare_rx.try_recv() {
                Ok(spare) if spare.len() >= want => spare,
                _ => vec![0u8; want],
            };
            let n = fill(reader, &mut buf[..want])
                .await
                .map_err(|e| match ended_early(&e) {
                    true => {
                        Error::invalid(format!("the input ends inside {what}: it is truncated"))
                    }
                    false => Error::invalid(format!("reading {what}: {e}")),
                })?;
            if n == 0 {
                return Ok(());
            }
            buf.truncate(n);
            if tx.send(buf).await.is_err() {
                // The worker stopped on a write error; it reports it below.
                return Ok(());
            }
        }
    }
    .await;
    drop(tx);
    let worked = worker.await.expect("hashing thread panicked");
    read_result?;
    worked.context(|| describe)
}

/// Reads until `buf` is full or the input ends.
pub(crate) async fn fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Asks the kernel to start writing back a range now, without waiting for it. Advisory: a
/// failure only means the final fsync does more of the work.
pub(super) fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor we own; it reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}
