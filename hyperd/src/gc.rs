//! The daemon's GC policy (`--gc-high`, `--gc-low`, `--gc-max-unused`, `--gc-keep`; the rules
//! and what they never touch: `store`'s `policy.rs`). One task runs a pass at start, every
//! [`PASS_EVERY`], and [`SETTLE`] after something is stored (a `load`, `pull`, `create` or
//! `tag` event), so that a disk filled by loads is seen within seconds and a burst of loads
//! costs one pass. A pass reads every image (unless only the watermark rule is set and the
//! filesystem is under its high mark, when it reads only the filesystem's size), so it runs
//! off the async threads, and the next pass waits at least [`IDLE_PER_BUSY`] times as long as
//! the last one took: however big the store and however fast images arrive, the policy keeps
//! at most a tenth of one core busy. At shutdown a pass stops between two steps, and hyperd
//! waits for it. What each pass does (also one that failed part-way) becomes events and
//! metrics.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
/// How much longer than a pass took the policy waits before the next pass.
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
    let mut was_short = false;
    loop {
        let began = Instant::now();
        let enforced = pass(&store, &policy, started, &shutdown).await;
        tell_short(&enforced, was_short);
        was_short = enforced.short > 0;
        metrics.enforced(&enforced);
        events::enforced(&enforced);
        let busy = began.elapsed() * IDLE_PER_BUSY;
        tokio::select! {
            () = tokio::time::sleep(PASS_EVERY.max(busy)) => {}
            () = something_stored(stored.as_mut()) => {
                tokio::select! {
                    () = tokio::time::sleep(SETTLE.max(busy)) => {}
                    () = shutdown.cancelled() => return,
                }
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

/// One pass, off the async threads; it stops taking steps at shutdown.
async fn pass(
    store: &Store,
    policy: &Arc<GcPolicy>,
    started: SystemTime,
    shutdown: &CancellationToken,
) -> Enforced {
    let (store, policy, stop) = (store.clone(), policy.clone(), shutdown.clone());
    let runtime = tokio::runtime::Handle::current();
    let passed = tokio::task::spawn_blocking(move || {
        let enforcing = store
            .images()
            .enforce(&policy, started, || stop.is_cancelled());
        runtime.block_on(enforcing)
    })
    .await;
    match passed {
        Ok(enforced) => {
            log(&enforced);
            enforced
        }
        Err(e) => {
            tracing::warn!(error = %e, "the GC policy's pass ended");
            Enforced::default()
        }
    }
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
    if let Some(e) = &enforced.failed {
        tracing::warn!(error = %e, steps = enforced.steps.len(), "GC policy pass ended early");
    }
}

/// Warns when a pass first finds that nothing more may go while the filesystem stays over
/// `--gc-low` (files that are not the store's, or images pinned, held or recently used);
/// while that lasts, later passes say so only in the debug log.
fn tell_short(enforced: &Enforced, was_short: bool) {
    let short = enforced.short;
    match (short > 0, was_short) {
        (true, false) => tracing::warn!(
            short,
            "GC policy: nothing more may go, and the filesystem stays over --gc-low"
        ),
        (true, true) => tracing::debug!(short, "GC policy: still over --gc-low"),
        (false, _) => {}
    }
}
