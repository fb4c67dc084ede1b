//! The directory a socket is bound in: created with an explicit mode whatever the umask, and
//! refused when a user other than hyperd's and root could replace the socket in it.

use std::fs::{DirBuilder, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};

/// The mode of a directory hyperd creates for its socket. Root's may be entered by all: the
/// socket's own mode (0660, and its group) decides who connects. A user's is theirs alone.
pub(super) const fn created_mode(root: bool) -> u32 {
    if root { 0o755 } else { 0o700 }
}

/// Creates `dir` and each missing parent with [`created_mode`]. The mode is set again once
/// created, so that a umask narrower than usual does not leave it unusable either; a wider one
/// never widens it, since `mkdir` can only remove bits.
pub(super) fn create(dir: &Path) -> anyhow::Result<()> {
    let mode = created_mode(rustix::process::geteuid().is_root());
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err())
        .collect();
    for d in missing.into_iter().rev() {
        match DirBuilder::new().mode(mode).create(d) {
            Ok(()) => std::fs::set_permissions(d, Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of {}", d.display()))?,
            // Another process made it meanwhile: checked like any existing directory.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", d.display())),
        }
    }
    Ok(())
}

/// Refuses `dir` when it or a directory above it lets another user replace its entries (and so
/// put a socket of their own where clients look for hyperd's).
pub(super) fn check(dir: &Path) -> anyhow::Result<()> {
    let me = rustix::process::geteuid().as_raw();
    let real =
        std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    for d in real.ancestors() {
        let meta = std::fs::metadata(d).with_context(|| format!("examining {}", d.display()))?;
        // The sticky bit keeps others from replacing hyperd's socket, not from taking its name
        // while hyperd is stopped: the socket's own directory must be closed to them.
        let sticky_is_enough = d != real;
        if let Some(why) = open_to_others(meta.mode(), meta.uid(), me, sticky_is_enough) {
            bail!(
                "refusing to bind a socket in {}: {} {why}, so another user could replace the \
                 socket; use a directory only root and uid {me} can write (chmod go-w, or \
                 another --socket)",
                dir.display(),
                d.display()
            );
        }
    }
    Ok(())
}

/// Why a directory of `mode` owned by `owner` lets a user other than `me` and root rename,
/// replace or create its entries, if it does. With `sticky_is_enough`, the sticky bit (as on
/// `/tmp`) keeps others' entries safe, which is all a directory above the socket's must do.
fn open_to_others(mode: u32, owner: u32, me: u32, sticky_is_enough: bool) -> Option<String> {
    if owner != 0 && owner != me {
        return Some(format!("belongs to uid {owner}"));
    }
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(sticky && sticky_is_enough) {
        return Some(format!(
            "is writable by others (mode {:04o}; the socket's own directory may not be, sticky \
             or not)",
            mode & 0o7777
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_root_or_mine_not_writable_by_others_is_safe() {
        for (mode, owner) in [(0o755, 0), (0o700, 1000), (0o711, 1000)] {
            assert_eq!(
                open_to_others(mode, owner, 1000, false),
                None,
                "{mode:o} {owner}"
            );
        }
        // Sticky and root's, as /tmp: safe above the socket's directory, not as it.
        assert_eq!(open_to_others(0o1777, 0, 1000, true), None);
        assert!(open_to_others(0o1777, 0, 1000, false).is_some());
    }

    #[test]
    fn another_owner_or_a_writable_directory_without_sticky_bit_is_refused() {
        for (mode, owner) in [(0o700, 1001), (0o777, 0), (0o770, 1000), (0o757, 0)] {
            assert!(
                open_to_others(mode, owner, 1000, true).is_some(),
                "{mode:o} {owner}"
            );
        }
        // Sticky, but another user's: its owner may still rename anything in it.
        assert!(open_to_others(0o1777, 1001, 1000, true).is_some());
    }

    #[test]
    fn created_directories_are_private_to_a_user() {
        assert_eq!(created_mode(false), 0o700);
        assert_eq!(created_mode(true) & 0o022, 0);
    }

    #[test]
    fn created_directories_get_their_mode() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        create(&dir).unwrap();
        let want = created_mode(rustix::process::geteuid().is_root());
        for d in [base.path().join("a"), dir.clone()] {
            let mode = std::fs::metadata(&d).unwrap().mode() & 0o7777;
            assert_eq!(mode, want, "{}", d.display());
        }
        check(&dir).unwrap();
    }
}
