//! The driver of the server-streamed answers that report a job's progress (LoadFile, SaveFile,
//! Pull, Push, CheckStream): the work runs on a task of its own while its updates go to the
//! client, then its result or an error status. Also the shutdown helpers every call in flight
//! ends by, which Save (chunks from its export's pipe) and Read (a blob's chunks) use on their
//! own streams.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{FutureExt, Stream, StreamExt};
use store::Progress;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{IntervalStream, ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::status;

/// A server-streamed answer: updates, then the result or an error status.
pub(crate) type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Answers queued for a client that reads slowly.
const QUEUED: usize = 16;

/// Runs `work` on its own task, sending each of `updates` as it comes and, once the work is done,
/// the updates already made, then the result through `done`. The work is always polled: an
/// update waits for the client while the work goes on, and `updates` is not asked for the next
/// one meanwhile. A client that hangs up drops the work (a load's staging, a pull's lease go
/// with it); shutdown ends it with UNAVAILABLE.
pub(crate) fn answer<T, R>(
    work: impl Future<Output = Result<R, Status>> + Send + 'static,
    updates: impl Stream<Item = T> + Send + 'static,
    shutdown: CancellationToken,
    done: impl FnOnce(R) -> T + Send + 'static,
) -> Answers<T>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUED);
    tokio::spawn(async move {
        tokio::pin!(work, updates);
        let mut waiting: Option<T> = None;
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                () = shutdown.cancelled() => break Err(status::shutting_down()),
                () = tx.closed() => return,
                permit = tx.reserve(), if waiting.is_some() => match permit {
                    Ok(permit) => permit.send(Ok(waiting.take().expect("checked"))),
                    Err(_) => return,
                },
                Some(u) = updates.next(), if waiting.is_none() => waiting = Some(u),
            }
        };
        // Unconstrained: a channel receive counts against the task's coop budget, and a budget
        // spent in the poll that finished the work would make a queued update look absent.
        let made = waiting.into_iter().chain(std::iter::from_fn(|| {
            tokio::task::unconstrained(updates.next())
                .now_or_never()
                .flatten()
        }));
        for u in made.collect::<Vec<_>>() {
            if tx.send(Ok(u)).await.is_err() {
                return;
            }
        }
        let _ = tx.send(result.map(done)).await;
    });
    Box::pin(ReceiverStream::new(rx))
}

/// How often progress is reported: often enough for a progress bar, rarely enough to cost
/// nothing.
const TICK: Duration = Duration::from_millis(200);

/// The bytes `progress` has counted, every tick that it changed. A client slow to read misses a
/// report, not the work's progress.
pub(crate) fn ticks(progress: Progress) -> impl Stream<Item = u64> + Send + 'static {
    readings(move || progress.bytes())
}

/// What `read` returns, every tick that it changed from the last reading (the first, from its
/// default).
pub(crate) fn readings<T>(
    mut read: impl FnMut() -> T + Send + 'static,
) -> impl Stream<Item = T> + Send + 'static
where
    T: PartialEq + Clone + Default + Send + 'static,
{
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut reported = T::default();
    IntervalStream::new(interval).filter_map(move |_| {
        let now = read();
        let changed = now != reported;
        reported = now.clone();
        std::future::ready(changed.then_some(now))
    })
}

/// `stream` until shutdown, which ends it with UNAVAILABLE.
pub(crate) fn until_shutdown<T: Send + 'static>(
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    shutdown: CancellationToken,
) -> Answers<T> {
    let stream = futures_util::stream::unfold(Some(Box::pin(stream)), move |stream| {
        let shutdown = shutdown.clone();
        async move {
            let mut stream = stream?;
            tokio::select! {
                item = stream.next() => item.map(|i| (i, Some(stream))),
                () = shutdown.cancelled() => Some((Err(status::shutting_down()), None)),
            }
        }
    });
    Box::pin(stream)
}

/// `work`, unless shutdown comes first, which ends it with UNAVAILABLE.
pub(crate) async fn or_shutdown<T>(
    shutdown: &CancellationToken,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    tokio::select! {
        r = work => r,
        () = shutdown.cancelled() => Err(status::shutting_down()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work done with many updates queued: every one goes out, in order, before the result,
    /// though receiving them all spends more than a task's budget for one poll.
    #[tokio::test]
    async fn every_queued_update_goes_before_the_result() {
        const MADE: u32 = 1000;
        let (tx, rx) = mpsc::channel(MADE as usize);
        for n in 0..MADE {
            tx.try_send(n).unwrap();
        }
        let work = async { Ok(MADE) };
        let answers = answer(
            work,
            ReceiverStream::new(rx),
            CancellationToken::new(),
            |n| n,
        );
        let got: Vec<u32> = answers.map(Result::unwrap).collect().await;
        assert_eq!(got, (0..=MADE).collect::<Vec<_>>());
        drop(tx);
    }
}
