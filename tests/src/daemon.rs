//! The real `hyperd` binary on a temporary socket and root, and the real `hyperctl` against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of a workspace binary, next to the test executable's `deps/` directory. The README's
/// test command builds the binaries before the tests run.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A running hyperd, killed on drop.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub socket: PathBuf,
    /// When set, the root lives on a private tmpfs of this many MiB (a disk that fills up).
    tmpfs_mib: Option<u32>,
    /// Further hyperd flags.
    args: Vec<String>,
    child: Option<Child>,
}

impl TestDaemon {
    pub fn start() -> Self {
        Self::start_with(None, &[])
    }

    /// A daemon started with these further flags.
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_with(None, args)
    }

    /// A daemon whose root is a tmpfs of `mib` MiB, mounted in a private user and mount namespace
    /// (`unshare -Urm`), so a full disk needs neither root nor a host mount. The root is only
    /// visible to hyperd; inspect it through the API.
    pub fn start_on_small_disk(mib: u32) -> Self {
        Self::start_with(Some(mib), &[])
    }

    fn start_with(tmpfs_mib: Option<u32>, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let socket = dir.path().join("hyperd.sock");
        let mut d = TestDaemon {
            dir,
            root,
            socket,
            tmpfs_mib,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        d.child = Some(d.spawn());
        d.wait_ready();
        d
    }

    /// Starts another hyperd process on this daemon's root and socket, without waiting.
    pub fn spawn(&self) -> Child {
        let mut cmd = match self.tmpfs_mib {
            None => {
                let mut c = Command::new(bin("hyperd"));
                c.arg("--root").arg(&self.root);
                c
            }
            Some(mib) => {
                std::fs::create_dir_all(&self.root).expect("creating the mount point");
                let mut c = Command::new("unshare");
                c.args(["-Urm", "sh", "-c"])
                    .arg(format!(r#"mount -t tmpfs -o size={mib}m tmpfs "$1" && exec "$0" --root "$1/store" --socket "$2""#))
                    .arg(bin("hyperd"))
                    .arg(&self.root)
                    .arg(&self.socket);
                c
            }
        };
        if self.tmpfs_mib.is_none() {
            cmd.arg("--socket").arg(&self.socket);
        }
        cmd.args(&self.args);
        // A file, not a pipe: a pipe nobody drains fills up and blocks the daemon mid-log.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("hyperd.log"))
            .expect("opening the daemon log");
        cmd.env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning hyperd")
    }

    /// Everything every hyperd of this test logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hyperd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let out = self.child.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "hyperd exited with {status}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "hyperd did not listen on {} within 30s",
            self.socket.display()
        );
    }

    /// Restarts on the same root, as after a crash or an upgrade.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(self.spawn());
        self.wait_ready();
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and how hyperd exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon is running");
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("sending SIGTERM");
        child.wait().expect("waiting for hyperd")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon is running").id()
    }

    /// hyperd's peak resident memory so far, in MiB (VmHWM).
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("reading the daemon's status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kib / 1024
    }

    /// Forgets the peak so far, so that the next reading is of what follows alone.
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").expect("resetting VmHWM");
    }

    /// A hyperctl command aimed at this daemon.
    pub fn ctl(&self) -> Command {
        let mut c = Command::new(bin("hyperctl"));
        c.arg("--socket").arg(&self.socket);
        c
    }

    /// Runs hyperctl with `args` and returns its output, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.ctl()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running hyperctl")
    }

    /// Runs hyperctl and returns stdout, failing the test if it did not succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "hyperctl {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// A path inside this daemon's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}
