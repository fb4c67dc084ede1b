//! One blob written in pieces: its partial file, its hash state, and what it must turn out to be.
//! Nothing is visible until [`Writer::finish`] has verified and synced it and the caller has
//! published it. Anything that receives a blob in pieces writes through this (the content API;
//! registry pulls later).

use std::path::{Path, PathBuf};

use crate::blob::{Copier, Writeback};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};

/// A blob being written. Its methods block on the file: call them off the async threads.
pub(crate) struct Writer {
    copier: Copier<Writeback>,
    partial: Partial,
    expected: Digest,
    total: u64,
}

/// The partial file, removed when it drops; once published it is gone and there is nothing left
/// to remove.
pub(super) struct Partial(pub(super) PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.0.display(), error = %e, "could not remove partial blob");
            }
            _ => {}
        }
    }
}

/// A written blob whose size and digest were checked and whose bytes are on disk, ready to be
/// published; dropped unpublished, its file goes.
pub(crate) struct Verified {
    partial: Partial,
    pub(crate) digest: Digest,
}

impl Verified {
    pub(super) fn new(partial: Partial, digest: Digest) -> Self {
        Verified { partial, digest }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.partial.0
    }
}

impl Writer {
    /// A new, empty write at `path` of `total` bytes that must hash to `expected`.
    pub(crate) fn create(path: PathBuf, expected: Digest, total: u64) -> Result<Self> {
        let sink = Writeback::create(path.clone())?;
        Ok(Writer {
            copier: Copier::new(sink),
            partial: Partial(path),
            expected,
            total,
        })
    }

    /// Bytes written so far.
    pub(crate) fn offset(&self) -> u64 {
        self.copier.len()
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.offset() == self.total
    }

    /// Hashes and writes the next bytes; refused, with nothing written, past the total.
    pub(crate) fn put(&mut self, buf: &[u8]) -> Result<()> {
        let end = self.offset().saturating_add(buf.len() as u64);
        if end > self.total {
            return Err(Error::InvalidArgument(format!(
                "{} bytes at offset {} reach past the total of {} bytes of {}",
                buf.len(),
                self.offset(),
                self.total,
                self.expected
            )));
        }
        let path = &self.partial.0;
        self.copier
            .put(buf)
            .context(|| format!("writing {}", path.display()))
    }

    /// Checks size and sha256 against what the write promised and syncs the file.
    pub(crate) fn finish(self, what: &str) -> Result<Verified> {
        let (hashed, sink) = self.copier.finish();
        hashed.verify(self.total, &self.expected, what)?;
        sink.sync()?;
        Ok(Verified {
            partial: self.partial,
            digest: self.expected,
        })
    }
}
