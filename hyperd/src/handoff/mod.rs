//! The companion socket, `<socket>.fd`: a local client hands hyperd an open file instead of
//! streaming its bytes, for LoadFile and SaveFile. This is the one description of the protocol and
//! of why it is built this way; the wire contract is restated in `images.proto`.
//!
//! Why: a local load or save otherwise spends its time in copies that need not happen (hyperctl
//! reads the file, gRPC frames it, the socket copies it, hyperd parses it, and only then is it
//! hashed and written). Given the open file, hyperd reads headers with positioned reads and lets
//! the kernel copy bodies (`store/src/import/file.rs`, `store/src/export/out.rs`).
//!
//! The protocol. hyperd binds `<socket>.fd` beside its socket with the same group and mode, or
//! takes it from systemd as a second `ListenStream` whose name ends in `.fd`. A client connects and
//! sends one message with at least one byte of data and exactly one descriptor as SCM_RIGHTS
//! (Python: `socket.send_fds(sock, [b"F"], [fd])`). hyperd reads the sender's uid (SO_PEERCRED),
//! checks with fstat that the descriptor is a regular file, and answers one line before it closes
//! the connection: a token (128 random bits from getrandom, 32 hex digits), or `error: <reason>`
//! (not a regular file, more or fewer than one descriptor, the uid's quota reached, nothing sent
//! for five seconds). LoadFile or SaveFile redeems the token: only a caller whose uid, from the gRPC
//! connection's peer credentials, is the sender's; only once; within 30 s. hyperd closes the
//! descriptor when that call ends, and an unredeemed one when it expires. At most 16 per uid are held
//! at once, from the hand-over until the descriptor is closed (waiting for a call, or for a slot,
//! or in the call): each is an open descriptor in hyperd, and descriptors are a limit all users
//! share (`tokens.rs`). LoadFile needs the file open for reading; SaveFile open for writing and not for
//! appending, and writes from offset 0, cuts the file to the archive's length and syncs it before
//! it reports the result. Both are server-streaming: progress messages (bytes done), then the
//! result.
//!
//! What it guarantees. The client opened the file, so the kernel checked permissions at its `open`
//! and hyperd can reach nothing through it that the client could not; hyperd never opens a path on
//! a client's behalf. The descriptor is used only with positioned reads and writes, so the client's
//! file offset never moves. Nothing of a body passes through hyperd's heap on either path.
//!
//! Why not the alternatives. SCM_RIGHTS on the gRPC connection itself would need the bytes hyper
//! reads to carry ancillary data, which hyper's and tonic's I/O traits cannot pass (and the
//! `:authority` wrapper sits in that path too). `pidfd_getfd` needs ptrace rights over the client:
//! an unprivileged hyperd lacks them under Yama's default scope, and a root hyperd should not reach
//! into its clients. The companion socket is a few dozen lines, works the same for a root and an
//! unprivileged hyperd, and any language with `sendmsg` can use it.
//!
//! Compatibility. LoadFile and SaveFile are RPCs of their own rather than a token field in Load,
//! which would have changed Load's shape for old clients. An older hyperd has no companion socket
//! and answers UNIMPLEMENTED; hyperctl (`hyperctl/src/handoff.rs`) then streams. For a save,
//! hyperctl creates the file beside the target, hands it over, and renames it into place once
//! SaveFile reports it complete.

mod tokens;

use std::fs::File;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::connections::{Caps, Gate};
use tokens::TTL;
pub(crate) use tokens::random_token;
pub(crate) use tokens::{Redeemed, Refused, Tokens};

/// A client that connects and sends nothing is dropped after this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections to the companion socket at once, so that no uid uses up hyperd's descriptors
/// through it (each lives at most [`SEND_TIMEOUT`]): a uid may have as many in flight as it may
/// have calls waiting for a load slot.
const CAPS: Caps = Caps {
    total: 512,
    per_uid: 64,
};

/// Answers clients on `listener` until `stop` is cancelled.
pub(crate) async fn serve(listener: UnixListener, tokens: Arc<Tokens>, stop: CancellationToken) {
    let gate = Gate::new(CAPS);
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            () = stop.cancelled() => return,
        };
        match conn {
            Ok((stream, _)) => {
                let Some(slot) = stream.peer_cred().ok().and_then(|c| gate.admit(c.uid())) else {
                    continue; // Dropped: the client sees its connection closed.
                };
                let tokens = tokens.clone();
                tokio::spawn(async move {
                    answer(stream, tokens).await;
                    drop(slot);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting on the fd socket");
                // Out of descriptors, most likely: let some close before trying again.
                tokio::time::sleep(crate::connections::BACKOFF).await;
            }
        }
    }
}

async fn answer(mut stream: UnixStream, tokens: Arc<Tokens>) {
    let reply = match tokio::time::timeout(SEND_TIMEOUT, receive(&stream, &tokens)).await {
        Ok(Ok(token)) => format!("{token}\n"),
        Ok(Err(why)) => format!("error: {why}\n"),
        Err(_) => format!("error: nothing sent within {}s\n", SEND_TIMEOUT.as_secs()),
    };
    let _ = stream.write_all(reply.as_bytes()).await;
}

/// Receives one descriptor and registers it.
async fn receive(stream: &UnixStream, tokens: &Arc<Tokens>) -> Result<String, String> {
    let uid = stream
        .peer_cred()
        .map_err(|e| format!("reading the peer's credentials: {e}"))?
        .uid();
    let file = receive_fd(stream)
        .await
        .map_err(|e| format!("receiving the descriptor: {e}"))??;
    check(&file)?;
    let token = tokens.give(uid, file, Instant::now()).ok_or_else(|| {
        format!(
            "uid {uid} holds 16 handed-over files, waiting or in calls, its quota; let some \
             calls end or tokens expire"
        )
    })?;
    let expiring = tokens.clone();
    tokio::spawn(async move {
        tokio::time::sleep(TTL).await;
        expiring.expire(Instant::now());
    });
    tracing::debug!(uid, "file handed over");
    Ok(token)
}

/// Reads one message and the one descriptor it must carry.
async fn receive_fd(stream: &UnixStream) -> std::io::Result<Result<File, String>> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut data = [0u8; 64];
    stream
        .async_io(Interest::READABLE, || {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let msg = rustix::net::recvmsg(
                stream,
                &mut [IoSliceMut::new(&mut data)],
                &mut control,
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
            )?;
            let mut fds = Vec::new();
            for m in control.drain() {
                if let RecvAncillaryMessage::ScmRights(rights) = m {
                    fds.extend(rights);
                }
            }
            // More descriptors than fit are closed by the kernel and flagged.
            // Truncated with none received: hyperd itself could not take one (out of
            // descriptors), which is no fault of this client's message.
            if msg.flags.contains(ReturnFlags::CTRUNC) && fds.is_empty() {
                return Ok(Err(
                    "hyperd could not take the descriptor now; retry".to_owned()
                ));
            }
            if msg.flags.contains(ReturnFlags::CTRUNC) || fds.len() > 1 {
                return Ok(Err("send exactly one descriptor".to_owned()));
            }
            Ok(fds
                .pop()
                .map(File::from)
                .ok_or_else(|| "the message carried no descriptor (SCM_RIGHTS)".to_owned()))
        })
        .await
}

/// Only a regular file can be read or written at offsets and copied by the kernel.
fn check(file: &File) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let kind = file
        .metadata()
        .map_err(|e| format!("examining the descriptor: {e}"))?
        .file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO or pipe"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a file"
    };
    Err(format!(
        "the descriptor is {what}, not a regular file; stream it instead"
    ))
}
