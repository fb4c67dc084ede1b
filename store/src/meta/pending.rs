//! The uses of images not yet written (`used.rs` writes them): at most one per image, the
//! latest; due when `MAX_PENDING_USES` images wait or `USES_FLUSH_EVERY` has passed since the
//! last write; capped hard at `MAX_WAITING_USES` images.

use std::collections::HashMap;
use std::time::Instant;

use crate::digest::Digest;
use crate::limits::{
    MAX_PENDING_USES as MAX_PENDING, MAX_WAITING_USES as MAX_WAITING,
    USES_FLUSH_EVERY as FLUSH_EVERY,
};

/// Uses not yet written, at most one per image (the latest).
#[derive(Debug)]
pub(super) struct Pending {
    uses: HashMap<Digest, i64>,
    /// When the uses were last written (or the store opened).
    since: Instant,
}

impl Pending {
    pub(super) fn new(now: Instant) -> Self {
        Pending {
            uses: HashMap::new(),
            since: now,
        }
    }

    /// Notes that `digest` was used at `at` (refused for an image not yet waiting once
    /// `MAX_WAITING_USES` wait); true when the waiting uses are due to be written.
    pub(super) fn note(&mut self, digest: &Digest, at: i64, now: Instant) -> bool {
        self.keep(digest.clone(), at);
        self.uses.len() >= MAX_PENDING || now.saturating_duration_since(self.since) >= FLUSH_EVERY
    }

    /// Keeps the later of `at` and what waits for `digest`, within the hard cap.
    fn keep(&mut self, digest: Digest, at: i64) {
        let full = self.uses.len() >= MAX_WAITING;
        match self.uses.get_mut(&digest) {
            Some(t) => *t = (*t).max(at),
            None if full => {}
            None => drop(self.uses.insert(digest, at)),
        }
    }

    /// The waiting uses, to be written: they keep waiting (and being read) until
    /// [`Pending::written`] says they are, so that no reader sees a use vanish while its write
    /// waits for the database.
    pub(super) fn writing(&mut self, now: Instant) -> HashMap<Digest, i64> {
        self.since = now;
        self.uses.clone()
    }

    /// Drops the uses `written` holds, but for those used again since (a later time).
    pub(super) fn written(&mut self, written: &HashMap<Digest, i64>) {
        self.uses
            .retain(|d, at| written.get(d).is_none_or(|w| *w < *at));
    }

    pub(super) fn get(&self, digest: &Digest) -> Option<i64> {
        self.uses.get(digest).copied()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.uses.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_wait_until_enough_of_them_or_enough_time() {
        let start = Instant::now();
        let mut p = Pending::new(start);
        let d = |n: u32| Digest::of(&n.to_le_bytes());
        // The same image again is one entry, keeping the later time.
        assert!(!p.note(&d(0), 5, start));
        assert!(!p.note(&d(0), 3, start));
        assert_eq!((p.len(), p.get(&d(0))), (1, Some(5)));
        for n in 1..MAX_PENDING as u32 - 1 {
            assert!(!p.note(&d(n), 1, start));
        }
        assert!(p.note(&d(MAX_PENDING as u32), 1, start));
        let writing = p.writing(start);
        assert_eq!(writing.len(), MAX_PENDING);
        // Used again while its write waited: that use stays; the rest are written.
        p.note(&d(0), 6, start);
        p.written(&writing);
        assert_eq!((p.len(), p.get(&d(0))), (1, Some(6)));
        assert!(!p.note(&d(0), 1, start + FLUSH_EVERY / 2));
        assert!(p.note(&d(1), 1, start + FLUSH_EVERY));
    }

    #[test]
    fn past_the_hard_cap_only_images_already_waiting_are_noted() {
        let start = Instant::now();
        let mut p = Pending::new(start);
        let d = |n: usize| Digest::of(&n.to_le_bytes());
        for n in 0..MAX_WAITING {
            p.note(&d(n), 1, start);
        }
        assert!(p.note(&d(MAX_WAITING), 1, start));
        assert_eq!((p.len(), p.get(&d(MAX_WAITING))), (MAX_WAITING, None));
        p.note(&d(0), 9, start);
        assert_eq!(p.get(&d(0)), Some(9));
        // A write that failed leaves them all waiting, still within the cap.
        let _failed = p.writing(start);
        p.note(&d(MAX_WAITING), 2, start);
        assert_eq!((p.len(), p.get(&d(MAX_WAITING))), (MAX_WAITING, None));
        assert_eq!(p.get(&d(0)), Some(9));
    }
}
