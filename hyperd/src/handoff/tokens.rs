//! Handed-over files waiting for the call that uses them: each under a random single-use token,
//! bound to the uid that sent it, for a short while. Pure bookkeeping; the clock is passed in.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a token waits for its call: long enough for a client to connect and call, short
/// enough that a forgotten descriptor does not stay open in hyperd.
pub(crate) const TTL: Duration = Duration::from_secs(30);
/// Files one uid may have waiting: each is an open descriptor in hyperd, and descriptors are a
/// limit every user shares.
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
}

impl Tokens {
    /// Keeps `file` for `uid` and returns its token, or `None` when `uid` has too many waiting.
    pub(crate) fn give(&self, uid: u32, file: File, now: Instant) -> Option<String> {
        let mut waiting = self.waiting.lock().expect("token lock poisoned");
        waiting.retain(|_, w| w.expires > now);
        if waiting.values().filter(|w| w.uid == uid).count() >= PER_UID {
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

    /// The file behind `token`, which is used up, if `uid` was given it and it has not expired.
    /// A token shown by another uid stays good for its owner.
    pub(crate) fn take(&self, token: &str, uid: u32, now: Instant) -> Result<File, Refused> {
        let mut waiting = self.waiting.lock().expect("token lock poisoned");
        match waiting.get(token) {
            Some(w) if w.expires <= now => {
                waiting.remove(token);
                Err(Refused::Unknown)
            }
            Some(w) if w.uid != uid => Err(Refused::OtherUser),
            Some(_) => Ok(waiting.remove(token).expect("present").file),
            None => Err(Refused::Unknown),
        }
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
fn random_token() -> String {
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
    fn tokens_differ() {
        assert_ne!(random_token(), random_token());
    }
}
