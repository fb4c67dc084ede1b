//! What hyperd did, as `docker events` tells it: each successful operation becomes one
//! [`Record`], numbered and timed by the [`Hub`], sent to live subscribers over a broadcast
//! channel and appended to the bounded on-disk log (`log.rs`) by a thread of its own, so an
//! emitting call never waits on the disk.
//!
//! - `emit.rs`: the one-line calls the operations make (`events::loaded(uid, &loaded)`, ...),
//!   turning what an operation returned into records.
//! - `log.rs`: the log's format, rotation and reading.
//! - `subscribe.rs`: a subscription: the log's records since a time, then live ones, without a
//!   gap or a duplicate between the two.
//!
//! One hub per process, set up by `lib.rs::run` ([`start`]), as there is one store root per
//! process: the operations reach it through [`hub`], which spares every call site (the gRPC
//! services, the registry endpoint, the store's collections) being handed it. Before [`start`]
//! (and in unit tests of other modules) emitting does nothing.

mod emit;
mod log;
mod subscribe;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub(crate) use emit::{
    created, enforced, loaded, pinned, pruned, pulled, pushed, removed, saved, tagged,
};
pub(crate) use subscribe::{Filter, Next, Start, Subscription};

/// Live events a subscriber may fall behind by before it loses some (and its stream ends).
const LIVE_QUEUED: usize = 1024;
/// Records waiting for the log's writer thread; past this they are dropped from the log (not
/// from live subscribers), with a warning, rather than held in memory without bound.
const WRITES_QUEUED: usize = 4096;

/// What happened, in docker's vocabulary where it has a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Load,
    Save,
    Pull,
    Push,
    Tag,
    Untag,
    Delete,
    Create,
    Referrer,
    Gc,
    Prune,
    Pin,
    Unpin,
}

impl Kind {
    pub(crate) const ALL: [Kind; 13] = [
        Kind::Load,
        Kind::Save,
        Kind::Pull,
        Kind::Push,
        Kind::Tag,
        Kind::Untag,
        Kind::Delete,
        Kind::Create,
        Kind::Referrer,
        Kind::Gc,
        Kind::Prune,
        Kind::Pin,
        Kind::Unpin,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Load => "load",
            Kind::Save => "save",
            Kind::Pull => "pull",
            Kind::Push => "push",
            Kind::Tag => "tag",
            Kind::Untag => "untag",
            Kind::Delete => "delete",
            Kind::Create => "create",
            Kind::Referrer => "referrer",
            Kind::Gc => "gc",
            Kind::Prune => "prune",
            Kind::Pin => "pin",
            Kind::Unpin => "unpin",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One event, as the log keeps it and the API sends it (`hyperd.v1.Event`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) sequence: u64,
    pub(crate) time_unix_nano: i64,
    #[serde(rename = "type")]
    pub(crate) kind: Kind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) digest: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) uid: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) attributes: BTreeMap<String, String>,
}

/// An event before the hub numbers and times it.
#[derive(Debug, Default)]
pub(crate) struct Event {
    pub(crate) digest: String,
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) attributes: BTreeMap<String, String>,
}

/// What the log's writer thread is asked, in order.
enum Write {
    Append(Arc<Record>),
    /// Answered once everything sent before is written.
    Flush(mpsc::SyncSender<()>),
}

/// Numbers, times and hands out the events.
#[derive(Debug)]
pub(crate) struct Hub {
    /// The last sequence number given; held while a record is sent to the writer and the live
    /// channel, so both see records in the same order.
    last: Mutex<u64>,
    live: broadcast::Sender<Arc<Record>>,
    writes: mpsc::SyncSender<Write>,
    segments: Arc<log::Segments>,
}

static HUB: OnceLock<Hub> = OnceLock::new();

/// Opens the log in `dir` and starts the hub and its writer thread, and reports `store`'s
/// collections as `gc` events. Later calls in the same process keep the first hub.
pub(crate) fn start(dir: &Path, store: &store::Store) -> std::io::Result<&'static Hub> {
    if let Some(hub) = HUB.get() {
        return Ok(hub);
    }
    let hub = Hub::open(dir).map_err(|e| {
        let message = format!("opening the event log in {}: {e}", dir.display());
        std::io::Error::new(e.kind(), message)
    })?;
    let hub = HUB.get_or_init(|| hub);
    tokio::spawn(emit::collections(store.collections()));
    Ok(hub)
}

/// The process's hub, once started.
pub(crate) fn hub() -> Option<&'static Hub> {
    HUB.get()
}

impl Hub {
    /// Every event from now on, live; `None` before the hub is started.
    pub(crate) fn live() -> Option<broadcast::Receiver<Arc<Record>>> {
        hub().map(|hub| hub.live.subscribe())
    }

    /// A hub whose log is in `dir`, with its writer thread, which ends when the hub is dropped.
    fn open(dir: &Path) -> std::io::Result<Hub> {
        let (log, last) = log::Log::open(dir)?;
        let segments = log.segments();
        let (writes, queue) = mpsc::sync_channel(WRITES_QUEUED);
        std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || write_log(log, queue))?;
        Ok(Hub {
            last: Mutex::new(last),
            live: broadcast::channel(LIVE_QUEUED).0,
            writes,
            segments,
        })
    }

    /// Records `event` of `kind`, caused by `uid`.
    pub(crate) fn emit(&self, kind: Kind, uid: Option<u32>, event: Event) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // Timed under the lock, so time order is sequence order.
        let time_unix_nano = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        *last += 1;
        let record = Arc::new(Record {
            sequence: *last,
            time_unix_nano,
            kind,
            digest: event.digest,
            name: event.name,
            id: event.id,
            uid,
            attributes: event.attributes,
        });
        if self.writes.try_send(Write::Append(record.clone())).is_err() {
            tracing::warn!(
                sequence = *last,
                "event log writer behind: event not logged"
            );
        }
        // An error only says that nobody listens.
        let _ = self.live.send(record);
    }

    /// The logged records `keep` accepts, oldest first, with every event emitted before the
    /// call among them, and the sequence number of the last record logged. Read off the
    /// runtime's threads and beside the writer, which waits for it only to rotate.
    pub(crate) async fn replay(
        &self,
        keep: impl Fn(&Record) -> bool + Send + 'static,
    ) -> std::io::Result<(Vec<Record>, u64)> {
        let (writes, segments) = (self.writes.clone(), self.segments.clone());
        let read = tokio::task::spawn_blocking(move || {
            flush(&writes);
            segments.replay(keep)
        });
        read.await.map_err(std::io::Error::other)?
    }

    /// A guard that, dropped, waits until every event emitted so far is in the log: hyperd
    /// holds it while it runs, so whichever way `run` returns, the log has what was told.
    pub(crate) fn flush_on_drop(&'static self) -> FlushOnDrop {
        FlushOnDrop(self)
    }
}

/// Waits, blocking the thread, until every event sent to `writes` so far is in the log.
fn flush(writes: &mpsc::SyncSender<Write>) {
    let (done, written) = mpsc::sync_channel(1);
    if writes.send(Write::Flush(done)).is_ok() {
        let _ = written.recv();
    }
}

/// See [`Hub::flush_on_drop`].
#[must_use = "the log is flushed when this is dropped"]
pub(crate) struct FlushOnDrop(&'static Hub);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        flush(&self.0.writes);
    }
}

/// The writer thread: appends each record in turn, until the hub is gone.
fn write_log(mut log: log::Log, queue: mpsc::Receiver<Write>) {
    for write in queue {
        match write {
            Write::Append(record) => {
                if let Err(e) = log.append(&record) {
                    tracing::warn!(error = %e, sequence = record.sequence, "event not logged");
                }
            }
            Write::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(hub: &Hub, n: u64) {
        let event = Event {
            name: format!("app:{n}"),
            ..Default::default()
        };
        hub.emit(Kind::Tag, Some(0), event);
    }

    #[tokio::test]
    async fn a_replay_across_a_rotation_has_every_event_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Hub::open(dir.path()).unwrap();
        let total = log::SEGMENT_EVENTS + 5;
        // In two batches, each under the writer's queue, so none is dropped from the log.
        let half = total / 2;
        (1..=half).for_each(|n| tag(&hub, n));
        let (_, last) = hub.replay(|_| false).await.unwrap();
        assert_eq!(last, half);
        (half + 1..=total).for_each(|n| tag(&hub, n));
        let (all, last) = hub.replay(|_| true).await.unwrap();
        assert_eq!(last, total);
        let sequences: Vec<u64> = all.iter().map(|r| r.sequence).collect();
        assert_eq!(sequences, (1..=total).collect::<Vec<_>>());
        assert!(
            all.windows(2)
                .all(|w| w[0].time_unix_nano <= w[1].time_unix_nano)
        );
    }

    #[tokio::test]
    async fn dropping_the_guard_leaves_every_emitted_event_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let hub: &'static Hub = Box::leak(Box::new(Hub::open(dir.path()).unwrap()));
        let guard = hub.flush_on_drop();
        (1..=100).for_each(|n| tag(hub, n));
        drop(guard);
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 100);
    }
}
