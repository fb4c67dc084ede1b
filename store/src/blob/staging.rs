//! A load's private staging directory under `ingest/`: blobs land here, hashed as they stream,
//! and move into `blobs/sha256/` only when the load commits.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::PathBuf;

use tokio::io::AsyncRead;

use super::BlobInfo;
use super::copy::{Hashed, Writeback, hash_copy};
use super::kernel::{Body, copy_hashed};
use crate::digest::Digest;
use crate::error::{IoContext, Result};

/// A blob staged under the digest its bytes hash to.
pub(crate) struct Staged {
    pub(crate) digest: Digest,
    pub(crate) info: BlobInfo,
}

/// From this many staged files on, a load syncs them with one `syncfs(2)` instead of an fsync
/// each. On ext4 every fsync of a new file is a journal commit of its own (about 2 ms here), so a
/// load of 5,000 tiny images spent most of its time in 10,000 of them; one syncfs commits the
/// journal once. Below this a few fsyncs cost less than writing back whatever else the
/// filesystem has dirty.
const SYNCFS_FROM: usize = 16;

/// A private directory under `ingest/` where one load writes its blobs; removed on drop.
pub(crate) struct Staging {
    dir: PathBuf,
    /// The directory, opened before any blob was staged: `syncfs` on it reports every writeback
    /// error of the filesystem since it was opened (Linux 5.8 on), so a staged blob that did not
    /// reach the disk fails the load.
    handle: fs::File,
    staged: HashMap<Digest, BlobInfo>,
    next_tmp: u64,
}

impl Staging {
    pub(super) fn create(dir: PathBuf) -> Result<Self> {
        fs::create_dir(&dir).context(|| format!("creating {}", dir.display()))?;
        let handle = fs::File::open(&dir).context(|| format!("opening {}", dir.display()))?;
        Ok(Staging {
            dir,
            handle,
            staged: HashMap::new(),
            next_tmp: 0,
        })
    }

    /// Stages exactly `size` bytes that their name promised hash to `digest`; refused otherwise.
    pub(crate) async fn write_verified<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        size: u64,
        digest: &Digest,
        what: &str,
    ) -> Result<BlobInfo> {
        let staged = self
            .stage(reader, size, what, |h| h.verify(size, digest, what))
            .await?;
        Ok(staged.info)
    }

    /// Stages exactly `size` bytes that promise no digest (docker-archive paths, a generated
    /// manifest), named by what they hash to.
    pub(crate) async fn write_unnamed<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        size: u64,
        what: &str,
    ) -> Result<Staged> {
        self.stage(reader, size, what, |h| h.check_size(size, what))
            .await
    }

    /// [`Staging::write_verified`] for a body in a file the client handed over, copied by the
    /// kernel.
    pub(crate) async fn copy_verified(
        &mut self,
        body: Body,
        digest: &Digest,
        what: &str,
    ) -> Result<BlobInfo> {
        let size = body.len;
        let tmp = self.next_tmp();
        let hashed = copy_blocking(body, tmp.clone(), what).await?;
        let staged = self
            .keep(tmp, hashed, |h| h.verify(size, digest, what))
            .await?;
        Ok(staged.info)
    }

    /// [`Staging::write_unnamed`] for a body in a file the client handed over.
    pub(crate) async fn copy_unnamed(&mut self, body: Body, what: &str) -> Result<Staged> {
        let size = body.len;
        let tmp = self.next_tmp();
        let hashed = copy_blocking(body, tmp.clone(), what).await?;
        self.keep(tmp, hashed, |h| h.check_size(size, what)).await
    }

    async fn stage<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        size: u64,
        what: &str,
        check: impl FnOnce(&Hashed) -> Result<()>,
    ) -> Result<Staged> {
        let tmp = self.next_tmp();
        let hashed = hash_copy(reader, size, Writeback::create(tmp.clone())?, what).await?;
        self.keep(tmp, hashed, check).await
    }

    fn next_tmp(&mut self) -> PathBuf {
        self.next_tmp += 1;
        self.dir.join(format!("tmp-{}", self.next_tmp))
    }

    /// Names a hashed temporary file by its digest once `check` passes.
    async fn keep(
        &mut self,
        tmp: PathBuf,
        hashed: Hashed,
        check: impl FnOnce(&Hashed) -> Result<()>,
    ) -> Result<Staged> {
        check(&hashed)?;
        let dest = self.path(&hashed.digest);
        tokio::fs::rename(&tmp, &dest)
            .await
            .context(|| format!("renaming {}", tmp.display()))?;
        let info = hashed.info();
        self.staged.insert(hashed.digest.clone(), info.clone());
        Ok(Staged {
            digest: hashed.digest,
            info,
        })
    }

    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.staged.contains_key(digest)
    }

    /// Syncs the staged blobs among `digests`, before a commit publishes them: an fsync each, or
    /// from [`SYNCFS_FROM`] of them one `syncfs` of the filesystem that holds them. Staged blobs
    /// are synced here rather than as they stream, so that a few fsyncs (or one syncfs) do the
    /// work of many, and entries no image references (docker-archive bookkeeping, junk) cost
    /// no fsync of their own; writeback of the large ones started while they streamed. Runs outside
    /// the commit lock: the staging area is private.
    pub(crate) async fn sync(&self, digests: &[Digest]) -> Result<()> {
        let staged: HashSet<&Digest> = digests.iter().filter(|d| self.contains(d)).collect();
        if staged.is_empty() {
            return Ok(());
        }
        if staged.len() >= SYNCFS_FROM {
            let handle = self
                .handle
                .try_clone()
                .context(|| format!("opening {}", self.dir.display()))?;
            let dir = self.dir.clone();
            return tokio::task::spawn_blocking(move || {
                rustix::fs::syncfs(&handle)
                    .map_err(std::io::Error::from)
                    .context(|| format!("syncing the blobs staged in {}", dir.display()))
            })
            .await
            .expect("sync thread panicked");
        }
        let paths: Vec<PathBuf> = staged.into_iter().map(|d| self.path(d)).collect();
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

/// The copy on one of the load's threads, which stops with the load.
async fn copy_blocking(body: Body, tmp: PathBuf, what: &str) -> Result<Hashed> {
    let what = what.to_owned();
    let threads = body.threads.clone();
    threads
        .run(move |stop| copy_hashed(&body, &tmp, &what, stop))
        .await
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove staging directory");
        }
    }
}
