//! Content-addressed blob files: `blobs/sha256/<hex>`, written only through a [`Staging`] area and
//! made visible by rename once their digest has been checked.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::io::Write;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::digest::{Digest, Hasher};
use crate::error::IoContext;
use crate::{Error, Result};

/// Read and hash in slices that fit in L2 (FACTS.md: sha256 is fastest fed 128-256 KiB at a time).
pub(crate) const CHUNK: usize = 256 * 1024;

/// The blob directory plus the set of digests that in-flight loads and saves still need.
#[derive(Clone)]
pub(crate) struct Blobs {
    dir: PathBuf,
    ingest: PathBuf,
    pins: Arc<Mutex<HashMap<Digest, usize>>>,
}

/// First bytes of a blob, enough to tell gzip and zstd from plain tar.
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

/// A blob the current load holds: staged by it, or already in the store and pinned.
#[derive(Clone, Debug)]
pub(crate) struct BlobInfo {
    pub(crate) size: u64,
    pub(crate) compression: Compression,
}

impl Blobs {
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let dir = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        // Whatever a killed load left in ingest/ was never visible: drop it all.
        if ingest.exists() {
            fs::remove_dir_all(&ingest).context(|| format!("cleaning {}", ingest.display()))?;
        }
        for d in [&dir, &ingest] {
            fs::create_dir_all(d).context(|| format!("creating {}", d.display()))?;
        }
        Ok(Blobs {
            dir,
            ingest,
            pins: Arc::default(),
        })
    }

    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub(crate) fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub(crate) async fn open_blob(&self, digest: &Digest) -> Result<tokio::fs::File> {
        let path = self.path(digest);
        tokio::fs::File::open(&path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::NotFound(format!("blob {digest} is missing"))
                }
                _ => Error::Io {
                    context: format!("opening {}", path.display()),
                    source: e,
                },
            })
    }

    /// Reads a small blob whole, refusing one larger than `cap`.
    pub(crate) async fn read_small(&self, digest: &Digest, cap: u64) -> Result<Vec<u8>> {
        read_capped(&self.path(digest), cap).await
    }

    /// Pins `digests` so that collection keeps them until the lease drops. Returns which of them
    /// are present; pin first, look second, so a collection can never slip in between.
    pub(crate) fn lease(&self) -> Lease {
        Lease {
            pins: self.pins.clone(),
            held: Vec::new(),
        }
    }

    pub(crate) fn staging(&self) -> Result<Staging> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.ingest.join(name);
        fs::create_dir(&dir).context(|| format!("creating {}", dir.display()))?;
        Ok(Staging {
            dir,
            staged: HashMap::new(),
            next_tmp: 0,
        })
    }

    /// Moves synced staged blobs into place and syncs the directory. Blobs are immutable, so a
    /// blob that is already there is kept and the staged copy dropped.
    pub(crate) fn publish(&self, staging: &Staging, digests: &[Digest]) -> Result<()> {
        for d in digests {
            if staging.staged.contains_key(d) && !self.exists(d) {
                let from = staging.dir.join(d.hex());
                let to = self.path(d);
                fs::rename(&from, &to).context(|| format!("publishing {}", to.display()))?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Deletes every blob that is neither in `keep` nor pinned, and counts the unreferenced ones
    /// a pin saved for now. The caller holds the commit lock.
    pub(crate) fn collect(
        &self,
        keep: &std::collections::HashSet<Digest>,
    ) -> Result<(Vec<Digest>, usize)> {
        let pins = self.pins.lock().expect("pin lock poisoned");
        let mut removed = Vec::new();
        let mut deferred = 0;
        for entry in
            fs::read_dir(&self.dir).context(|| format!("listing {}", self.dir.display()))?
        {
            let entry = entry.context(|| format!("listing {}", self.dir.display()))?;
            let name = entry.file_name();
            let Some(digest) = name.to_str().and_then(|n| Digest::from_hex(n).ok()) else {
                // Not ours to judge (and never a blob): leave it.
                continue;
            };
            if keep.contains(&digest) {
                continue;
            }
            if pins.contains_key(&digest) {
                deferred += 1;
                continue;
            }
            fs::remove_file(entry.path())
                .context(|| format!("removing {}", entry.path().display()))?;
            removed.push(digest);
        }
        drop(pins);
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok((removed, deferred))
    }

    pub(crate) fn all(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in
            fs::read_dir(&self.dir).context(|| format!("listing {}", self.dir.display()))?
        {
            let entry = entry.context(|| format!("listing {}", self.dir.display()))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Digests pinned against collection; unpinned on drop.
pub(crate) struct Lease {
    pins: Arc<Mutex<HashMap<Digest, usize>>>,
    held: Vec<Digest>,
}

impl Lease {
    /// Pins `digest`, then reports whether the store already holds it.
    pub(crate) fn pin(&mut self, blobs: &Blobs, digest: &Digest) -> bool {
        let mut pins = self.pins.lock().expect("pin lock poisoned");
        *pins.entry(digest.clone()).or_default() += 1;
        self.held.push(digest.clone());
        // Checked under the pin lock: a collection holds it while it deletes.
        blobs.exists(digest)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().expect("pin lock poisoned");
        for d in &self.held {
            if let Some(n) = pins.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(d);
                }
            }
        }
    }
}

/// A private directory under `ingest/` where one load writes its blobs; removed on drop.
pub(crate) struct Staging {
    dir: PathBuf,
    staged: HashMap<Digest, BlobInfo>,
    next_tmp: u64,
}

impl Staging {
    /// Streams exactly `size` bytes from `reader` into a staged blob, hashing as it writes, and
    /// checks the result against `expected` when the name promised a digest.
    pub(crate) async fn write<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        size: u64,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<Digest> {
        self.next_tmp += 1;
        let tmp = self.dir.join(format!("tmp-{}", self.next_tmp));
        let file = std::fs::File::create(&tmp).context(|| format!("creating {}", tmp.display()))?;
        let (digest, len, compression) = hash_copy(reader, size, Some(file), what, &tmp).await?;
        if len != size {
            return Err(Error::invalid(format!(
                "{what}: expected {size} bytes, got {len}"
            )));
        }
        if let Some(expected) = expected
            && *expected != digest
        {
            return Err(Error::DigestMismatch {
                what: what.to_owned(),
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
        let dest = self.dir.join(digest.hex());
        tokio::fs::rename(&tmp, &dest)
            .await
            .context(|| format!("renaming {}", tmp.display()))?;
        self.staged
            .insert(digest.clone(), BlobInfo { size, compression });
        Ok(digest)
    }

    pub(crate) fn get(&self, digest: &Digest) -> Option<&BlobInfo> {
        self.staged.get(digest)
    }

    /// Syncs the staged blobs among `digests`, before a commit publishes them. Staged blobs are
    /// synced here rather than as they stream, so that entries no image references
    /// (docker-archive bookkeeping, junk) never cost an fsync; writeback of the large ones
    /// started while they streamed. Runs outside the commit lock: the staging area is private.
    pub(crate) async fn sync(&self, digests: &[Digest]) -> Result<()> {
        let paths: Vec<PathBuf> = digests
            .iter()
            .filter(|d| self.staged.contains_key(d))
            .map(|d| self.path(d))
            .collect();
        tokio::task::spawn_blocking(move || {
            for path in paths {
                fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .context(|| format!("syncing {}", path.display()))?;
            }
            Ok(())
        })
        .await
        .expect("sync thread panicked")
    }

    pub(crate) fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove staging directory");
        }
    }
}

/// Reads and hashes `reader` to its end without keeping it: for blobs the store already holds.
pub(crate) async fn drain<R: AsyncRead + Unpin>(
    reader: &mut R,
    size_hint: u64,
    what: &str,
) -> Result<(Digest, u64, Compression)> {
    hash_copy(reader, size_hint, None, what, Path::new("(not written)")).await
}

/// Bytes handed from the reading task to the hashing thread at a time.
const HANDOFF: usize = 1 << 20;
/// Buffers in flight between them: bounds a copy's memory to a few MiB.
const HANDOFF_DEPTH: usize = 4;
/// Dirty bytes after which writeback of a blob is started, so that the fsync when a commit
/// publishes it finds little left to do instead of the whole blob.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Copies `reader` into `file` (or nowhere), hashing on the way. The async side only reads; a
/// blocking thread hashes and writes, so the two overlap on two cores. Read errors are the
/// archive's fault and write errors the store's, so they come back as different variants.
async fn hash_copy<R: AsyncRead + Unpin>(
    reader: &mut R,
    size_hint: u64,
    file: Option<std::fs::File>,
    what: &str,
    dest: &Path,
) -> Result<(Digest, u64, Compression)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(HANDOFF_DEPTH);
    // Spent buffers go back to the reader: a copy reuses a fixed set instead of allocating 1 MiB
    // per handoff, which fragments the allocator's arenas and grows the daemon's RSS.
    let (spare_tx, mut spare_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(HANDOFF_DEPTH + 2);
    let worker =
        tokio::task::spawn_blocking(move || -> std::io::Result<(Digest, u64, Compression)> {
            let mut file = file;
            let mut hasher = Hasher::default();
            let mut head = Vec::with_capacity(4);
            let mut synced = 0;
            while let Some(buf) = rx.blocking_recv() {
                if head.len() < 4 {
                    head.extend(buf.iter().take(4 - head.len()));
                }
                for slice in buf.chunks(CHUNK) {
                    hasher.update(slice);
                }
                if let Some(f) = &mut file {
                    f.write_all(&buf)?;
                    if hasher.len() - synced >= WRITEBACK_STEP {
                        start_writeback(f, synced, hasher.len() - synced);
                        synced = hasher.len();
                    }
                }
                let _ = spare_tx.try_send(buf);
            }
            let len = hasher.len();
            Ok((hasher.finish(), len, Compression::sniff(&head)))
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
                .map_err(|e| Error::invalid(format!("reading {what}: {e}")))?;
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
    worked.context(|| format!("writing {}", dest.display()))
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
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
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

pub(crate) async fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>> {
    let file = tokio::fs::File::open(path)
        .await
        .context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut out)
        .await
        .context(|| format!("reading {}", path.display()))?;
    if out.len() as u64 > cap {
        return Err(Error::invalid(format!(
            "{} is larger than the {cap}-byte limit for JSON documents",
            path.display()
        )));
    }
    Ok(out)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("syncing {}", dir.display()))
}
