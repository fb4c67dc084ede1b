//! The open content writes, by owner and ref: each uid has refs of its own, so another's are
//! absent to it (hyperd's own writes, a pull's, have no owner). A stream checks a write out to append to it and hands it back
//! when it ends, so a second stream on the same ref meanwhile is refused. Abort and expiry take
//! a write out of the table, which ends a stream holding it. The table's lock is held for map
//! updates only: files are created and removed outside it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::rules::{self, Start};
use super::{Verified, Writer, expiry};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::limits::{MAX_OPEN_WRITES, MAX_OPEN_WRITES_PER_OWNER};

/// Who opened a write: a client's uid, or `None` for hyperd's own.
pub(crate) type Owner = Option<u32>;

/// A write's key: refs are per owner.
type Key = (Owner, String);

fn key(owner: Owner, reference: &str) -> Key {
    (owner, reference.to_owned())
}

/// Where an open write stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteStatus {
    /// The ref the client named it by.
    pub reference: String,
    /// The digest its bytes must hash to.
    pub expected: Digest,
    /// Its size when complete.
    pub total: u64,
    /// Bytes received so far.
    pub offset: u64,
    /// When it was started, unix seconds.
    pub started_at: i64,
    /// When it last received bytes or a stream, unix seconds.
    pub updated_at: i64,
}

pub(crate) struct Writes {
    dir: PathBuf,
    open: Mutex<HashMap<Key, Slot>>,
    next_id: AtomicU64,
}

struct Slot {
    /// Tells a checkout whether the slot it came from is still the one under its ref.
    id: u64,
    status: WriteStatus,
    /// When it last received bytes or a stream, unix milliseconds: whole seconds would let a
    /// write touched late in a second expire up to a second early.
    touched_ms: i64,
    /// `None` while a stream has it checked out.
    writer: Option<Writer>,
    abort: watch::Sender<bool>,
}

impl Slot {
    /// Ends the stream holding this write, if any; the writer (and so the file) goes with the
    /// slot, or with the checkout when it drops. Call it with the table unlocked: it may remove
    /// the file.
    fn abort(self) {
        let _ = self.abort.send(true);
    }

    fn touch(&mut self, now_ms: i64) {
        self.touched_ms = now_ms;
        self.status.updated_at = now_ms.div_euclid(1000);
    }
}

impl Writes {
    /// The writes kept in `dir`, which the first write creates: an idle store's `ingest/` stays
    /// empty.
    pub(crate) fn new(dir: PathBuf) -> Arc<Self> {
        Arc::new(Writes {
            dir,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// How many writes are open.
    pub(crate) fn count(&self) -> u64 {
        self.table().len() as u64
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.open.lock().expect("content writes lock poisoned")
    }

    /// Takes `owner`'s write under `reference` for one stream: a new one, the open one
    /// restarted, or the open one resumed, as [`rules::start`] decides. `now_ms` is unix
    /// milliseconds.
    pub(crate) fn checkout(
        self: &Arc<Self>,
        owner: Owner,
        reference: &str,
        expected: &Digest,
        total: u64,
        offset: u64,
        now_ms: i64,
    ) -> Result<Checkout> {
        rules::check_ref(reference)?;
        let key = key(owner, reference);
        let mut table = self.table();
        let open = table.get_mut(&key);
        if open.as_ref().is_some_and(|s| s.writer.is_none()) {
            return Err(Error::Conflict(format!(
                "ref {reference:?} is being written by another client"
            )));
        }
        let start = rules::start(open.as_ref().map(|s| &s.status), expected, total, offset)?;
        if let (Start::Resume, Some(slot)) = (&start, open) {
            slot.touch(now_ms);
            return Ok(Checkout {
                writes: self.clone(),
                key,
                id: slot.id,
                writer: slot.writer.take(),
                aborted: slot.abort.subscribe(),
            });
        }
        if start == Start::New {
            check_room(&table, owner)?;
        }
        let replaced = table.remove(&key);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (abort, aborted) = watch::channel(false);
        // The slot is reserved checked out, so that no other stream takes the ref while this
        // one creates the file.
        table.insert(
            key.clone(),
            Slot {
                id,
                status: WriteStatus {
                    reference: reference.to_owned(),
                    expected: expected.clone(),
                    total,
                    offset: 0,
                    started_at: now_ms.div_euclid(1000),
                    updated_at: now_ms.div_euclid(1000),
                },
                touched_ms: now_ms,
                writer: None,
                abort,
            },
        );
        drop(table);
        if let Some(replaced) = replaced {
            replaced.abort();
        }
        // Without a writer, a checkout that drops gives its slot up: a failure below leaves
        // nothing under the ref.
        let mut checkout = Checkout {
            writes: self.clone(),
            key,
            id,
            writer: None,
            aborted,
        };
        // Named by a hash of the ref, which may hold any character, and by the slot: a stream
        // still holding an aborted write under the same ref removes its own file, not this one.
        let name = format!("{}-{id}", Digest::of(reference.as_bytes()).hex());
        std::fs::create_dir_all(&self.dir)
            .context(|| format!("creating {}", self.dir.display()))?;
        checkout.writer = Some(Writer::create(
            self.dir.join(name),
            expected.clone(),
            total,
        )?);
        Ok(checkout)
    }

    /// Where `owner`'s write under `reference` stands.
    pub(crate) fn status(&self, owner: Owner, reference: &str) -> Option<WriteStatus> {
        self.table()
            .get(&key(owner, reference))
            .map(|s| s.status.clone())
    }

    /// Drops `owner`'s write under `reference`; a stream writing it ends with ABORTED. False
    /// when there was none.
    pub(crate) fn abort(&self, owner: Owner, reference: &str) -> bool {
        let slot = self.table().remove(&key(owner, reference));
        slot.map(Slot::abort).is_some()
    }

    /// Drops `owner`'s write under `reference` if it is open and no stream is writing it.
    pub(crate) fn drop_idle(&self, owner: Owner, reference: &str) {
        let key = key(owner, reference);
        let mut table = self.table();
        let slot = match table.get(&key) {
            Some(s) if s.writer.is_some() => table.remove(&key),
            _ => None,
        };
        drop(table);
        if let Some(slot) = slot {
            slot.abort();
        }
    }

    /// Drops every write idle for `idle` seconds at `now_ms`, and names them.
    pub(crate) fn drop_expired(&self, idle: u64, now_ms: i64) -> Vec<String> {
        let mut table = self.table();
        let expired: Vec<Key> = table
            .iter()
            .filter(|(_, s)| expiry::write_expired(s.touched_ms, idle, now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        let slots: Vec<Slot> = expired.iter().filter_map(|k| table.remove(k)).collect();
        drop(table);
        slots.into_iter().for_each(Slot::abort);
        expired.into_iter().map(|(_, r)| r).collect()
    }

    /// When each open write was last touched, unix milliseconds.
    pub(crate) fn touched_ms(&self) -> Vec<i64> {
        self.table().values().map(|s| s.touched_ms).collect()
    }
}

/// Refuses a new write past `owner`'s quota (a client's) or past the total.
fn check_room(table: &HashMap<Key, Slot>, owner: Owner) -> Result<()> {
    if let Some(uid) = owner {
        let open = table.keys().filter(|(o, _)| *o == owner).count();
        if open >= MAX_OPEN_WRITES_PER_OWNER {
            return Err(Error::QuotaExceeded(format!(
                "uid {uid} has {MAX_OPEN_WRITES_PER_OWNER} writes open, its quota; finish or \
                 abort some first"
            )));
        }
    }
    if table.len() >= MAX_OPEN_WRITES {
        return Err(Error::ResourceExhausted(format!(
            "{MAX_OPEN_WRITES} writes are open; finish or abort some first"
        )));
    }
    Ok(())
}

/// One stream's hold on a write. Dropped before the write is complete, it hands the write back
/// for a later stream to resume; finished or discarded, the write is gone.
pub(crate) struct Checkout {
    writes: Arc<Writes>,
    key: Key,
    id: u64,
    writer: Option<Writer>,
    aborted: watch::Receiver<bool>,
}

impl Checkout {
    fn writer(&self) -> &Writer {
        self.writer
            .as_ref()
            .expect("a checkout holds its writer until it finishes")
    }

    pub(crate) fn reference(&self) -> &str {
        &self.key.1
    }

    pub(crate) fn offset(&self) -> u64 {
        self.writer().offset()
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.writer().is_complete()
    }

    fn check_live(&self) -> Result<()> {
        if *self.aborted.borrow() {
            return Err(Error::Aborted(format!(
                "write {:?} was aborted or expired",
                self.key.1
            )));
        }
        Ok(())
    }

    /// Appends `data`, blocking on the file. Any failure drops the write.
    pub(crate) fn put(&mut self, data: &[u8], now_ms: i64) -> Result<()> {
        self.check_live()?;
        let writer = self.writer.as_mut().expect("a checkout holds its writer");
        if let Err(e) = writer.put(data) {
            self.writer = None;
            return Err(e);
        }
        let offset = writer.offset();
        if let Some(slot) = self.writes.table().get_mut(&self.key)
            && slot.id == self.id
        {
            slot.status.offset = offset;
            slot.touch(now_ms);
        }
        Ok(())
    }

    /// Verifies and syncs the complete write, blocking; on failure the write is dropped. The
    /// write stays under its ref (so no other stream can take it) until this checkout drops:
    /// publish the result first.
    pub(crate) fn finish(&mut self) -> Result<Verified> {
        self.check_live()?;
        let writer = self.writer.take().expect("a checkout holds its writer");
        writer.finish(&format!("write {:?}", self.key.1))
    }

    /// Resolves once the write is aborted or expires.
    pub(crate) async fn aborted(&self) {
        let mut aborted = self.aborted.clone();
        let _ = aborted.wait_for(|a| *a).await;
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let mut table = self.writes.table();
        // Aborted or expired meanwhile, the slot is gone: the writer and its file go with this
        // checkout.
        if let Some(slot) = table.get_mut(&self.key)
            && slot.id == self.id
        {
            match self.writer.take() {
                Some(writer) => slot.writer = Some(writer),
                None => drop(table.remove(&self.key)),
            }
        }
    }
}
