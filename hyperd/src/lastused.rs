//! Writes the images' waiting last uses (`store`'s `meta/used.rs`) when the store says they are
//! due (`MAX_PENDING_USES` images wait, or `USES_FLUSH_EVERY` passed) and every
//! `USES_FLUSH_EVERY` anyway, so that a quiet hyperd loses at most that much of them to a
//! crash; always in `spawn_blocking`, since a write transaction blocks. After a failed write it
//! waits `USES_FLUSH_EVERY` before the next. [`flush`] writes what is left once the servers
//! have stopped (the store writes what is left when it closes, too).

use store::Store;
use store::limits::USES_FLUSH_EVERY;
use tokio_util::sync::CancellationToken;

/// Runs until `shutdown`, then hands the store back for the last [`flush`].
pub(crate) async fn run(store: Store, shutdown: CancellationToken) -> Store {
    loop {
        tokio::select! {
            () = tokio::time::sleep(USES_FLUSH_EVERY) => {}
            () = store.uses_due() => {}
            () = shutdown.cancelled() => return store,
        }
        if !flush(store.clone()).await {
            tokio::select! {
                () = tokio::time::sleep(USES_FLUSH_EVERY) => {}
                () = shutdown.cancelled() => return store,
            }
        }
    }
}

/// Writes the waiting uses off the async threads; false (logged) when that failed.
pub(crate) async fn flush(store: Store) -> bool {
    let error = match tokio::task::spawn_blocking(move || store.flush_uses()).await {
        Ok(Ok(())) => return true,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::warn!(error, "writing images' last uses");
    false
}
