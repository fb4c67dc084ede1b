//! Handed-over files waiting for the call that uses them: each under a random single-use token,
//! bound to the uid that sent it, for a short while. A file counts against its uid's quota from
//! the hand-over until its descriptor is closed: while it waits for its call, and while the call
//! that redeemed it waits for a slot and works. Pure bookkeeping; the clock is passed in.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a token waits for its call: long enough for a client to connect and call, short
/// enough that a forgotten descriptor does not stay open in hyperd.
pub(crate) const TTL: Duration = Duration::from_secs(30);
/// Files one uid may have held, waiting for their call or in a call: each is an open descriptor
/// in hyperd, and descriptors are a limit every user shares.
const PER_UID: usize = 16;

/// Why a token was not honoured.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Never given, already used, or expired.
    Unknown,
    /// Given to another uid.
    OtherUser,
}

struct Waiting {
    uid: u32,
    file: File,
    expires: Instant,
}

#[derive(Default)]
pub(crate) struct Tokens {
    waiting: Mutex<HashMap<String, Waiting>>,
    /// Redeemed files still open, by uid.
    redeemed: Arc<Mutex<HashMap<u32, usize>>>,
}

/// A redeemed file, counted against its uid's quota until `held` drops: keep `held` until the
/// file is closed.
#[derive(Debug)]
pub(crate) struct Redeemed {
    pub(crate) file: File,
    pub(crate) held: Held,
}

/// One redeemed file's place in its uid's quota.
#[derive(Debug)]
pub(crate) struct Held {
    redeemed: Arc<Mutex<HashMap<u32, usize>>>,
    uid: u32,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut redeemed = self.redeemed.lock().expect("token lock poisoned");
        if let Some(n) = redeemed.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                redeemed.remove(&self.uid);
            }
        }
    }
}

impl Tokens {
    /// Keeps `file` for `uid` and returns its token, or `None` when `uid` holds its quota of
    /// files already (waiting, or redeemed and still open).
    pub(crate) fn give(&self, uid: u32, file: File, now: Instant) -> Option<String> {
        let mut waiting = self.waiting.lock().expect("token lock poisoned");
        waiting.retain(|_, w| w.expires > now);
        let in_calls = self.in_calls(uid);
        if waiting.values().filter(|w| w.uid == uid).count() + in_calls >= PER_UID {
            return None;
        }
        let token = random_token();
        waiting.insert(
            token.clone(),
            Waiting {
                uid,
                file,
                expires: now + TTL,
            },
        );
        Some(token)
    }

    /// Redeemed files of `uid` still open.
    fn in_calls(&self, uid: u32) -> usize {
        let redeemed = self.redeemed.lock().expect("token lock poisoned");
        redeemed.get(&uid).copied().unwrap_or(0)
    }

    /// The file behind `token`, which is used up, if `uid` was given it and it has not expired;
    /// it counts against the uid's quota until its [`Held`] drops. A token shown by another uid
    /// stays good for its owner.
    pub(crate) fn take(&self, token: &str, uid: u32, now: Instant) -> Result<Redeemed, Refused> {
        // The file moves from waiting to redeemed under the waiting lock, which `give` holds
        // while it counts both: a hand-over racing this redemption never sees it in neither.
        let mut waiting = self.waiting.lock().expect("token lock poisoned");
        let file = match waiting.get(token) {
            Some(w) if w.expires <= now => {
                waiting.remove(token);
                return Err(Refused::Unknown);
            }
            Some(w) if w.uid != uid => return Err(Refused::OtherUser),
            Some(_) => waiting.remove(token).expect("present").file,
            None => return Err(Refused::Unknown),
        };
        *self
            .redeemed
            .lock()
            .expect("token lock poisoned")
            .entry(uid)
            .or_default() += 1;
        drop(waiting);
        let held = Held {
            redeemed: self.redeemed.clone(),
            uid,
        };
        Ok(Redeemed { file, held })
    }

    /// Closes the files whose tokens have expired.
    pub(crate) fn expire(&self, now: Instant) {
        self.waiting
            .lock()
            .expect("token lock poisoned")
            .retain(|_, w| w.expires > now);
    }
}

/// 128 random bits from the kernel, as 32 lowercase hex digits.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("the kernel gave no random bytes: {e}"),
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> File {
        File::open("/dev/null").unwrap()
    }

    #[test]
    fn a_token_serves_its_uid_once() {
        let (tokens, now) = (Tokens::default(), Instant::now());
        let t = tokens.give(1000, file(), now).unwrap();
        assert_eq!(t.len(), 32);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(tokens.take(&t, 1000, now).is_ok());
        assert_eq!(tokens.take(&t, 1000, now).unwrap_err(), Refused::Unknown);
    }

    #[test]
    fn another_uid_is_refused_and_the_token_stays_good() {
        let (tokens, now) = (Tokens::default(), Instant::now());
        let t = tokens.give(1000, file(), now).unwrap();
        assert_eq!(tokens.take(&t, 0, now).unwrap_err(), Refused::OtherUser);
        assert_eq!(tokens.take(&t, 1001, now).unwrap_err(), Refused::OtherUser);
        assert!(tokens.take(&t, 1000, now).is_ok());
    }

    #[test]
    fn tokens_expire() {
        let (tokens, now) = (Tokens::default(), Instant::now());
        let t = tokens.give(1000, file(), now).unwrap();
        let late = now + TTL;
        assert_eq!(tokens.take(&t, 1000, late).unwrap_err(), Refused::Unknown);
        let t = tokens.give(1000, file(), now).unwrap();
        tokens.expire(late);
        assert!(tokens.waiting.lock().unwrap().is_empty());
        assert_eq!(tokens.take(&t, 1000, now).unwrap_err(), Refused::Unknown);
    }

    #[test]
    fn one_uid_may_keep_only_so_many_waiting() {
        let (tokens, now) = (Tokens::default(), Instant::now());
        for _ in 0..PER_UID {
            assert!(tokens.give(1000, file(), now).is_some());
        }
        assert!(tokens.give(1000, file(), now).is_none());
        assert!(tokens.give(1001, file(), now).is_some());
        assert!(tokens.give(1000, file(), now + TTL).is_some());
    }

    #[test]
    fn a_redeemed_file_counts_until_it_is_closed() {
        let (tokens, now) = (Tokens::default(), Instant::now());
        let mut open = Vec::new();
        for _ in 0..PER_UID {
            let t = tokens.give(1000, file(), now).unwrap();
            open.push(tokens.take(&t, 1000, now).unwrap());
        }
        assert!(tokens.give(1000, file(), now).is_none());
        assert!(tokens.give(1001, file(), now).is_some());
        open.pop();
        assert!(tokens.give(1000, file(), now).is_some());
        drop(open);
        assert!(tokens.redeemed.lock().unwrap().is_empty());
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(random_token(), random_token());
    }
}
