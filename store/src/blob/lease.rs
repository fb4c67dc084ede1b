//! Pins: digests that in-flight loads and saves still need, which collection must not delete.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Blobs;
use crate::digest::Digest;

pub(crate) type Pins = Arc<Mutex<HashMap<Digest, usize>>>;

/// Digests pinned against collection; unpinned on drop.
pub(crate) struct Lease {
    pins: Pins,
    held: Vec<Digest>,
}

impl Lease {
    pub(super) fn new(pins: Pins) -> Self {
        Lease {
            pins,
            held: Vec::new(),
        }
    }

    /// Pins `digest`, then reports whether the store already holds it. Pin first, look second,
    /// so that a collection can never slip in between.
    pub(crate) fn pin(&mut self, blobs: &Blobs, digest: &Digest) -> bool {
        let mut pins = self.pins.lock().expect("pin lock poisoned");
        *pins.entry(digest.clone()).or_default() += 1;
        self.held.push(digest.clone());
        // Checked under the pin lock: a collection holds it while it deletes.
        blobs.exists(digest)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut pins = self.pins.lock().expect("pin lock poisoned");
        for d in &self.held {
            if let Some(n) = pins.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(d);
                }
            }
        }
    }
}
