//! How many connections each uid holds, the caps on them, and the log of refusals: one line when
//! a burst of refusals begins and one when it ends, whatever the burst's length.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::metrics::{Held, Metrics};

/// Connections a privileged uid (root, or the uid hyperd runs as) may hold beyond the total, so
/// that an administrator can always connect (the per-uid cap still applies to it).
pub(crate) const PRIVILEGED_RESERVE: usize = 32;

/// The caps on open connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caps {
    /// All uids together (privileged uids may exceed it by [`PRIVILEGED_RESERVE`]).
    pub(crate) total: usize,
    /// Any one uid.
    pub(crate) per_uid: usize,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    Total,
    Uid,
}

/// The counts, and the bursts of refusals not yet ended (pure: no I/O, no log).
#[derive(Debug)]
pub(crate) struct Counts {
    caps: Caps,
    total: usize,
    by_uid: HashMap<u32, usize>,
    /// Refusals since the last admission, of any uid because of the total, and per uid because
    /// of its own cap.
    refused_total: u64,
    refused_uid: HashMap<u32, u64>,
}

/// What an admission or a refusal has to say in the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Note {
    /// The first refusal of a burst.
    BurstBegins(Refusal),
    /// An admission after a burst of this many refusals.
    BurstEnded(Refusal, u64),
}

impl Counts {
    pub(crate) fn new(caps: Caps) -> Self {
        Counts {
            caps,
            total: 0,
            by_uid: HashMap::new(),
            refused_total: 0,
            refused_uid: HashMap::new(),
        }
    }

    /// Counts a new connection of `uid` if the caps allow it. Returns the log notes it causes.
    pub(crate) fn admit(&mut self, uid: u32, privileged: bool) -> (Result<(), Refusal>, Vec<Note>) {
        let held = self.by_uid.get(&uid).copied().unwrap_or(0);
        let total = self.caps.total + if privileged { PRIVILEGED_RESERVE } else { 0 };
        let refusal = if held >= self.caps.per_uid {
            Some(Refusal::Uid)
        } else if self.total >= total {
            Some(Refusal::Total)
        } else {
            None
        };
        let mut notes = Vec::new();
        if let Some(r) = refusal {
            let count = match r {
                Refusal::Total => &mut self.refused_total,
                Refusal::Uid => self.refused_uid.entry(uid).or_default(),
            };
            *count += 1;
            if *count == 1 {
                notes.push(Note::BurstBegins(r));
            }
            return (Err(r), notes);
        }
        self.total += 1;
        *self.by_uid.entry(uid).or_default() += 1;
        if let Some(n) = self.refused_uid.remove(&uid) {
            notes.push(Note::BurstEnded(Refusal::Uid, n));
        }
        if self.refused_total > 0 {
            notes.push(Note::BurstEnded(Refusal::Total, self.refused_total));
            self.refused_total = 0;
        }
        (Ok(()), notes)
    }

    pub(crate) fn release(&mut self, uid: u32) {
        self.total -= 1;
        match self.by_uid.get_mut(&uid) {
            Some(1) => {
                self.by_uid.remove(&uid);
            }
            Some(n) => *n -= 1,
            None => unreachable!("a connection released that was never admitted"),
        }
    }
}

/// The counts shared by the accept loop and every connection's [`Slot`].
#[derive(Clone, Debug)]
pub(crate) struct Gate {
    counts: Arc<Mutex<Counts>>,
    caps: Caps,
    /// The uid hyperd runs as: privileged like root.
    own_uid: u32,
    /// Where the gRPC socket's connections are counted for the metrics page.
    metrics: Option<Arc<Metrics>>,
}

impl Gate {
    pub(crate) fn new(caps: Caps) -> Self {
        Gate {
            counts: Arc::new(Mutex::new(Counts::new(caps))),
            caps,
            own_uid: rustix::process::geteuid().as_raw(),
            metrics: None,
        }
    }

    /// The gate, its connections and refusals counted in `metrics`.
    pub(crate) fn counted(self, metrics: Arc<Metrics>) -> Self {
        Gate {
            metrics: Some(metrics),
            ..self
        }
    }

    /// A slot for a connection of `uid` that frees itself when dropped, or None (logged once
    /// per burst) when a cap refuses it.
    pub(crate) fn admit(&self, uid: u32) -> Option<Slot> {
        let privileged = uid == 0 || uid == self.own_uid;
        let (result, notes) = self.lock().admit(uid, privileged);
        let caps = self.caps;
        for note in notes {
            log(note, uid, caps);
        }
        let m = self.metrics.as_deref();
        if let (Err(r), Some(m)) = (result, m) {
            m.connection_refused(r == Refusal::Total);
        }
        result.ok().map(|()| Slot {
            gate: self.clone(),
            uid,
            _open: m.map(|m| Held::new(&m.connections)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts stay consistent whatever panicked: each change is one statement.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn log(note: Note, uid: u32, caps: Caps) {
    match note {
        Note::BurstBegins(Refusal::Uid) => tracing::warn!(
            uid,
            limit = caps.per_uid,
            "refusing connections from this uid: it holds as many as one uid may \
             (further refusals are logged when it is let in again)"
        ),
        Note::BurstBegins(Refusal::Total) => tracing::warn!(
            uid,
            limit = caps.total,
            "refusing connections: hyperd holds as many as it may \
             (further refusals are logged when one is let in again)"
        ),
        Note::BurstEnded(Refusal::Uid, refused) => {
            tracing::info!(uid, refused, "accepting connections from this uid again")
        }
        Note::BurstEnded(Refusal::Total, refused) => {
            tracing::info!(refused, "accepting connections again")
        }
    }
}

/// One admitted connection's place in the counts, held as long as the connection lives.
#[derive(Debug)]
pub(crate) struct Slot {
    gate: Gate,
    uid: u32,
    _open: Option<Held>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.lock().release(self.uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        total: 4,
        per_uid: 2,
    };

    #[test]
    fn one_uid_at_its_cap_leaves_the_others_room() {
        let mut c = Counts::new(CAPS);
        assert_eq!(c.admit(1000, false).0, Ok(()));
        assert_eq!(c.admit(1000, false).0, Ok(()));
        assert_eq!(c.admit(1000, false).0, Err(Refusal::Uid));
        assert_eq!(c.admit(1001, false).0, Ok(()));
        c.release(1000);
        assert_eq!(c.admit(1000, false).0, Ok(()));
    }

    #[test]
    fn the_total_holds_for_all_but_privileged_uids_have_a_reserve() {
        let mut c = Counts::new(CAPS);
        for uid in [1, 1, 2, 2] {
            assert_eq!(c.admit(uid, false).0, Ok(()));
        }
        assert_eq!(c.admit(3, false).0, Err(Refusal::Total));
        assert_eq!(c.admit(0, true).0, Ok(()));
        assert_eq!(c.admit(0, true).0, Ok(()));
        assert_eq!(
            c.admit(0, true).0,
            Err(Refusal::Uid),
            "root has a per-uid cap too"
        );
        let mut big = Counts::new(Caps {
            total: 1,
            per_uid: 100,
        });
        for _ in 0..=PRIVILEGED_RESERVE {
            assert_eq!(big.admit(0, true).0, Ok(()));
        }
        assert_eq!(big.admit(0, true).0, Err(Refusal::Total));
    }

    #[test]
    fn a_burst_of_refusals_is_noted_when_it_begins_and_when_it_ends() {
        let mut c = Counts::new(CAPS);
        assert_eq!(c.admit(7, false), (Ok(()), vec![]));
        assert_eq!(c.admit(7, false), (Ok(()), vec![]));
        assert_eq!(c.admit(7, false).1, [Note::BurstBegins(Refusal::Uid)]);
        for _ in 0..100 {
            assert_eq!(c.admit(7, false).1, []);
        }
        c.release(7);
        assert_eq!(c.admit(7, false).1, [Note::BurstEnded(Refusal::Uid, 101)]);
        assert_eq!(c.admit(8, false).1, []);
        assert_eq!(c.admit(8, false).1, []);
        assert_eq!(c.admit(9, false).1, [Note::BurstBegins(Refusal::Total)]);
        assert_eq!(c.admit(9, false).1, []);
        c.release(8);
        assert_eq!(c.admit(9, false).1, [Note::BurstEnded(Refusal::Total, 2)]);
    }
}
