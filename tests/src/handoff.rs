//! Handing hyperd a file by hand, as hyperctl does: one descriptor on the companion socket.

use std::io::{IoSlice, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use crate::TestDaemon;

/// Hands `fd` to the daemon's companion socket and returns its one-line answer: a token, or
/// `error: …`.
pub fn hand_over(d: &TestDaemon, fd: impl AsFd) -> String {
    try_hand_over(d, fd).unwrap()
}

/// [`hand_over`], or the error of a connection hyperd closed or refused.
pub fn try_hand_over(d: &TestDaemon, fd: impl AsFd) -> std::io::Result<String> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut conn = UnixStream::connect(hyperd_proto::fd_socket(&d.socket))?;
    let fds = [fd.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    rustix::net::sendmsg(
        &conn,
        &[IoSlice::new(b"F")],
        &mut control,
        SendFlags::empty(),
    )?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    Ok(answer)
}
