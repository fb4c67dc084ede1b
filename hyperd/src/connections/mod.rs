//! The connections hyperd accepts, and what each may cost.
//!
//! A client on the socket is a local user, maybe hostile, maybe one of many tools. So that none
//! can starve the others or grow hyperd's memory:
//!
//! - **Caps.** Each connection is counted against its peer's uid (SO_PEERCRED, read at accept)
//!   and against the total, and refused (closed at once, logged once per burst) past either cap.
//!   Root and the uid hyperd runs as may go [`PRIVILEGED_RESERVE`] past the total, so that an
//!   administrator can still connect when every other uid together fills it; the per-uid cap
//!   holds for them too. The count is held by a [`Slot`] inside the connection's I/O object, so it
//!   is given back exactly when hyper drops the connection.
//! - **Deadline.** A client must send a request's headers within the stall limit of connecting,
//!   finish any header block within the limit of its first frame, and finish any frame within the
//!   limit of its first byte. A client that owes bytes past the limit is cut off (`conn.rs`); an
//!   idle connection that owes nothing is not (gRPC clients keep channels open between calls).
//! - **Buffered bytes.** h2 buffers a frame whole before decoding it, so hyperd advertises the
//!   16 KiB frame size every peer supports ([`crate::authority::MAX_IN_FRAME`]) rather than 1 MiB:
//!   a client that stops mid-frame leaves at most that in hyperd, not 1 MiB. The `:authority`
//!   rewriter holds at most one header block (64 KiB, see its module doc) and one frame.
//! - **Accept errors.** Out of descriptors (EMFILE, ENFILE) or kernel memory, accept fails at once
//!   again until something is freed; the loop sleeps [`BACKOFF`] between tries instead of spinning
//!   (tonic's own loop retries at once), and logs once per burst; so does any error that would
//!   repeat at once (a broken listener). Only a client gone before it was accepted (ECONNABORTED,
//!   EPROTO) is skipped at once. hyperd raises its soft descriptor limit to the hard one at
//!   start, so that the connection caps, not the descriptor limit, bound the connections.

mod conn;
mod count;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::net::{UnixListener, UnixStream};

use crate::metrics::Metrics;

pub(crate) use conn::Conn;
pub(crate) use count::{Caps, Gate, PRIVILEGED_RESERVE, Slot};

/// How long the accept loop waits before trying again when accept failed for want of
/// descriptors or memory (the pause hyper's and tokio's docs suggest).
pub(crate) const BACKOFF: Duration = Duration::from_millis(100);

/// Descriptors left for the work itself (store files, registry connections, handed-over files)
/// beyond the connections: below that, the start-up log warns.
const DESCRIPTORS_FOR_WORK: u64 = 1024;

/// What an operator may tune about connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections open at once, all uids together.
    pub total: usize,
    /// Connections open at once from one uid.
    pub per_uid: usize,
    /// How long a client may owe a request's headers or the rest of a frame.
    pub stall: Duration,
}

/// The connections accepted on `listener`, within `limits`. The stream never ends and never
/// yields an error; tonic drops it (closing the listener) at shutdown.
pub(crate) fn incoming(
    listener: UnixListener,
    limits: Limits,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = io::Result<Conn>> {
    let gate = Gate::new(Caps {
        total: limits.total,
        per_uid: limits.per_uid,
    })
    .counted(metrics);
    futures_util::stream::unfold((listener, gate), move |(listener, gate)| async move {
        let conn = accept(&listener, &gate, limits.stall).await;
        Some((Ok(conn), (listener, gate)))
    })
}

/// The next connection the caps admit.
async fn accept(listener: &UnixListener, gate: &Gate, stall: Duration) -> Conn {
    let mut failed = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if failed > 0 {
                    tracing::info!(failed, "accepting connections again");
                    failed = 0;
                }
                if let Some(slot) = admit(&stream, gate) {
                    return Conn::new(stream, slot, stall);
                }
                // Dropped: the client sees its connection closed.
            }
            // A client gone before its connection was accepted: nothing to wait for.
            Err(e) if client_gone(&e) => {
                tracing::debug!(error = %e, "accepting a connection failed")
            }
            // Out of descriptors or memory, or an error that would repeat at once (a broken
            // listener): waited out, never spun on.
            Err(e) => {
                if failed == 0 {
                    tracing::warn!(error = %e, backoff = ?BACKOFF, "cannot accept connections, retrying \
                        (logged again when one is accepted)");
                }
                failed += 1;
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

fn admit(stream: &UnixStream, gate: &Gate) -> Option<Slot> {
    match stream.peer_cred() {
        Ok(cred) => gate.admit(cred.uid()),
        Err(e) => {
            tracing::warn!(error = %e, "refusing a connection whose peer is unknown");
            None
        }
    }
}

/// Whether accept failed for want of something the whole process shares, which only time
/// (a connection closing) gives back.
fn client_gone(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::CONNABORTED | Errno::PROTO | Errno::INTR | Errno::AGAIN)
    )
}

/// Raises the soft limit on open descriptors to the hard one, as Go does for every program:
/// systemd's default soft limit of 1024 would run out before the connection caps do. Warns when
/// even the hard limit leaves too few descriptors for `limits`.
pub(crate) fn raise_descriptor_limit(limits: &Limits) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!(error = %e, "could not raise the soft limit on open files");
        }
    }
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let wanted = (limits.total + PRIVILEGED_RESERVE) as u64 + DESCRIPTORS_FOR_WORK;
    if now < wanted {
        tracing::warn!(
            open_files = now,
            wanted,
            "the limit on open files is lower than the connection caps and hyperd's work need: \
             raise it (LimitNOFILE=) or lower --max-connections"
        );
    }
}
