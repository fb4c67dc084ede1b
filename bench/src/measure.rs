//! Measuring: a child's wall time and peak RSS, the daemon's peak RSS, medians.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// A finished child: wall time and peak RSS (KiB), from wait4.
pub(crate) struct Run {
    pub(crate) secs: f64,
    pub(crate) max_rss_kib: u64,
    /// User and system CPU seconds.
    pub(crate) cpu_secs: f64,
}

pub(crate) fn run(cmd: &mut Command) -> Run {
    try_run(cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

// The child is reaped by wait4, which std's Child does not offer and which alone reports its
// peak RSS.
/// Runs `cmd` to its end, stdout discarded; a failure is its wait status and stderr.
#[allow(clippy::zombie_processes)]
pub(crate) fn try_run(cmd: &mut Command) -> Result<Run, String> {
    // A spawned child starts as a copy of this process, and Linux carries the old address space's
    // peak RSS into the child's ru_maxrss across exec: forget ours (the layers built earlier) first.
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting own VmHWM");
    // A file, not a pipe: a child writing much to a pipe nobody reads would block.
    let mut stderr = tempfile::tempfile().expect("a file for stderr");
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; the pid is our own child, waited once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    if !(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let mut text = String::new();
        stderr.seek(std::io::SeekFrom::Start(0)).unwrap();
        stderr.read_to_string(&mut text).unwrap_or_default();
        return Err(format!("wait status {status}: {}", text.trim()));
    }
    let cpu = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Run {
        secs,
        max_rss_kib: usage.ru_maxrss as u64,
        cpu_secs: cpu(usage.ru_utime) + cpu(usage.ru_stime),
    })
}

pub(crate) fn sync() {
    run(&mut Command::new("sync"));
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub(crate) struct Daemon {
    child: std::process::Child,
    pub(crate) socket: PathBuf,
}

impl Daemon {
    pub(crate) fn start(bin_dir: &Path, dir: &Path) -> Daemon {
        Self::start_with(bin_dir, dir, &[])
    }

    /// A daemon started with these further flags.
    pub(crate) fn start_with(bin_dir: &Path, dir: &Path, args: &[&str]) -> Daemon {
        let socket = dir.join("bench.sock");
        // hyperd reports READY=1 here once it serves, as under systemd.
        std::fs::create_dir_all(dir).unwrap();
        let notify_socket = dir.join("notify.sock");
        let notify = integration::wait::notify_socket(&notify_socket);
        let mut child = Command::new(bin_dir.join("hyperd"))
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .env("RUST_LOG", "warn")
            .env("NOTIFY_SOCKET", &notify_socket)
            .spawn()
            .expect("starting hyperd");
        integration::wait::ready(&notify, &mut child, "hyperd").expect("starting hyperd");
        Daemon { child, socket }
    }

    /// Forgets the peak RSS so far, so the next reading is the next operation's own.
    pub(crate) fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("resetting VmHWM");
    }

    /// User and system CPU seconds hyperd has used so far (/proc/PID/stat, fields 14 and 15).
    pub(crate) fn cpu_secs(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The command name, in parentheses, may hold spaces: count fields after it.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // SAFETY: sysconf reads a constant of the system.
        ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
    }

    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
