//! No default socket another user could prepare, and nothing secret sent to another user's socket.

use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Stdio;

use integration::bin;
use integration::fixtures::*;
use integration::users::OtherUser;

use super::{bare, give, hyperd_of};

/// The directory a non-root hyperd and hyperctl once fell back to without XDG_RUNTIME_DIR.
struct OldFallback(PathBuf);

impl Drop for OldFallback {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn without_a_runtime_directory_there_is_no_default_socket() {
    let user = OtherUser::create();
    let attacker = OtherUser::create();
    // The attacker prepares the old fallback directory with a socket of their own in it.
    let trap = OldFallback(PathBuf::from(format!("/tmp/hyperd-{}", user.uid)));
    let _ = std::fs::remove_dir_all(&trap.0);
    std::fs::create_dir(&trap.0).unwrap();
    std::fs::set_permissions(&trap.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let listener = UnixListener::bind(trap.0.join("hyperd.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    for p in [trap.0.join("hyperd.sock"), trap.0.clone()] {
        give(&p, &attacker);
    }
    let home = tempfile::tempdir().unwrap();
    give(home.path(), &user);

    let hyperd = bare(user.command(bin("hyperd")))
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&hyperd.stderr);
    assert!(!hyperd.status.success());
    assert!(stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    assert!(stderr.contains("--socket"), "{stderr}");

    // Without HOME either there is no default root: not one under /tmp.
    let hyperd = bare(user.command(bin("hyperd"))).output().unwrap();
    let stderr = String::from_utf8_lossy(&hyperd.stderr);
    assert!(!hyperd.status.success());
    assert!(stderr.contains("--root"), "{stderr}");
    assert!(!PathBuf::from(format!("/tmp/hyperd-{}/root", user.uid)).exists());

    for args in [
        &["images"][..],
        &["login", "-u", "u", "-p", "secret", "127.0.0.1:9"],
    ] {
        let ctl = bare(user.command(bin("hyperctl")))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&ctl.stderr);
        assert_eq!(ctl.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    }
    // Completion needs no socket.
    let ctl = bare(user.command(bin("hyperctl")))
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert!(ctl.status.success());
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        ErrorKind::WouldBlock,
        "nobody connected to the attacker's socket"
    );
}

#[tokio::test]
async fn hyperctl_sends_no_credential_or_descriptor_to_another_users_socket() {
    let attacker = OtherUser::create();
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    give(&theirs, &attacker);
    attacker.may_traverse(dir.path());
    let socket = theirs.join("hyperd.sock");
    let mut server = hyperd_of(
        &attacker,
        &theirs.join("root"),
        &socket,
        &dir.path().join("log"),
    );
    let ctl = |args: &[&str], stdin: &[u8]| {
        let mut child = bare(std::process::Command::new(bin("hyperctl")))
            .env("DOCKER_CONFIG", dir.path())
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // What carries no secret may go to a hyperd another user runs: that is how one is shared.
    assert_eq!(ctl(&["images"], b"").0, Some(0));

    std::fs::write(
        dir.path().join("config.json"),
        r#"{"auths":{"127.0.0.1:9":{"auth":"dTpzZWNyZXQ="}}}"#,
    )
    .unwrap();
    let img = Image::new(&["trust-1"], "amd64", Comp::None).await;
    let archive = dir.path().join("a.tar");
    std::fs::write(
        &archive,
        oci_archive(&[(&img, &[("io.containerd.image.name", "trust:1")])]).await,
    )
    .unwrap();
    let archive = archive.to_str().unwrap();
    let out = dir.path().join("out.tar");
    let out_path = out.to_str().unwrap();
    // A file's bytes are refused whether handed over or streamed (`--no-fd`, or a hyperd that
    // serves no companion socket).
    let refusals: [(&[&str], &str); 7] = [
        (
            &["login", "-u", "u", "--password-stdin", "127.0.0.1:9"],
            "a registry credential",
        ),
        (&["pull", "127.0.0.1:9/x:1"], "a registry credential"),
        (&["push", "127.0.0.1:9/x:1"], "a registry credential"),
        (
            &["load", "-i", archive],
            "the contents of the file -i names",
        ),
        (
            &["load", "--no-fd", "-i", archive],
            "the contents of the file -i names",
        ),
        (
            &["save", "-o", out_path, "trust:1"],
            "the contents of the file -o names",
        ),
        (
            &["save", "--no-fd", "-o", out_path, "trust:1"],
            "the contents of the file -o names",
        ),
    ];
    for (args, what) in refusals {
        let (code, stderr) = ctl(args, b"secret\n");
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("not sending {what}")), "{stderr}");
        assert!(
            stderr.contains(&format!("uid {}", attacker.uid)),
            "{stderr}"
        );
    }
    assert!(!out.exists());
    // No credential stored for that registry: the pull goes on, and fails at the registry.
    let (code, stderr) = ctl(&["pull", "127.0.0.1:10/x:1"], b"");
    assert_ne!(code, Some(0));
    assert!(!stderr.contains("not sending"), "{stderr}");
    server.kill().unwrap();
    server.wait().unwrap();
}
