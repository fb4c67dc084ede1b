//! `hyperctl load` leaves out the blobs hyperd holds, and what it loads is exactly what sending
//! the whole archive loads: names, IDs, digests, refusals.

use std::io::Write;
use std::process::{Output, Stdio};

use integration::TestDaemon;
use integration::fixtures::*;
use integration::tools::{p, unstamped};

/// Runs `hyperctl load` with `stdin` as its standard input and `args` after `load`.
fn load_from(d: &TestDaemon, stdin: Stdio, args: &[&str]) -> Output {
    d.ctl()
        .arg("load")
        .args(args)
        .stdin(stdin)
        .output()
        .expect("running hyperctl")
}

/// `hyperctl load` reading `bytes` from a pipe.
fn load_piped(d: &TestDaemon, bytes: &[u8], args: &[&str]) -> Output {
    let mut child = d
        .ctl()
        .arg("load")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // hyperctl may stop reading once hyperd has answered (bytes after the archive's end).
    match stdin.write_all(bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    drop(stdin);
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// `base` and `next` share their first layer; `next`'s archive names it `next:1`.
async fn shared_pair() -> (Image, Image, Vec<u8>, Vec<u8>) {
    let base = Image::new(&["shared", "base"], "amd64", Comp::None).await;
    let next = Image::new(&["shared", "next"], "amd64", Comp::None).await;
    let base_tar = oci_archive(&[(&base, &[("io.containerd.image.name", "base:1")])]).await;
    let next_tar = oci_archive(&[(&next, &[("io.containerd.image.name", "next:1")])]).await;
    (base, next, base_tar, next_tar)
}

#[tokio::test]
async fn an_incremental_load_gives_what_a_full_load_gives() {
    let (_, _, base_tar, next_tar) = shared_pair().await;
    let (a, b) = (TestDaemon::start(), TestDaemon::start());
    for d in [&a, &b] {
        d.ok(&["load", "-q", "-i", p(&d.write_file("base.tar", &base_tar))]);
    }
    // Streamed: a file handed over is read by hyperd itself, with nothing to leave out.
    let next = a.write_file("next.tar", &next_tar);
    let incremental = a.ok(&["load", "--no-fd", "-i", p(&next)]);
    let full = b.ok(&[
        "load",
        "--send-all",
        "--no-fd",
        "-i",
        p(&b.write_file("next.tar", &next_tar)),
    ]);
    // b held base too: sent whole, the shared blob is read but not written.
    assert!(
        full.starts_with("Loaded image: next:1\n1 of 4 blobs already stored ("),
        "{full}"
    );
    assert!(
        incremental.starts_with("Loaded image: next:1\n1 of 4 blobs already stored ("),
        "{incremental}"
    );
    assert!(incremental.ends_with(" not sent)\n"), "{incremental}");
    for args in [
        &["inspect", "next:1"][..],
        &["inspect", "base:1"],
        &["images", "--format", "json"],
    ] {
        assert_eq!(unstamped(&a.ok(args)), unstamped(&b.ok(args)), "{args:?}");
    }
    assert!(a.ok(&["check"]).contains(" 0 problems"));
}

#[tokio::test]
async fn a_reload_from_a_file_a_redirect_or_a_pipe_sends_no_blob() {
    let (base, _, base_tar, _) = shared_pair().await;
    let d = TestDaemon::start();
    let path = d.write_file("base.tar", &base_tar);
    d.ok(&["load", "-q", "-i", p(&path)]);
    let again = d.ok(&["load", "--no-fd", "-i", p(&path)]);
    assert!(
        again.starts_with("Loaded image: base:1\n4 of 4 blobs already stored ("),
        "{again}"
    );
    assert!(again.ends_with(" not sent)\n"), "{again}");
    // The same one line whichever way the archive goes: handed over, or sent whole.
    let (handed, whole) = (
        d.ok(&["load", "-i", p(&path)]),
        d.ok(&["load", "--send-all", "--no-fd", "-i", p(&path)]),
    );
    let said = |route: &str| again.replace(" not sent)", &format!(" {route})"));
    assert_eq!(handed, said("skipped"));
    assert_eq!(whole, said("not written"));
    let redirected = stdout(&load_from(
        &d,
        std::fs::File::open(&path).unwrap().into(),
        &["--no-fd"],
    ));
    assert_eq!(redirected, again);
    let piped = stdout(&load_piped(&d, &base_tar, &[]));
    assert_eq!(piped, again);
    assert_eq!(stdout(&load_piped(&d, &base_tar, &["-q"])), "");
    assert!(d.ok(&["images", "--format", "json"]).contains(&base.id()));
}

#[tokio::test]
async fn compressed_and_legacy_archives_are_sent_whole_and_load_the_same() {
    let (base, _, base_tar, _) = shared_pair().await;
    let d = TestDaemon::start();
    d.ok(&["load", "-q", "-i", p(&d.write_file("base.tar", &base_tar))]);
    let gz = d.write_file("base.tar.gz", &gzip(&base_tar).await);
    let gz_loaded = d.ok(&["load", "-i", p(&gz)]);
    assert!(
        gz_loaded.starts_with("Loaded image: base:1\n4 of 4 blobs already stored ("),
        "{gz_loaded}"
    );
    let legacy = docker_archive(&[(&base, &["legacy:1"])]).await;
    let path = d.write_file("legacy.tar", &legacy);
    assert_eq!(d.ok(&["load", "-i", p(&path)]), "Loaded image: legacy:1\n");
    assert!(d.ok(&["check"]).contains(" 0 problems"));
}

#[tokio::test]
async fn a_bad_blob_beside_a_left_out_one_is_refused_as_in_a_full_load() {
    let (_, next, base_tar, _) = shared_pair().await;
    let mut entries = oci_entries(&[(&next, &[("io.containerd.image.name", "next:1")])]);
    let layer = entries.last_mut().unwrap();
    layer.data[700] ^= 1;
    let bad = tar(&entries).await;
    let d = TestDaemon::start();
    d.ok(&["load", "-q", "-i", p(&d.write_file("base.tar", &base_tar))]);
    let path = d.write_file("bad.tar", &bad);
    let incremental = d.run(&["load", "-i", p(&path)]);
    let full = d.run(&["load", "--send-all", "-i", p(&path)]);
    assert!(!incremental.status.success());
    assert_eq!(incremental.status.code(), full.status.code());
    assert_eq!(incremental.stderr, full.stderr);
    assert!(
        String::from_utf8_lossy(&full.stderr).contains("digest"),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
    assert!(!d.ok(&["images"]).contains("next"));
}

#[tokio::test]
async fn bytes_after_the_end_of_the_archive_do_not_fail_a_load_hyperd_committed() {
    let (_, _, base_tar, _) = shared_pair().await;
    let mut padded = base_tar.clone();
    padded.extend(std::iter::repeat_n(0x5a, 16 << 20));
    let d = TestDaemon::start();
    let path = d.write_file("padded.tar", &padded);
    assert_eq!(d.ok(&["load", "-i", p(&path)]), "Loaded image: base:1\n");
    assert_eq!(stdout(&load_piped(&d, &padded, &["-q"])), "");
    assert!(d.ok(&["check"]).contains(" 0 problems"));
}
