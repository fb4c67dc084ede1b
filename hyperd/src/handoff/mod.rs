//! The companion socket, `<socket>.fd`: a local client sends hyperd one open file descriptor
//! (SCM_RIGHTS) and gets back a token that a LoadFile or SaveFile call redeems. The client opens
//! the file with its own permissions, so hyperd never opens a path on anyone's behalf. A second
//! socket rather than the gRPC connection itself, because tonic and hyper read the connection
//! as a byte stream and would drop ancillary data; rather than pidfd_getfd, because that needs
//! ptrace rights over the client, which an unprivileged hyperd lacks under Yama and a root one
//! should not use.

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

use tokens::TTL;
pub(crate) use tokens::{Refused, Tokens};

/// A client that connects and sends nothing is dropped after this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers clients on `listener` until `stop` is cancelled.
pub(crate) async fn serve(listener: UnixListener, tokens: Arc<Tokens>, stop: CancellationToken) {
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            () = stop.cancelled() => return,
        };
        match conn {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, tokens.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting on the fd socket");
                // Out of descriptors, most likely: let some close before trying again.
                tokio::time::sleep(Duration::from_millis(100)).await;
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
        format!("too many handed-over files waiting for uid {uid}; use or let them expire")
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
