//! Re-hashing stored blobs for `check`, on as many threads as the host has cores: at 100,000
//! images a check is mostly opening and reading small files, which one thread left the other
//! cores idle for.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::Blobs;
use super::copy::CHUNK;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::progress::CheckProgress;

/// A stored blob whose bytes no longer hash to its name.
pub(crate) struct Mismatch {
    pub(crate) name: Digest,
    pub(crate) actual: Digest,
}

impl Blobs {
    /// Re-hashes the blobs `digests` names and returns those whose bytes hash to something else,
    /// in the order of `digests`; `progress` counts them as they are done. Dropping the future
    /// stops the threads at their next blob.
    pub(crate) async fn rehash(
        &self,
        digests: Vec<Digest>,
        progress: CheckProgress,
    ) -> Result<Vec<Mismatch>> {
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let flag = stop.0.clone();
        let dir = self.dir.clone();
        progress.set_total(digests.len() as u64);
        tokio::task::spawn_blocking(move || rehash_all(&dir, &digests, &progress, &flag))
            .await
            .expect("check threads panicked")
    }
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The blobs shared out one at a time to a thread per core; the first error stops them all.
fn rehash_all(
    dir: &Path,
    digests: &[Digest],
    progress: &CheckProgress,
    stop: &AtomicBool,
) -> Result<Vec<Mismatch>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, digests.len().max(1));
    let next = AtomicUsize::new(0);
    let found: Vec<Result<Vec<(usize, Mismatch)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| rehash_shared(dir, digests, &next, progress, stop)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("check thread panicked"))
            .collect()
    });
    let mut mismatches = Vec::new();
    for f in found {
        mismatches.extend(f?);
    }
    mismatches.sort_by_key(|(i, _)| *i);
    Ok(mismatches.into_iter().map(|(_, m)| m).collect())
}

/// One thread's share: the next blob nobody has taken, until none is left.
fn rehash_shared(
    dir: &Path,
    digests: &[Digest],
    next: &AtomicUsize,
    progress: &CheckProgress,
    stop: &AtomicBool,
) -> Result<Vec<(usize, Mismatch)>> {
    let mut buf = vec![0u8; CHUNK];
    let mut mismatches = Vec::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(name) = digests.get(i) else {
            return Ok(mismatches);
        };
        let actual = hash_file(dir, name, &mut buf, progress).inspect_err(|_| {
            stop.store(true, Ordering::Relaxed);
        })?;
        progress.blob_done();
        if actual != *name {
            let name = name.clone();
            mismatches.push((i, Mismatch { name, actual }));
        }
    }
}

fn hash_file(
    dir: &Path,
    name: &Digest,
    buf: &mut [u8],
    progress: &CheckProgress,
) -> Result<Digest> {
    let path = dir.join(name.hex());
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Corrupt(format!("blob {name} is missing from the store"))
        }
        _ => Error::Io {
            context: format!("reading {}", path.display()),
            source: e,
        },
    };
    let mut file = std::fs::File::open(&path).map_err(failed)?;
    let mut hasher = Hasher::default();
    loop {
        let n = match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => read.map_err(failed)?,
        };
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
        progress.add_bytes(n as u64);
    }
}
