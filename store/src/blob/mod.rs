//! Content-addressed blob files: `blobs/sha256/<hex>`, written only through a [`Staging`] area and
//! made visible by rename once their digest has been checked.

mod copy;
mod kernel;
mod lease;
mod rehash;
mod space;
mod staging;
mod tally;
mod threads;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncReadExt;

pub(crate) use copy::{CHUNK, Copier, Writeback, drain, fill};
pub(crate) use kernel::{Body, Failed, copy_range};
pub(crate) use lease::Lease;
pub use space::Filesystem;
pub(crate) use staging::Staging;
pub use tally::{BlobCounts, Collected};
pub(crate) use threads::Threads;

use crate::decompress::Compression;
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::limits::MAX_JSON;

/// The blob directory plus the set of digests that in-flight loads and saves still need.
#[derive(Clone)]
pub(crate) struct Blobs {
    dir: PathBuf,
    ingest: PathBuf,
    pins: lease::Pins,
    tally: Arc<tally::Tally>,
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
            tally: Arc::new(tally::Tally::open(&dir)?),
            dir,
            ingest,
            pins: lease::Pins::default(),
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
                    Error::Corrupt(format!("blob {digest} is missing from the store"))
                }
                _ => Error::Io {
                    context: format!("opening {}", path.display()),
                    source: e,
                },
            })
    }

    /// Size and compression of a stored blob, from its file's length and first bytes.
    pub(crate) fn stored_info(&self, digest: &Digest) -> Result<BlobInfo> {
        use std::io::Read;
        let path = self.path(digest);
        let mut head = Vec::with_capacity(4);
        let size = fs::File::open(&path)
            .and_then(|f| {
                let size = f.metadata()?.len();
                f.take(4).read_to_end(&mut head)?;
                Ok(size)
            })
            .context(|| format!("reading {}", path.display()))?;
        Ok(BlobInfo {
            size,
            compression: Compression::sniff(&head),
        })
    }

    /// Reads a stored JSON document (manifest, index, config) whole and checks it is still what
    /// its digest names: a blob damaged on disk is reported, never parsed.
    pub(crate) async fn read_json(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.path(digest);
        let file = self.open_blob(digest).await?;
        let mut out = Vec::new();
        file.take(MAX_JSON + 1)
            .read_to_end(&mut out)
            .await
            .context(|| format!("reading {}", path.display()))?;
        checked_json(digest, out)
    }

    /// [`Blobs::read_json`] for callers off the async threads or reading small documents.
    pub(crate) fn read_json_now(&self, digest: &Digest) -> Result<Vec<u8>> {
        use std::io::Read;
        let path = self.path(digest);
        let mut out = Vec::new();
        fs::File::open(&path)
            .and_then(|f| f.take(MAX_JSON + 1).read_to_end(&mut out))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::Corrupt(format!("blob {digest} is missing from the store"))
                }
                _ => Error::Io {
                    context: format!("reading {}", path.display()),
                    source: e,
                },
            })?;
        checked_json(digest, out)
    }

    /// A new, empty set of pins, released when it drops.
    pub(crate) fn lease(&self) -> Lease {
        Lease::new(self.pins.clone())
    }

    /// Whether a load, save or create in flight has pinned any of `digests` now.
    pub(crate) fn pins_any(&self, digests: &[Digest]) -> bool {
        let pins = self.pins.lock().expect("pin lock poisoned");
        digests.iter().any(|d| pins.contains_key(d))
    }

    /// The digests loads, saves and creates in flight have pinned now.
    pub(crate) fn pinned(&self) -> std::collections::HashSet<Digest> {
        let pins = self.pins.lock().expect("pin lock poisoned");
        pins.keys().cloned().collect()
    }

    /// The size of the filesystem the blobs are on, and what is available of it.
    pub(crate) fn filesystem(&self) -> Result<Filesystem> {
        space::filesystem(&self.dir)
    }

    pub(crate) fn staging(&self) -> Result<Staging> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Staging::create(self.ingest.join(name))
    }

    /// Moves synced staged blobs into place and syncs the directory. Blobs are immutable, so a
    /// blob that is already there is kept and the staged copy dropped.
    pub(crate) fn publish(&self, staging: &Staging, digests: &[Digest]) -> Result<()> {
        for d in digests {
            if staging.contains(d) {
                self.place(&staging.path(d), d)?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Moves one synced file whose bytes hash to `digest` into place and syncs the directory;
    /// as for [`Blobs::publish`], a blob already there is kept and `from` left to its owner.
    pub(crate) fn publish_file(&self, from: &Path, digest: &Digest) -> Result<()> {
        self.place(from, digest)?;
        sync_dir(&self.dir)
    }

    fn place(&self, from: &Path, digest: &Digest) -> Result<()> {
        let _counted_once = self.tally.placing();
        if !self.exists(digest) {
            let to = self.path(digest);
            let size = fs::metadata(from).context(|| format!("publishing {}", to.display()))?;
            fs::rename(from, &to).context(|| format!("publishing {}", to.display()))?;
            self.tally.placed(size.len());
        }
        Ok(())
    }

    /// The size of a stored blob, or `None` when the store does not hold it.
    pub(crate) fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                context: format!("looking at {}", path.display()),
                source: e,
            }),
        }
    }

    /// The directory where content writes keep their partial files: under `ingest/`, so that
    /// start-up drops what a killed hyperd left.
    pub(crate) fn content_ingest(&self) -> PathBuf {
        self.ingest.join("content")
    }

    /// Deletes each of `candidates` that is stored and not pinned; returns those deleted and
    /// those a pin saved for now. The caller holds the commit lock.
    pub(crate) fn delete_unpinned(
        &self,
        candidates: &[Digest],
    ) -> Result<(Vec<Digest>, Vec<Digest>)> {
        let pins = self.pins.lock().expect("pin lock poisoned");
        let mut removed = Vec::new();
        let mut deferred = Vec::new();
        let mut sizes = Vec::new();
        for digest in candidates {
            let digest = digest.clone();
            if pins.contains_key(&digest) {
                deferred.push(digest);
                continue;
            }
            let path = self.path(&digest);
            let size = fs::metadata(&path).map_or(0, |m| m.len());
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed.push(digest);
                    sizes.push(size);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.tally.collected(&sizes);
                    return Err(e).context(|| format!("removing {}", path.display()));
                }
            }
        }
        drop(pins);
        self.tally.collected(&sizes);
        if !removed.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok((removed, deferred))
    }

    /// How many blobs are stored and their bytes, and what collections deleted.
    pub(crate) fn counts(&self) -> BlobCounts {
        self.tally.counts()
    }

    /// Each collection that deletes blobs from now on.
    pub(crate) fn collections(&self) -> tokio::sync::broadcast::Receiver<Collected> {
        self.tally.collections()
    }

    /// Every stored blob, in digest order. Files not named by a digest are not ours to judge and
    /// never blobs: they are left out (and left alone).
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

/// A stored JSON document, checked to be under the size limit and still what its digest names.
fn checked_json(digest: &Digest, out: Vec<u8>) -> Result<Vec<u8>> {
    if out.len() as u64 > MAX_JSON {
        return Err(Error::Corrupt(format!(
            "stored blob {digest} is read as JSON but is over the {MAX_JSON}-byte limit"
        )));
    }
    let actual = Digest::of(&out);
    if actual != *digest {
        return Err(Error::Corrupt(format!(
            "stored blob {digest} no longer matches its digest (its bytes hash to {actual})"
        )));
    }
    Ok(out)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("syncing {}", dir.display()))
}
