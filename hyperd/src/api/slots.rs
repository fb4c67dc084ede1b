//! Bounded work: a fixed number of loads or writes stream at once, and the rest wait for a slot
//! before hyperd reads their data.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::status;

/// `count` slots for one kind of work, named `what` in the log ("load", "write").
#[derive(Clone)]
pub(crate) struct Slots {
    what: &'static str,
    semaphore: Arc<Semaphore>,
}

impl Slots {
    pub(crate) fn new(what: &'static str, count: usize) -> Self {
        Slots {
            what,
            semaphore: Arc::new(Semaphore::new(count)),
        }
    }

    /// Waits for a free slot, held until the permit drops; a wait is logged, so that an
    /// operator (and a test) can see work queued.
    pub(crate) async fn take(&self, uid: Option<u32>) -> Result<OwnedSemaphorePermit, Status> {
        if self.semaphore.available_permits() == 0 {
            tracing::info!(uid, "{} waiting for a free slot", self.what);
        }
        // The semaphore is never closed; were it, hyperd would be going away.
        self.semaphore
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| status::shutting_down())
    }
}
