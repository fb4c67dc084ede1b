//! Drops expired leases and idle content writes, and collects what only they held. Sleeps until
//! the next expiry, at most a minute, and wakes early when a shorter-lived lease is created.

use std::time::Duration;

use store::Store;
use tokio_util::sync::CancellationToken;

/// Longest sleep: bounds how late anything expires, whatever the clock did.
const MAX_SLEEP: Duration = Duration::from_secs(60);

pub(crate) async fn run(store: Store, write_expiry: Duration, shutdown: CancellationToken) {
    let idle = write_expiry.as_secs();
    loop {
        let wait = store
            .leases()
            .next_expiry(idle)
            .map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = store.leases().expiry_changed() => continue,
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = store.leases().expire(idle).await {
            tracing::warn!(error = %e, "dropping expired leases and writes failed");
            // What failed is still due: try again later rather than at once.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
