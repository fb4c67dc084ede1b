//! The daemon's GC policy (`--gc-high`, `--gc-low`, `--gc-max-unused`, `--gc-keep`; the rules
//! and what they never touch: `store`'s `policy.rs`). One task runs a pass at start, every
//! [`PASS_EVERY`], and [`SETTLE`] after something is stored (a `load`, `pull`, `create` or
//! `tag` event), so that a disk filled by loads is seen within seconds and a burst of loads
//! costs one pass. A pass reads every image (unless only the watermark rule is set and the
//! filesystem is under its high mark, when it reads only the filesystem's size), so it runs
//! off the async threads, and a pass a store event asks for waits [`IDLE_PER_BUSY`] times as
//! long as the last pass took: however fast images arrive, the policy keeps at most a tenth of
//! one core busy. What each pass does becomes events and metrics.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use store::{Enforced, GcPolicy, Store};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::events::{self, Kind};
use crate::metrics::Metrics;

/// How often a pass runs when nothing is stored: the age rule and space that other files
/// fill are seen at least this often.
const PASS_EVERY: Duration = Duration::from_secs(60);
/// How long after something is stored a pass runs, so that a burst of loads is one pass.
const SETTLE: Duration = Duration::from_secs(1);
/// How much longer than a pass took the policy waits before a pass a store event asks for.
const IDLE_PER_BUSY: u32 = 9;

/// Runs the policy until `shutdown`; returns at once when no rule is set.
pub(crate) async fn run(
    store: Store,
    policy: GcPolicy,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    if !policy.is_on() {
        return;
    }
    let started = SystemTime::now();
    let policy = Arc::new(policy);
    let mut stored = events::Hub::live();
    loop {
        let began = std::time::Instant::now();
        if let Some(enforced) = pass(&store, &policy, started).await {
            metrics.enforced(&enforced);
            events::enforced(&enforced);
        }
        let rest = SETTLE.max(began.elapsed() * IDLE_PER_BUSY);
        tokio::select! {
            () = tokio::time::sleep(PASS_EVERY) => {}
            () = something_stored(stored.as_mut()) => {
                tokio::time::sleep(rest).await;
                if let Some(live) = stored.as_mut() {
                    *live = live.resubscribe();
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// Returns once an event says an image was stored or named (at once when events were lost);
/// never without a hub.
async fn something_stored(
    live: Option<&mut tokio::sync::broadcast::Receiver<Arc<events::Record>>>,
) {
    let Some(live) = live else {
        return std::future::pending().await;
    };
    loop {
        match live.recv().await {
            Ok(r) if matches!(r.kind, Kind::Load | Kind::Pull | Kind::Create | Kind::Tag) => {
                return;
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            Err(RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// One pass, off the async threads; `None` (logged) when it failed.
async fn pass(store: &Store, policy: &Arc<GcPolicy>, started: SystemTime) -> Option<Enforced> {
    let (store, policy) = (store.clone(), policy.clone());
    let runtime = tokio::runtime::Handle::current();
    let passed = tokio::task::spawn_blocking(move || {
        runtime.block_on(store.images().enforce(&policy, started))
    })
    .await;
    let error = match passed {
        Ok(Ok(enforced)) => {
            log(&enforced);
            return Some(enforced);
        }
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(error, "running the GC policy");
    None
}

fn log(enforced: &Enforced) {
    for step in &enforced.steps {
        tracing::info!(
            rule = step.rule.as_str(),
            image = %step.digest,
            freed = step.freed,
            "GC policy removed"
        );
    }
    if let (Some(fs), false) = (enforced.filesystem, enforced.steps.is_empty()) {
        tracing::info!(
            size = fs.size,
            available_before = fs.available,
            "GC policy pass over the filesystem"
        );
    }
}
