//! How big the filesystem holding the blobs is, and how much of it is free: what the GC
//! policy's watermarks are measured against.

use std::path::Path;

use crate::error::{IoContext, Result};

/// The size of a filesystem, and what is free of it for unprivileged users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filesystem {
    /// Its size in bytes.
    pub size: u64,
    /// Bytes an unprivileged user may still write (`df`'s Avail).
    pub available: u64,
}

impl Filesystem {
    /// Bytes not available: in use, or reserved for root. The kubelet counts use as this
    /// share of the size, and so does the GC policy.
    pub fn used(&self) -> u64 {
        self.size.saturating_sub(self.available)
    }
}

/// The filesystem `dir` is on.
pub(super) fn filesystem(dir: &Path) -> Result<Filesystem> {
    let fs = rustix::fs::statvfs(dir)
        .map_err(std::io::Error::from)
        .context(|| format!("reading the size of {}'s filesystem", dir.display()))?;
    Ok(Filesystem {
        size: fs.f_blocks.saturating_mul(fs.f_frsize),
        available: fs.f_bavail.saturating_mul(fs.f_frsize),
    })
}
