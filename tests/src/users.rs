//! A second, unprivileged local user, for tests of what one user of a shared hyperd can do to
//! another. The tests run as root (CI does): the user is created with `useradd` and removed on
//! drop, and its commands run through `setpriv`.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A local user that exists while this value lives.
pub struct OtherUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl OtherUser {
    /// Creates a user with no home and no login shell. Panics when the tests do not run as root,
    /// so that a test needing a second user can never pass without one.
    pub fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        assert!(
            rustix::process::geteuid().is_root(),
            "tests with a second local user must run as root (useradd)"
        );
        let name = format!(
            "hyt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        // useradd locks /etc/passwd; tests running in parallel may find it locked for a moment.
        let mut tries = 0;
        loop {
            let out = Command::new("useradd")
                .args(["-M", "-U", "-s", "/usr/sbin/nologin", &name])
                .output()
                .expect("running useradd");
            if out.status.success() {
                break;
            }
            tries += 1;
            assert!(
                tries < 50,
                "useradd {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        OtherUser {
            uid: id("-u"),
            gid: id("-g"),
            name,
        }
    }

    /// `program` run as this user, with no supplementary groups.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--clear-groups")
            .arg("--")
            .arg(program);
        c
    }

    /// Lets this user pass through (not list) `dir` and each of its parents, as a shared
    /// hyperd's socket directory allows: test directories are private to root by default.
    pub fn may_traverse(&self, dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        for d in dir
            .ancestors()
            .filter(|d| d.starts_with(std::env::temp_dir()))
        {
            let mode = std::fs::metadata(d).unwrap().permissions().mode();
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o011)).unwrap();
        }
    }
}

impl Drop for OtherUser {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("userdel")
                .arg(&self.name)
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
