//! The listening sockets and default paths.

mod bind;
mod dirs;

use std::path::PathBuf;

use anyhow::{Context, bail};
use tokio::net::UnixListener;

pub use bind::bind;

/// `/var/lib/hyperd` for root, else `$XDG_DATA_HOME/hyperd` (or `~/.local/share/hyperd`). Without
/// either there is no default: a root in a shared directory such as `/tmp` could be created, and
/// then replaced, by another user first.
pub fn default_root() -> anyhow::Result<PathBuf> {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return Ok(PathBuf::from("/var/lib/hyperd"));
    }
    // The XDG base directory specification makes a relative path invalid, to be ignored.
    let absolute = |var| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    match (absolute("XDG_DATA_HOME"), absolute("HOME")) {
        (Some(d), _) => Ok(d.join("hyperd")),
        (_, Some(home)) => Ok(home.join(".local/share/hyperd")),
        _ => bail!(
            "no default store root for uid {}: neither XDG_DATA_HOME nor HOME is set to an \
             absolute path; set one, or name the root with --root or HYPERD_ROOT",
            uid.as_raw()
        ),
    }
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
