//! Bounded work: a fixed number of loads or writes stream at once, and the rest wait for a slot
//! before hyperd reads their data. Slots are shared fairly between uids: one uid holds at most
//! its share of them, so a uid whose calls stall (a trickling stream) leaves the rest to the
//! others; past its share its calls wait behind its own, and past [`WAITING_PER_UID`] waiting it
//! is refused (QUOTA_REACHED). A caller without credentials counts as one more uid (`nobody`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

use super::status;
use crate::metrics::{Held, SlotGauges};

/// Calls one uid may have waiting for a slot of one kind, beyond those holding one: enough for
/// a script that starts dozens of loads or writes at once (32 concurrent `hyperctl load`s must all
/// succeed), few enough that a uid cannot queue without bound (a waiting call holds at most its
/// 2 MiB stream window: 128 MiB per uid and kind).
pub(crate) const WAITING_PER_UID: usize = 64;

/// The uid a call without peer credentials is counted as (`(uid_t) -1`, never a real user's).
const NOBODY: u32 = u32::MAX;

/// `count` slots for one kind of work, at most `per_uid` of them held by one uid, named `what`
/// in the log ("load", "write").
#[derive(Clone)]
pub(crate) struct Slots {
    what: &'static str,
    per_uid: usize,
    total: Arc<Semaphore>,
    uids: Arc<Mutex<HashMap<u32, Share>>>,
    gauges: SlotGauges,
}

/// One uid's share: its slots, and its calls holding or waiting for one.
struct Share {
    slots: Arc<Semaphore>,
    calls: usize,
}

/// A slot, held until it drops; the uid's share and the total both get it back.
pub(crate) struct Slot {
    _total: OwnedSemaphorePermit,
    _share: OwnedSemaphorePermit,
    _call: Call,
    _in_use: Held,
}

/// One call of a uid counted against its share until it ends, waiting or holding a slot.
struct Call {
    uids: Arc<Mutex<HashMap<u32, Share>>>,
    uid: u32,
}

impl Drop for Call {
    fn drop(&mut self) {
        let mut uids = self.uids.lock().expect("slot table lock poisoned");
        if let Some(share) = uids.get_mut(&self.uid) {
            share.calls -= 1;
            if share.calls == 0 {
                uids.remove(&self.uid);
            }
        }
    }
}

impl Slots {
    /// `count` slots, `per_uid` of them for one uid, held and waited for as `gauges` count.
    pub(crate) fn new(
        what: &'static str,
        count: usize,
        per_uid: usize,
        gauges: SlotGauges,
    ) -> Self {
        Slots {
            what,
            per_uid,
            total: Arc::new(Semaphore::new(count)),
            uids: Arc::new(Mutex::new(HashMap::new())),
            gauges,
        }
    }

    /// Counts a call of `uid`, or refuses it when the uid has its share held and
    /// [`WAITING_PER_UID`] calls waiting already.
    fn enter(&self, uid: u32) -> Result<(Call, Arc<Semaphore>), Status> {
        let mut uids = self.uids.lock().expect("slot table lock poisoned");
        let share = uids.entry(uid).or_insert_with(|| Share {
            slots: Arc::new(Semaphore::new(self.per_uid)),
            calls: 0,
        });
        if share.calls >= self.per_uid + WAITING_PER_UID {
            return Err(status::quota_reached(format!(
                "uid {uid} has {} {}s streaming and {WAITING_PER_UID} waiting, its quota; \
                 let some end first",
                self.per_uid, self.what
            )));
        }
        share.calls += 1;
        let slots = share.slots.clone();
        drop(uids);
        let call = Call {
            uids: self.uids.clone(),
            uid,
        };
        Ok((call, slots))
    }

    /// Waits for a free slot within the uid's share, held until the [`Slot`] drops; a wait is
    /// logged, so that an operator (and a test) can see work queued.
    pub(crate) async fn take(&self, uid: Option<u32>) -> Result<Slot, Status> {
        let (call, share) = self.enter(uid.unwrap_or(NOBODY))?;
        if share.available_permits() == 0 || self.total.available_permits() == 0 {
            tracing::info!(uid, "{} waiting for a free slot", self.what);
        }
        // The semaphores are never closed; were they, hyperd would be going away. The uid's
        // share first, so that its calls past the share queue behind its own, not the others'.
        let waiting = Held::new(&self.gauges.waiting);
        let share = share
            .acquire_owned()
            .await
            .map_err(|_| status::shutting_down())?;
        let total = self
            .total
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| status::shutting_down())?;
        drop(waiting);
        Ok(Slot {
            _total: total,
            _share: share,
            _call: call,
            _in_use: Held::new(&self.gauges.in_use),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_uid_holds_at_most_its_share_and_the_others_still_get_slots() {
        let slots = Slots::new("write", 4, 2, SlotGauges::default());
        let a: Vec<Slot> = vec![
            slots.take(Some(1)).await.unwrap(),
            slots.take(Some(1)).await.unwrap(),
        ];
        let third = slots.take(Some(1));
        tokio::pin!(third);
        assert!(futures_util::poll!(&mut third).is_pending());
        let b = slots.take(Some(2)).await.unwrap();
        drop(a);
        let _a = third.await.unwrap();
        drop(b);
        assert_eq!(slots.total.available_permits(), 3);
    }

    #[tokio::test]
    async fn a_uid_past_its_share_and_its_waiting_calls_is_refused() {
        let slots = Slots::new("load", 4, 1, SlotGauges::default());
        let _held = slots.take(Some(1)).await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..WAITING_PER_UID {
            let mut call = Box::pin(slots.take(Some(1)));
            assert!(futures_util::poll!(&mut call).is_pending());
            waiting.push(call);
        }
        let e = slots.take(Some(1)).await.err().unwrap();
        assert_eq!(
            hyperd_proto::reason_of(&e),
            Some(hyperd_proto::v1::ErrorReason::QuotaReached)
        );
        assert!(slots.take(Some(2)).await.is_ok());
        drop(waiting);
        assert_eq!(slots.uids.lock().unwrap()[&1].calls, 1);
    }
}
