//! The daemon's life: one per root, stale sockets, clean stop, clients that hang up.

use std::io::Write;
use std::process::Stdio;

use integration::TestDaemon;
use integration::fixtures::*;
use integration::wait::until;

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut d = TestDaemon::start();
    let status = d.terminate();
    assert!(status.success(), "{}", d.log());
    assert!(!d.socket.exists());
    assert!(d.log().contains("stopped"), "{}", d.log());
}

#[test]
fn a_second_daemon_on_the_same_root_is_refused() {
    let d = TestDaemon::start();
    let status = d.spawn().wait().unwrap();
    assert!(!status.success());
    assert!(d.log().contains("in use by another hyperd"), "{}", d.log());
    // The first one is untouched.
    d.ok(&["images"]);
}

#[test]
fn a_stale_socket_is_replaced() {
    let mut d = TestDaemon::start();
    d.kill();
    assert!(d.socket.exists(), "SIGKILL leaves the socket behind");
    d.restart();
    d.ok(&["images"]);
}

#[test]
fn socket_is_0660_and_root_0700() {
    use std::os::unix::fs::PermissionsExt;
    let d = TestDaemon::start();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.socket), 0o660);
    assert_eq!(mode(&d.root), 0o700);
}

/// A `hyperctl load` from stdin that has sent half of `archive` and waits for the rest.
fn half_a_load(d: &TestDaemon, archive: &[u8]) -> (std::process::Child, std::process::ChildStdin) {
    let started = d.log().matches("load started").count();
    let mut child = d
        .ctl()
        .args(["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&archive[..archive.len() / 2]).unwrap();
    stdin.flush().unwrap();
    until(10, "hyperd starting the load", || {
        d.log().matches("load started").count() > started
    });
    (child, stdin)
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_load_leaves_nothing() {
    let d = TestDaemon::start();
    let img = Image::new(&["hang-1", "hang-2", "hang-3"], "amd64", Comp::None).await;
    let bytes = oci_archive(&[(&img, &[("io.containerd.image.name", "hang:1")])]).await;
    let (mut child, stdin) = half_a_load(&d, &bytes);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    // The daemon notices the reset stream and drops the staged blobs.
    until(10, "cleaning the staging", || {
        std::fs::read_dir(d.root.join("ingest")).unwrap().count() == 0
    });
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(
        std::fs::read_dir(d.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

/// Whether a thread of process `pid` waits in the kernel for room in a pipe (`pipe_write`, or
/// `anon_pipe_write` in newer kernels).
fn blocked_in_pipe_write(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("wchan")).ok())
        .any(|wchan| wchan.ends_with("pipe_write"))
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_save_stops_the_daemons_work() {
    let d = TestDaemon::start();
    // Big enough that the save cannot finish into the pipe buffers alone.
    let img = noise_image("hangup", 4, 4 << 10, None).await;
    let f = d.path("big.tar");
    std::fs::write(
        &f,
        oci_archive(&[(&img, &[("io.containerd.image.name", "big:1")])]).await,
    )
    .unwrap();
    d.ok(&["load", "-i", f.to_str().unwrap()]);
    let mut child = d
        .ctl()
        .args(["save", "-f", "oci", "big:1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Read nothing; kill the client once its output pipe is full, so that the daemon is blocked
    // writing.
    until(10, "hyperctl blocking on its full output pipe", || {
        blocked_in_pipe_write(child.id())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The daemon is fine and the image can still be saved whole.
    let out = d
        .ctl()
        .args(["save", "-f", "oci", "big:1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let files = untar(&out.stdout).await;
    assert!(files.contains_key(&format!("blobs/sha256/{}", hex_of(&sha(&img.manifest)))));
    // Nothing stays pinned: removing frees every blob, at once or when the abandoned save ends.
    d.ok(&["rmi", "big:1"]);
    until(10, "freeing the blobs of a removed image", || {
        std::fs::read_dir(d.root.join("blobs/sha256"))
            .unwrap()
            .count()
            == 0
    });
}

#[tokio::test]
async fn sigterm_during_a_load_ends_it_and_leaves_nothing() {
    let mut d = TestDaemon::start();
    let img = Image::new(&["term-1", "term-2"], "amd64", Comp::None).await;
    let bytes = oci_archive(&[(&img, &[("io.containerd.image.name", "term:1")])]).await;
    let (child, stdin) = half_a_load(&d, &bytes);
    let status = d.terminate();
    assert!(status.success(), "{}", d.log());
    drop(stdin);
    let client = child.wait_with_output().unwrap();
    assert_eq!(
        client.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(String::from_utf8_lossy(&client.stderr).contains("shutting down"));
    assert_eq!(std::fs::read_dir(d.root.join("ingest")).unwrap().count(), 0);
    d.restart();
    assert_eq!(d.ok(&["images", "-q"]), "");
}
