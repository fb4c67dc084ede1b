//! Waiting for a signal, or for a condition the test can observe (a file gone, a log line, a
//! count) where no signal exists: a bounded poll that fails the test loudly at its deadline.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// How long a daemon may take to report that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A datagram socket at `path` (replacing whatever was there) for a daemon's sd_notify messages:
/// pass `path` to it as NOTIFY_SOCKET, as systemd does.
pub fn notify_socket(path: &Path) -> UnixDatagram {
    let _ = std::fs::remove_file(path);
    UnixDatagram::bind(path).expect("binding the readiness socket")
}

/// Blocks on `notify` until `child` (named `what` in errors) sends READY=1, as hyperd and
/// containerd do once they serve. The wait wakes every quarter second only to notice a daemon
/// that exited instead of becoming ready; the error says which, or that the deadline passed (and
/// the daemon is killed).
pub fn ready(notify: &UnixDatagram, child: &mut Child, what: &str) -> Result<(), String> {
    notify
        .set_read_timeout(Some(Duration::from_millis(250)))
        .expect("setting the readiness socket's timeout");
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut buf = [0u8; 512];
    loop {
        match notify.recv(&mut buf) {
            Ok(n)
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1") =>
            {
                return Ok(());
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("reading {what}'s readiness socket: {e}")),
        }
        if let Some(status) = child.try_wait().expect("waiting for the daemon") {
            return Err(format!("{what} exited with {status} before it was ready"));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{what} did not report READY=1 within {READY_TIMEOUT:?}"
            ));
        }
    }
}

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(20);

/// Checks `check` until it holds, failing the test after `secs` seconds.
pub fn until(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {secs}s"
        );
        std::thread::sleep(POLL);
    }
}

/// `until` for a check that awaits, without blocking the runtime.
pub async fn eventually<F: AsyncFnMut() -> bool>(secs: u64, what: &str, mut check: F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {secs}s"
        );
        tokio::time::sleep(POLL).await;
    }
}
