//! A pass of the daemon's GC policy over the store, in-process once hyperd has stopped (it holds
//! the store's lock while it runs): what `--gc-keep` and `--gc-max-unused` cost, since they read
//! every image at each pass. The policy timed removes nothing, so every run sees the same store.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::ops::AtSize;

pub(crate) const POLICY_PASS: &str =
    "a GC policy pass with `--gc-keep` and `--gc-max-unused` (in-process)";

/// Times `runs` passes over the store at `root`.
pub(crate) async fn time_passes(root: &Path, at: &mut AtSize, runs: usize) {
    eprintln!("  GC policy passes");
    let store = match store::Store::open(root).await {
        Ok(store) => store,
        Err(e) => return at.record(POLICY_PASS, Err(format!("opening the store: {e}"))),
    };
    let policy = store::GcPolicy {
        keep: Some(usize::MAX),
        max_unused: Some(Duration::from_secs(3650 * 86_400)),
        ..store::GcPolicy::default()
    };
    for _ in 0..runs {
        let t = Instant::now();
        let enforced = store
            .images()
            .enforce(&policy, SystemTime::now(), || false)
            .await;
        let result = match (enforced.failed, enforced.steps.len()) {
            (None, 0) => Ok(t.elapsed().as_secs_f64()),
            (None, n) => Err(format!("the pass removed {n} images")),
            (Some(e), _) => Err(e.to_string()),
        };
        at.record(POLICY_PASS, result);
    }
}
