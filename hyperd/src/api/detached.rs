//! Changes that run on a task of their own (Remove, Tag, SetPinned, CreateImage, Prune): a
//! client that hangs up makes tonic drop its call, which must not cut a change off between its
//! commit and its event. Each such task holds one of its uid's [`PER_UID`] permits, taken while
//! the call is still the client's, so hanging up and calling again cannot pile tasks up; and
//! hyperd waits for them at shutdown ([`Detached::finish`]), before the event log is flushed.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tonic::Status;

use super::status;

/// Detached changes one uid may have running at once; more wait in their calls.
const PER_UID: usize = 16;

#[derive(Default)]
pub(crate) struct Detached {
    tracker: TaskTracker,
    per_uid: Mutex<HashMap<Option<u32>, Arc<Semaphore>>>,
}

impl Detached {
    /// Runs `change` for `uid` on a task of its own, and answers what it returned.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        uid: Option<u32>,
        change: impl Future<Output = Result<T, Status>> + Send + 'static,
    ) -> Result<T, Status> {
        let permit = self
            .semaphore(uid)
            .acquire_owned()
            .await
            .expect("the semaphores are never closed");
        let task = self.tracker.spawn(async move {
            let answer = change.await;
            drop(permit);
            answer
        });
        task.await
            .map_err(|e| status::internal(format!("a change ended: {e}")))?
    }

    /// Waits for the changes running: at shutdown, once no new call can start one.
    pub(crate) async fn finish(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn semaphore(&self, uid: Option<u32>) -> Arc<Semaphore> {
        let mut per_uid = self.per_uid.lock().unwrap_or_else(|e| e.into_inner());
        per_uid
            .entry(uid)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_UID)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_finishes_though_its_call_is_dropped_and_finish_waits_for_it() {
        let detached = Arc::new(Detached::default());
        let (started, begun) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let call = {
            let detached = detached.clone();
            tokio::spawn(async move {
                let change = async move {
                    started.send(()).unwrap();
                    released.await.unwrap();
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                };
                detached.run(Some(1000), change).await
            })
        };
        begun.await.unwrap();
        // The client hangs up: its call is dropped, the change goes on.
        call.abort();
        release.send(()).unwrap();
        detached.finish().await;
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
