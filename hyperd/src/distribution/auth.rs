//! Basic auth from an htpasswd file of bcrypt entries (`htpasswd -B`): every request, `/v2/`
//! included, must carry a user and password the file admits, else 401 with the challenge
//! `WWW-Authenticate: Basic realm="hyperd"`. Any user of the file may read.
//!
//! bcrypt is slow by design (~50-100 ms a check at cost 10), and a pull makes a request per
//! blob, so a password once verified is remembered per user as its sha256 (one entry per user
//! of the file: bounded), and checks run off the async threads, [`MAX_CHECKS`] at a time, so a
//! flood of wrong passwords costs at most that many cores. An unknown user is checked against a
//! dummy hash, so that timing does not tell which users exist.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use store::Digest;
use tokio::sync::Semaphore;

use super::StartError;

/// bcrypt checks running at once.
const MAX_CHECKS: usize = 2;

/// The users of an htpasswd file and the passwords verified so far.
pub(super) struct Htpasswd {
    users: HashMap<String, String>,
    /// What an unknown user is checked against: a hash at the cost of the file's entries.
    dummy: String,
    verified: Mutex<HashMap<String, Digest>>,
    checks: Semaphore,
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
            verified: Mutex::default(),
            checks: Semaphore::new(MAX_CHECKS),
        }))
    }

    /// Whether an `Authorization` header names a user of the file with its password.
    pub(super) async fn admits(self: &Arc<Self>, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(basic) else {
            return false;
        };
        let remembered = Digest::of(password.as_bytes());
        if self.verified.lock().expect("htpasswd cache").get(&user) == Some(&remembered) {
            return true;
        }
        let Ok(_turn) = self.checks.acquire().await else {
            return false;
        };
        let hash = self.users.get(&user).cloned();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.clone());
        let checked = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if checked && known {
            let mut verified = self.verified.lock().expect("htpasswd cache");
            verified.insert(user, remembered);
        }
        checked && known
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
        assert!(!auth.admits(None).await);
        assert!(!auth.admits(Some(header("ann:no").as_bytes())).await);
        assert!(!auth.admits(Some(header("bob:pw").as_bytes())).await);
        assert!(auth.admits(Some(header("ann:pw").as_bytes())).await);
        // Remembered, and still only with that password.
        assert!(auth.admits(Some(header("ann:pw").as_bytes())).await);
        assert!(!auth.admits(Some(header("ann:pw2").as_bytes())).await);
    }
}
