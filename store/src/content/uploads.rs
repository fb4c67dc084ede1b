//! Uploads: blobs whose digest is told only after their last byte, as the distribution spec's
//! push sends them (POST, then PATCH after PATCH, then PUT with `?digest=`). As with a content
//! write, the partial file lives under `ingest/content/` (dropped at start-up) and is hashed as
//! it arrives; nothing reaches `blobs/` before the digest it is finished with was checked.
//!
//! One request at a time appends to an upload: it checks the upload out and hands it back when
//! it drops. An upload that received no bytes for [`UPLOAD_IDLE_SECS`] is dropped when the next
//! one begins, so abandoned uploads cost disk for a bounded time without a timer. Each open
//! upload keeps its file open: [`crate::limits::MAX_OPEN_UPLOADS`] bounds those descriptors.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Verified;
use super::rules;
use super::write::Partial;
use crate::blob::{Copier, Writeback};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::limits::{MAX_OPEN_UPLOADS, MAX_WRITE_TOTAL, UPLOAD_IDLE_SECS};

pub(crate) struct Uploads {
    dir: PathBuf,
    open: Mutex<HashMap<String, Slot>>,
    /// Numbers each partial file, so that no two writers ever share one.
    next_file: AtomicU64,
}

struct Slot {
    /// `None` while a request has it checked out.
    writer: Option<UploadWriter>,
    /// When bytes last arrived, as of the last check-in.
    written_at: Instant,
}

/// An upload's partial file and hash state.
struct UploadWriter {
    copier: Copier<Writeback>,
    partial: Partial,
    /// When bytes last arrived: only bytes keep an upload from being dropped as idle, not a
    /// request that sends none.
    written_at: Instant,
}

/// One request's hold on an upload. Dropped, it hands the upload back for the next request,
/// unless it was cancelled meanwhile: then its file goes.
pub(crate) struct UploadCheckout {
    uploads: Arc<Uploads>,
    id: String,
    writer: Option<UploadWriter>,
}

impl Uploads {
    /// The uploads kept in `dir`, which the first write creates.
    pub(crate) fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(Uploads {
            dir,
            open: Mutex::new(HashMap::new()),
            next_file: AtomicU64::new(0),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.open.lock().expect("uploads lock poisoned")
    }

    /// Opens an empty upload under `id`, a name the caller made unguessable. Blocks on creating
    /// its file (and on removing idle ones).
    pub(crate) fn begin(&self, id: &str) -> Result<()> {
        rules::check_ref(id)?;
        let idle: Vec<Slot> = {
            let mut table = self.table();
            let cutoff = Duration::from_secs(UPLOAD_IDLE_SECS);
            let stale: Vec<String> = table
                .iter()
                .filter(|(_, s)| s.writer.is_some() && s.written_at.elapsed() >= cutoff)
                .map(|(id, _)| id.clone())
                .collect();
            stale.iter().filter_map(|id| table.remove(id)).collect()
        };
        if !idle.is_empty() {
            tracing::info!(uploads = idle.len(), "dropped idle uploads");
        }
        drop(idle);
        {
            let table = self.table();
            if table.contains_key(id) {
                return Err(Error::Conflict(format!("an upload {id:?} is open already")));
            }
            if table.len() >= MAX_OPEN_UPLOADS {
                return Err(Error::ResourceExhausted(format!(
                    "{MAX_OPEN_UPLOADS} uploads are open: finish or cancel one first"
                )));
            }
        }
        std::fs::create_dir_all(&self.dir)
            .context(|| format!("creating {}", self.dir.display()))?;
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("upload-{n}"));
        let writer = UploadWriter {
            copier: Copier::new(Writeback::create(path.clone())?),
            partial: Partial(path),
            written_at: Instant::now(),
        };
        let slot = Slot {
            writer: Some(writer),
            written_at: Instant::now(),
        };
        match self.table().entry(id.to_owned()) {
            std::collections::hash_map::Entry::Occupied(_) => {
                Err(Error::Conflict(format!("an upload {id:?} is open already")))
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(slot);
                Ok(())
            }
        }
    }

    /// Takes the upload `id` for one request.
    pub(crate) fn checkout(self: &Arc<Self>, id: &str) -> Result<UploadCheckout> {
        let mut table = self.table();
        let slot = table
            .get_mut(id)
            .ok_or_else(|| Error::NotFound(format!("no upload {id:?}")))?;
        let writer = slot.writer.take().ok_or_else(|| {
            Error::Conflict(format!("upload {id:?} is being written by another request"))
        })?;
        Ok(UploadCheckout {
            uploads: self.clone(),
            id: id.to_owned(),
            writer: Some(writer),
        })
    }

    /// Drops the upload `id`, with its file; a request holding it finds out when it ends.
    pub(crate) fn cancel(&self, id: &str) -> Result<()> {
        let slot = self.table().remove(id);
        match slot {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("no upload {id:?}"))),
        }
    }
}

impl UploadCheckout {
    fn writer(&mut self) -> &mut UploadWriter {
        self.writer.as_mut().expect("a checkout holds its writer")
    }

    /// Bytes received so far.
    pub(crate) fn offset(&self) -> u64 {
        self.writer.as_ref().map_or(0, |w| w.copier.len())
    }

    /// Hashes and writes the next bytes. Blocks on the file: call it off the async threads.
    pub(crate) fn put(&mut self, buf: &[u8]) -> Result<()> {
        if self.offset().saturating_add(buf.len() as u64) > MAX_WRITE_TOTAL {
            return Err(Error::InvalidArgument(format!(
                "upload {:?} would pass the {MAX_WRITE_TOTAL}-byte limit for a blob",
                self.id
            )));
        }
        let writer = self.writer();
        writer.written_at = Instant::now();
        let path = &writer.partial.0;
        writer
            .copier
            .put(buf)
            .context(|| format!("writing {}", path.display()))
    }

    /// Ends the upload: its bytes must hash to `digest`. Checked, the file is synced and
    /// handed over to be published; either way the upload is gone. Blocks on the file.
    pub(crate) fn finish(mut self, digest: &Digest) -> Result<Verified> {
        let writer = self.writer.take().expect("a checkout holds its writer");
        self.uploads.table().remove(&self.id);
        let (hashed, sink) = writer.copier.finish();
        hashed.verify(hashed.len, digest, &format!("upload {:?}", self.id))?;
        sink.sync()?;
        Ok(Verified::new(writer.partial, digest.clone()))
    }
}

impl Drop for UploadCheckout {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let mut table = self.uploads.table();
        match table.get_mut(&self.id) {
            Some(slot) if slot.writer.is_none() => {
                slot.written_at = writer.written_at;
                slot.writer = Some(writer);
            }
            // Cancelled meanwhile: the writer, and its file, go (outside the lock).
            _ => {
                drop(table);
                drop(writer);
            }
        }
    }
}
