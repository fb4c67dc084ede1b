//! The blocking threads a load from, or a save into, a handed-over file copies with, bound to the
//! job's life. A blocking thread cannot be aborted, and dropping the future that awaits it leaves
//! it running: a cancelled copy of a large file would go on writing into a staging file already
//! removed, after its caller had let go of the slot it was counted against. So each thread checks
//! the job's stop token between steps (at most one 8 MiB kernel copy or 1 MiB buffer), and the job
//! ends only once every thread it started has returned.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};

/// One job's blocking threads and the token that stops them.
#[derive(Clone)]
pub(crate) struct Threads {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Threads {
    /// Threads stopped when `stop` is cancelled.
    pub(crate) fn new(stop: CancellationToken) -> Self {
        Threads {
            stop,
            tracker: TaskTracker::new(),
        }
    }

    /// Runs `work` on a blocking thread, handing it a token to check between steps. The token is
    /// cancelled with the job's, and also when this future is dropped before the work returns.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&CancellationToken) -> T + Send + 'static,
    ) -> T {
        let stop = self.stop.child_token();
        let dropped = stop.clone().drop_guard();
        let handle = self.tracker.spawn_blocking(move || work(&stop));
        let done = handle.await.expect("copy thread panicked");
        dropped.disarm();
        done
    }

    /// `job`, unless the stop token is cancelled first: then `job` is dropped where it stands and
    /// [`Error::Cancelled`] returned. Either way, only once every thread [`Threads::run`] started
    /// has returned.
    pub(crate) async fn bound<T>(&self, job: impl Future<Output = Result<T>>) -> Result<T> {
        let result = tokio::select! {
            r = job => r,
            () = self.stop.cancelled() => Err(Error::Cancelled),
        };
        self.tracker.close();
        self.tracker.wait().await;
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// A thread that would run forever is stopped, and the job returns only after it did.
    #[tokio::test]
    async fn a_stopped_job_returns_after_its_threads() {
        let stop = CancellationToken::new();
        let threads = Threads::new(stop.clone());
        let returned = Arc::new(AtomicBool::new(false));
        let started = Arc::new(tokio::sync::Notify::new());
        let (flag, seen) = (returned.clone(), started.clone());
        let job = {
            let threads = threads.clone();
            async move {
                threads
                    .run(move |stop| {
                        seen.notify_one();
                        while !stop.is_cancelled() {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        flag.store(true, Ordering::SeqCst);
                    })
                    .await;
                Ok(())
            }
        };
        let canceller = stop.clone();
        tokio::spawn(async move {
            started.notified().await;
            canceller.cancel();
        });
        let result = threads.bound(job).await;
        assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
        assert!(returned.load(Ordering::SeqCst));
    }

    /// Dropping the future that awaits a thread stops the thread too.
    #[tokio::test]
    async fn a_dropped_wait_stops_its_thread() {
        let threads = Threads::new(CancellationToken::new());
        let returned = Arc::new(AtomicBool::new(false));
        let flag = returned.clone();
        let started = Arc::new(tokio::sync::Notify::new());
        let seen = started.clone();
        let run = threads.run(move |stop| {
            seen.notify_one();
            while !stop.is_cancelled() {
                std::thread::sleep(Duration::from_millis(1));
            }
            flag.store(true, Ordering::SeqCst);
        });
        tokio::select! {
            () = run => unreachable!("the thread runs until stopped"),
            () = started.notified() => {}
        }
        threads.bound(async { Ok(()) }).await.unwrap();
        assert!(returned.load(Ordering::SeqCst));
    }
}
