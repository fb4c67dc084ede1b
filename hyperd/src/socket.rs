//! The listening socket and default paths.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::net::UnixListener;

/// `/var/lib/hyperd` for root, else `$XDG_DATA_HOME/hyperd` (or `~/.local/share/hyperd`).
pub fn default_root() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/hyperd");
    }
    match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
        (Some(d), _) if !d.is_empty() => PathBuf::from(d).join("hyperd"),
        (_, Some(home)) => PathBuf::from(home).join(".local/share/hyperd"),
        _ => PathBuf::from(format!(
            "/tmp/hyperd-{}/root",
            rustix::process::geteuid().as_raw()
        )),
    }
}

/// Binds `path` with mode 0660. A socket file nobody answers on is stale and replaced; one that
/// answers belongs to a running hyperd and is left alone.
pub fn bind(path: &Path, group: Option<u32>) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another hyperd is already serving on {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    if let Some(gid) = group {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
            .with_context(|| format!("giving {} to group {gid}", path.display()))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("setting mode of {}", path.display()))?;
    Ok(listener)
}

/// The listening sockets systemd passed (socket activation), if it passed any: hyperd's socket,
/// and the companion socket for handed-over files when one of them is named `*.fd`.
pub fn activated_listeners() -> anyhow::Result<Option<(UnixListener, Option<UnixListener>)>> {
    use std::os::fd::FromRawFd;
    let (mut main, mut companion) = (None, None);
    for fd in sd_notify::listen_fds().context("reading LISTEN_FDS")? {
        // SAFETY: LISTEN_PID named this process, so the passed descriptors were handed to it
        // alone by the socket activation protocol and nothing else in the process owns them.
        let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
        std_listener
            .set_nonblocking(true)
            .context("setting the passed socket non-blocking")?;
        let is_fd = std_listener
            .local_addr()
            .ok()
            .and_then(|a| {
                a.as_pathname()
                    .map(|p| p.extension() == Some("fd".as_ref()))
            })
            .unwrap_or(false);
        let listener =
            UnixListener::from_std(std_listener).context("adopting the passed socket")?;
        if is_fd {
            companion = Some(listener);
        } else {
            main = Some(listener);
        }
    }
    Ok(main.map(|m| (m, companion)))
}

/// A group given by name or number. A name is looked up through the C library's NSS, as `chgrp`
/// does (so LDAP, sssd or systemd's userdb groups too), which is why nix and not rustix does it.
pub fn group_id(group: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group)
        .with_context(|| format!("looking up group {group}"))?
    {
        Some(g) => Ok(g.gid.as_raw()),
        None => bail!("no group named {group}"),
    }
}
