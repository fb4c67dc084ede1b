//! The real `hyperd` binary on a temporary socket and root, and the real `hyperctl` against it.

use std::collections::BTreeSet;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::wait;

/// The target profile directory the test executable runs from (`target/debug`): the workspace's
/// binaries are there, beside its `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target profile directory")
        .to_path_buf()
}

/// Path of a workspace binary in the profile directory. The README's test command builds the
/// binaries before the tests run.
pub fn bin(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
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

    /// `start_on_small_disk` with these further flags.
    pub fn start_on_small_disk_with_args(mib: u32, args: &[&str]) -> Self {
        Self::start_with(Some(mib), args)
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
        d.launch();
        d
    }

    /// Starts another hyperd process on this daemon's root and socket, without waiting.
    pub fn spawn(&self) -> Child {
        self.command().spawn().expect("spawning hyperd")
    }

    /// Starts hyperd and waits until it reports READY=1 through sd_notify, as it does under
    /// systemd: hyperd sends it once its socket serves.
    fn launch(&mut self) {
        // A new socket for each start, so that no message of an earlier hyperd is read.
        let notify_socket = self.dir.path().join("notify.sock");
        let notify = wait::notify_socket(&notify_socket);
        let child = self
            .command()
            .env("NOTIFY_SOCKET", &notify_socket)
            .spawn()
            .expect("spawning hyperd");
        self.child = Some(child);
        self.wait_ready(&notify);
    }

    /// hyperd as this daemon runs it: its flags, and its log appended to `hyperd.log`.
    fn command(&self) -> Command {
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
                    .arg(format!(r#"mount -t tmpfs -o size={mib}m tmpfs "$1" && r=$1 s=$2 && shift 2 && exec "$0" --root "$r/store" --socket "$s" "$@""#))
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
            .stderr(log);
        cmd
    }

    /// Everything every hyperd of this test logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hyperd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, notify: &UnixDatagram) {
        let child = self.child.as_mut().expect("daemon is running");
        if let Err(e) = wait::ready(notify, child, "hyperd") {
            self.child = None;
            panic!("{e}: {}", self.log());
        }
    }

    /// Restarts on the same root, as after a crash or an upgrade.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
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
        output(self.ctl(), args)
    }

    /// Runs hyperctl and returns stdout, failing the test if it did not succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    /// Runs hyperctl with registry credentials from `docker_config` alone (as DOCKER_CONFIG), and
    /// returns its output whatever the exit status.
    pub fn run_with_config(&self, docker_config: &Path, args: &[&str]) -> Output {
        let mut ctl = self.ctl();
        ctl.env("DOCKER_CONFIG", docker_config);
        output(ctl, args)
    }

    /// `run_with_config`, failing the test if hyperctl did not succeed; returns stdout.
    pub fn ok_with_config(&self, docker_config: &Path, args: &[&str]) -> String {
        succeeded(args, self.run_with_config(docker_config, args))
    }

    /// What `hyperctl inspect` says of `image`.
    pub fn inspect(&self, image: &str) -> serde_json::Value {
        let all: serde_json::Value =
            serde_json::from_str(&self.ok(&["inspect", image])).expect("inspect prints JSON");
        all[0].clone()
    }

    /// Every event hyperd's log holds that passes `filters` (`type=…`, `image=…`), as
    /// `hyperctl events --format json` prints them, oldest first; `--until 0s` (now) ends the
    /// stream after the replay.
    pub fn logged_events(&self, filters: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec![
            "events", "--since", "0", "--until", "0s", "--format", "json",
        ];
        for f in filters {
            args.extend(["--filter", f]);
        }
        self.ok(&args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// The names of the blob files in the store (none before the first blob).
    pub fn blob_files(&self) -> BTreeSet<String> {
        let Ok(dir) = std::fs::read_dir(self.root.join("blobs/sha256")) else {
            return BTreeSet::new();
        };
        dir.map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    /// Writes `bytes` to a file of this name in the daemon's temporary directory.
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("writing a test file");
        path
    }

    /// A path inside this daemon's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn output(mut ctl: Command, args: &[&str]) -> Output {
    ctl.args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running hyperctl")
}

fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "hyperctl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}
