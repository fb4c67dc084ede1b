//! Basic auth from an htpasswd file of bcrypt entries (`htpasswd -B`): every request, `/v2/`
//! included, must carry a user and password the file admits, else 401 with the challenge
//! `WWW-Authenticate: Basic realm="hyperd"`. Any user of the file may read; who may push is
//! the handler's question.
//!
//! bcrypt is slow by design (~50-100 ms a check at cost 10), and a pull makes a request per
//! blob, so a password once verified is remembered per user (one entry per user of the file:
//! bounded) as the sha256 of a key of this process's and the password, compared in constant
//! time. Checks run off the async threads, [`MAX_CHECKS`] at a time, and at most
//! [`MAX_WAITING`] wait for a turn: past that a request is refused at once (429), so a flood of
//! wrong passwords costs at most that many cores and that much memory. An unknown user is
//! checked against a dummy hash, so that timing does not tell which users exist.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use store::Digest;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::StartError;

/// bcrypt checks running at once.
const MAX_CHECKS: usize = 2;
/// bcrypt checks waiting for a turn.
const MAX_WAITING: usize = 64;

/// What a request's credentials are.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// A user of the file, with its password.
    User(String),
    /// None, or not a user's with its password.
    Denied,
    /// Not checked: too many checks are waiting.
    Busy,
}

/// The users of an htpasswd file and the passwords verified so far.
pub(super) struct Htpasswd {
    users: HashMap<String, String>,
    /// What an unknown user is checked against: a hash at the cost of the file's entries.
    dummy: String,
    /// Mixed into what is remembered of a password, so the cache holds nothing a table of
    /// sha256 sums could reverse.
    key: String,
    verified: Mutex<HashMap<String, Digest>>,
    checks: Semaphore,
    waiting: AtomicUsize,
}

impl Htpasswd {
    /// The bcrypt entries of the file at `path`; any other kind of entry is refused.
    pub(super) fn load(path: &Path) -> Result<Arc<Htpasswd>, StartError> {
        let bad = |e: String| StartError::Htpasswd(format!("{}: {e}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let users = parse(&text).map_err(bad)?;
        let cost = users
            .values()
            .find_map(|h| h.get(4..6)?.parse().ok())
            .unwrap_or(bcrypt::DEFAULT_COST);
        let dummy =
            bcrypt::hash("hyperd: no user's password", cost).map_err(|e| bad(e.to_string()))?;
        Ok(Arc::new(Htpasswd {
            users,
            dummy,
            key: crate::handoff::random_token(),
            verified: Mutex::default(),
            checks: Semaphore::new(MAX_CHECKS),
            waiting: AtomicUsize::new(0),
        }))
    }

    /// Whether the file has `user`.
    pub(super) fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Who an `Authorization` header names, if it is a user of the file with its password.
    pub(super) async fn admits(self: &Arc<Self>, authorization: Option<&[u8]>) -> Verdict {
        let Some((user, password)) = authorization.and_then(basic) else {
            return Verdict::Denied;
        };
        let remembered = Digest::of(format!("{}:{password}", self.key).as_bytes());
        let known_before = self
            .verified
            .lock()
            .expect("htpasswd cache")
            .get(&user)
            .is_some_and(|d| bool::from(d.hex().as_bytes().ct_eq(remembered.hex().as_bytes())));
        if known_before {
            return Verdict::User(user);
        }
        let Some(_waiting) = Waiting::enter(&self.waiting) else {
            return Verdict::Busy;
        };
        let Ok(_turn) = self.checks.acquire().await else {
            return Verdict::Denied;
        };
        let hash = self.users.get(&user).cloned();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let checked = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !(checked && known) {
            return Verdict::Denied;
        }
        let mut verified = self.verified.lock().expect("htpasswd cache");
        verified.insert(user.clone(), remembered);
        Verdict::User(user)
    }
}

/// A place among the checks waiting or running, given back when it drops.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WAITING + MAX_CHECKS).then_some(n + 1)
            })
            .ok()
            .map(|_| Waiting(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `user:hash` lines; blank lines and `#` comments skipped.
fn parse(text: &str) -> Result<HashMap<String, String>, String> {
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(format!("line {}: not user:hash", n + 1));
        };
        if !["$2y$", "$2a$", "$2b$"].iter().any(|p| hash.starts_with(p)) {
            return Err(format!(
                "line {}: user {user:?} has no bcrypt hash (make entries with htpasswd -B)",
                n + 1
            ));
        }
        users.insert(user.to_owned(), hash.to_owned());
    }
    Ok(users)
}

/// The user and password of `Basic <base64(user:password)>`.
fn basic(header: &[u8]) -> Option<(String, String)> {
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (user, password) = String::from_utf8(decoded)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))?;
    Some((user, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bcrypt_entries_are_taken() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let users = parse(&format!("# users\n\nann:{hash}\n")).unwrap();
        assert_eq!(users.len(), 1);
        assert!(
            parse("bob:$apr1$abc$def")
                .unwrap_err()
                .contains("htpasswd -B")
        );
        assert!(parse("bob:{SHA}abc").is_err());
        assert!(parse("bob").is_err());
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann:p:w")
        );
        assert_eq!(basic(header.as_bytes()), Some(("ann".into(), "p:w".into())));
        assert_eq!(basic(b"Bearer abc"), None);
        assert_eq!(basic(b"Basic !!!"), None);
    }

    #[tokio::test]
    async fn a_user_is_admitted_with_its_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, format!("ann:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
        let auth = Htpasswd::load(&file).unwrap();
        let header = |creds: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(creds)
            )
        };
        let ann = || Verdict::User("ann".to_owned());
        assert_eq!(auth.admits(None).await, Verdict::Denied);
        assert_eq!(
            auth.admits(Some(header("ann:no").as_bytes())).await,
            Verdict::Denied
        );
        assert_eq!(
            auth.admits(Some(header("bob:pw").as_bytes())).await,
            Verdict::Denied
        );
        assert_eq!(auth.admits(Some(header("ann:pw").as_bytes())).await, ann());
        // Remembered, and still only with that password.
        assert_eq!(auth.admits(Some(header("ann:pw").as_bytes())).await, ann());
        assert_eq!(
            auth.admits(Some(header("ann:pw2").as_bytes())).await,
            Verdict::Denied
        );
        assert!(auth.has_user("ann") && !auth.has_user("bob"));
    }

    #[test]
    fn waiting_checks_are_bounded() {
        let count = AtomicUsize::new(0);
        let places: Vec<_> = std::iter::from_fn(|| Waiting::enter(&count)).collect();
        assert_eq!(places.len(), MAX_WAITING + MAX_CHECKS);
        drop(places);
        assert!(Waiting::enter(&count).is_some());
    }
}
