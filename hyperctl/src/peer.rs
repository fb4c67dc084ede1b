//! Who serves the socket hyperctl talks to. Anyone who can write the socket's directory can put a
//! server of their own there; hyperctl sends a registry credential, or hands over a descriptor,
//! only to a hyperd run by root or by the caller (SO_PEERCRED of the very connection that carries
//! it). Other calls may go to a hyperd run by another user, which is how a shared one can run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// No connection made yet.
const NONE: u32 = u32::MAX;

/// The uid serving the gRPC channel's connections, and whether they must be trusted.
#[derive(Clone)]
pub(crate) struct Peer(Arc<State>);

struct State {
    socket: PathBuf,
    uid: AtomicU32,
    secrets: AtomicBool,
}

impl Peer {
    pub(crate) fn new(socket: &Path) -> Self {
        Peer(Arc::new(State {
            socket: socket.to_path_buf(),
            uid: AtomicU32::new(NONE),
            secrets: AtomicBool::new(false),
        }))
    }

    /// Called with each new connection's peer uid; refuses one that may not see what was sent.
    pub(crate) fn connected(&self, uid: u32) -> std::io::Result<()> {
        self.0.uid.store(uid, Ordering::SeqCst);
        if self.0.secrets.load(Ordering::SeqCst) {
            check(uid, &self.0.socket, "a registry credential")
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e))?;
        }
        Ok(())
    }

    /// Fails unless the channel's hyperd may be sent `what`; from now on every connection the
    /// channel opens is checked too, so a reconnection cannot reach another server.
    pub(crate) fn require_trusted(&self, what: &'static str) -> Result<(), Untrusted> {
        self.0.secrets.store(true, Ordering::SeqCst);
        check(self.0.uid.load(Ordering::SeqCst), &self.0.socket, what)
    }

    /// `credential`, once the channel's hyperd may be sent it; `None` needs no check.
    pub(crate) fn credential<T>(&self, credential: Option<T>) -> Result<Option<T>, Untrusted> {
        if credential.is_some() {
            self.require_trusted("a registry credential")?;
        }
        Ok(credential)
    }
}

/// Fails unless `uid`, serving `socket`, is root or the caller.
pub(crate) fn check(uid: u32, socket: &Path, what: &'static str) -> Result<(), Untrusted> {
    let me = rustix::process::geteuid().as_raw();
    if trusted(uid, me) {
        return Ok(());
    }
    Err(Untrusted {
        socket: socket.to_path_buf(),
        uid,
        me,
        what,
    })
}

/// Root, or the caller: anyone else might be serving a socket they put in hyperd's place.
fn trusted(uid: u32, me: u32) -> bool {
    uid == 0 || uid == me
}

/// The server on the socket is run by neither root nor the caller.
#[derive(Debug, thiserror::Error)]
#[error(
    "not sending {what} to {socket}: it is served by uid {uid}, neither root nor you (uid {me}), \
     so it may not be hyperd; check --socket, HYPERD_SOCKET and XDG_RUNTIME_DIR",
    socket = .socket.display()
)]
pub(crate) struct Untrusted {
    socket: PathBuf,
    uid: u32,
    me: u32,
    what: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_caller_are_trusted() {
        assert!(trusted(0, 1000));
        assert!(trusted(1000, 1000));
        assert!(!trusted(1001, 1000));
        assert!(!trusted(NONE, 1000));
    }

    #[test]
    fn a_connection_after_secrets_were_required_is_checked() {
        let me = rustix::process::geteuid().as_raw();
        let other = if me == 0 { 4242 } else { me + 1 };
        let peer = Peer::new(Path::new("/x"));
        peer.connected(other).unwrap();
        assert!(peer.require_trusted("a credential").is_err());
        let peer = Peer::new(Path::new("/x"));
        peer.connected(me).unwrap();
        peer.require_trusted("a credential").unwrap();
        assert!(peer.connected(other).is_err());
        peer.connected(0).unwrap();
    }
}
