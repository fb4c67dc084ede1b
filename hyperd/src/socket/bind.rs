//! Binding hyperd's sockets so that nobody reaches one with wider rights than it ends with, under
//! any umask. A socket takes its mode from the umask when bound, and a mode set afterwards comes
//! too late for a client that connected meanwhile. So each is bound inside a fresh directory
//! beside its path that only hyperd may enter, given its group and mode there, and then renamed
//! into place: the listener keeps its socket whatever the socket's name.

use std::fs::Permissions;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use tokio::net::UnixListener;

use super::dirs;

/// The socket's mode: its owner and group may connect.
const SOCKET_MODE: u32 = 0o660;

/// Binds `path` with mode 0660 and group `group`, creating its directory if need be (see
/// `dirs.rs` for the directory's mode and the checks it must pass). A socket file nobody answers
/// on is stale and replaced; one that answers belongs to a running hyperd and is left alone.
pub fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<UnixListener> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    dirs::create(dir)?;
    dirs::check(dir)?;
    refuse_in_use(path)?;
    let private = tempfile::Builder::new()
        .prefix(".hyperd-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a private directory in {}", dir.display()))?;
    // tempfile asks for 0700; a umask can only have narrowed it, which would lock hyperd out.
    std::fs::set_permissions(private.path(), Permissions::from_mode(0o700))
        .with_context(|| format!("setting the mode of {}", private.path().display()))?;
    let staged = private.path().join("s");
    let listener =
        UnixListener::bind(&staged).with_context(|| format!("binding {}", staged.display()))?;
    if let Some(gid) = group {
        rustix::fs::chown(&staged, None, Some(rustix::fs::Gid::from_raw(gid)))
            .with_context(|| format!("giving {} to group {gid}", path.display()))?;
    }
    std::fs::set_permissions(&staged, Permissions::from_mode(SOCKET_MODE))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    std::fs::rename(&staged, path)
        .with_context(|| format!("moving the socket into place at {}", path.display()))?;
    Ok(listener)
}

/// Refuses `path` when a live hyperd answers there, or when it is something other than a
/// socket (which is not hyperd's to replace).
fn refuse_in_use(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("examining {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; remove it or choose another --socket",
            path.display()
        );
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("another hyperd is already serving on {}", path.display());
    }
    Ok(())
}
