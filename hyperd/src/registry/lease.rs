//! The lease a pull or push holds its blobs under: what a pull wrote, or what a push reads,
//! stays until the transfer ends, however it ends.

use store::Store;

use super::error::Result;

/// Outlives any transfer; deleted when the transfer ends (or, after a crash, expires).
const TTL: u64 = 24 * 3600;

/// Deleted when released; if the transfer is dropped midway (its client hung up, hyperd is
/// stopping), deleted on another task.
pub(super) struct Lease(Option<(Store, String)>);

impl Lease {
    pub(super) async fn create(store: &Store) -> Result<Lease> {
        let id = store.leases().create(TTL).await?.id;
        Ok(Lease(Some((store.clone(), id))))
    }

    pub(super) fn id(&self) -> &str {
        &self.0.as_ref().expect("a live lease").1
    }

    pub(super) async fn release(mut self) {
        if let Some((store, id)) = self.0.take() {
            delete(store, id).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((store, id)) = self.0.take() {
            tokio::spawn(delete(store, id));
        }
    }
}

async fn delete(store: Store, id: String) {
    if let Err(e) = store.leases().delete(&id).await {
        tracing::warn!(lease = id, error = %e, "could not drop a transfer's lease");
    }
}
