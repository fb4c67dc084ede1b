//! Writes the images' waiting last uses (`store`'s `meta/used.rs`) every
//! `USES_FLUSH_EVERY`, so that a quiet hyperd loses at most that much of them to a crash, and
//! once more at shutdown (the store writes what is left when it closes, too).

use store::Store;
use store::limits::USES_FLUSH_EVERY;
use tokio_util::sync::CancellationToken;

pub(crate) async fn run(store: Store, shutdown: CancellationToken) {
    loop {
        let stop = tokio::select! {
            () = tokio::time::sleep(USES_FLUSH_EVERY) => false,
            () = shutdown.cancelled() => true,
        };
        let writing = store.clone();
        let written = tokio::task::spawn_blocking(move || writing.flush_uses()).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "writing images' last uses"),
            Err(e) => tracing::warn!(error = %e, "writing images' last uses"),
        }
        if stop {
            return;
        }
    }
}
