//! Who may reach hyperd's socket, and whom hyperctl trusts (issue 23, items 1 and 2): no default
//! socket in a directory another user could create first; no directory another user could
//! replace a socket in; no socket reachable with wider rights than it ends with, under any umask
//! and even during start-up; no credential or descriptor sent to a socket another user serves.

mod modes;
mod trust;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use integration::bin;
use integration::users::OtherUser;
use integration::wait::until;

/// The permission bits of `path`, and its group.
fn mode_and_group(path: &Path) -> (u32, u32) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.mode() & 0o7777, meta.gid())
}

/// Gives `path` to `user`.
fn give(path: &Path, user: &OtherUser) {
    rustix::fs::chown(
        path,
        Some(rustix::fs::Uid::from_raw(user.uid)),
        Some(rustix::fs::Gid::from_raw(user.gid)),
    )
    .unwrap();
}

/// hyperd run by `user` on `root` and `socket` (both under a directory `user` owns), logging to
/// `log`; returns once both its sockets exist, so it serves.
fn hyperd_of(user: &OtherUser, root: &Path, socket: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut child = user
        .command(bin("hyperd"))
        .arg("--root")
        .arg(root)
        .arg("--socket")
        .arg(socket)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let fd_socket = hyperd_proto::fd_socket(socket);
    until(30, "the other user's hyperd to bind", || {
        assert!(child.try_wait().unwrap().is_none(), "hyperd exited");
        socket.exists() && fd_socket.exists()
    });
    child
}

/// A command with nothing of the test's environment but a PATH.
fn bare(mut c: Command) -> Command {
    c.env_clear().env("PATH", "/usr/bin:/bin:/usr/sbin:/sbin");
    c
}
