//! Directories and sockets get their modes whatever the umask, nobody outside the socket's group
//! connects even while hyperd starts, and hyperd refuses a directory another user could change.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use integration::bin;
use integration::users::OtherUser;
use integration::wait;

use super::{bare, give, mode_and_group};

/// hyperd as root under `umask 000`, its sockets given to `gid`; returns once it reported ready.
fn start_under_umask_000(dir: &Path, socket: &Path, gid: u32) -> Child {
    let notify_socket = dir.join("notify.sock");
    let notify = wait::notify_socket(&notify_socket);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("hyperd.log"))
        .unwrap();
    let mut child = Command::new("sh")
        .args(["-c", r#"umask 000; exec "$0" "$@""#])
        .arg(bin("hyperd"))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--socket")
        .arg(socket)
        .arg("--group")
        .arg(gid.to_string())
        .env("NOTIFY_SOCKET", &notify_socket)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    if let Err(e) = wait::ready(&notify, &mut child, "hyperd") {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(dir.join("hyperd.log")).unwrap()
        );
    }
    child
}

fn terminate(mut child: Child) {
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn under_umask_000_directories_and_sockets_end_with_their_modes() {
    let member = OtherUser::create();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/hyperd/hyperd.sock");
    let child = start_under_umask_000(dir.path(), &socket, member.gid);
    for d in ["run", "run/hyperd"] {
        assert_eq!(mode_and_group(&dir.path().join(d)).0, 0o755, "{d}");
    }
    for s in [socket.clone(), hyperd_proto::fd_socket(&socket)] {
        assert_eq!(mode_and_group(&s), (0o660, member.gid), "{}", s.display());
    }
    assert_eq!(mode_and_group(&dir.path().join("root")).0, 0o700);
    // The private directories the sockets were bound in are gone.
    assert_eq!(
        std::fs::read_dir(socket.parent().unwrap()).unwrap().count(),
        2
    );
    terminate(child);

    // A user's hyperd, its runtime directory not yet made: private to that user.
    let user = OtherUser::create();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    give(&theirs, &user);
    user.may_traverse(dir.path());
    let runtime = theirs.join("run/user");
    let log = std::fs::File::create(dir.path().join("user.log")).unwrap();
    let mut child = bare(user.command("sh"))
        .args(["-c", r#"umask 000; exec "$0" --root "$1""#])
        .arg(bin("hyperd"))
        .arg(theirs.join("root"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let socket = runtime.join("hyperd.sock");
    wait::until(30, "the user's hyperd to bind", || {
        assert!(child.try_wait().unwrap().is_none(), "hyperd exited");
        hyperd_proto::fd_socket(&socket).exists()
    });
    for d in ["run", "run/user"] {
        assert_eq!(mode_and_group(&theirs.join(d)).0, 0o700, "{d}");
    }
    for s in [socket.clone(), hyperd_proto::fd_socket(&socket)] {
        assert_eq!(mode_and_group(&s), (0o660, user.gid), "{}", s.display());
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Connects to `paths` over and over as `user` (this thread alone takes the user's identity:
/// Linux keeps credentials per thread, and rustix changes only the calling thread's) until
/// `stop`, counting attempts and successes.
fn connect_as(
    user: &OtherUser,
    paths: Vec<std::path::PathBuf>,
    stop: Arc<AtomicBool>,
    counts: Arc<(AtomicU64, AtomicU64)>,
) -> std::thread::JoinHandle<()> {
    let (uid, gid) = (user.uid, user.gid);
    std::thread::spawn(move || {
        use rustix::thread::{set_thread_groups, set_thread_res_gid, set_thread_res_uid};
        let gid = rustix::fs::Gid::from_raw(gid);
        let uid = rustix::fs::Uid::from_raw(uid);
        set_thread_groups(&[]).unwrap();
        set_thread_res_gid(gid, gid, gid).unwrap();
        set_thread_res_uid(uid, uid, uid).unwrap();
        assert_eq!(rustix::process::geteuid(), uid);
        while !stop.load(Ordering::SeqCst) {
            for p in &paths {
                counts.0.fetch_add(1, Ordering::Relaxed);
                if std::os::unix::net::UnixStream::connect(p).is_ok() {
                    counts.1.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    })
}

#[test]
fn an_outsider_never_connects_while_hyperd_starts() {
    const STARTS: usize = 30;
    let (member, outsider) = (OtherUser::create(), OtherUser::create());
    let dir = tempfile::tempdir().unwrap();
    outsider.may_traverse(dir.path());
    let socket = dir.path().join("hyperd.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let paths = vec![socket.clone(), hyperd_proto::fd_socket(&socket)];
    let racer = connect_as(&outsider, paths, stop.clone(), counts.clone());
    for _ in 0..STARTS {
        terminate(start_under_umask_000(dir.path(), &socket, member.gid));
    }
    stop.store(true, Ordering::SeqCst);
    racer.join().unwrap();
    let (attempts, connected) = (
        counts.0.load(Ordering::SeqCst),
        counts.1.load(Ordering::SeqCst),
    );
    eprintln!(
        "{STARTS} starts, {attempts} connection attempts by an outsider, {connected} connected"
    );
    assert!(
        attempts > STARTS as u64,
        "the outsider tried {attempts} times"
    );
    assert_eq!(connected, 0, "an outsider connected during start-up");
}

#[test]
fn hyperd_refuses_a_socket_directory_another_user_could_change() {
    let other = OtherUser::create();
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    let open = dir.path().join("open");
    // Sticky like /tmp: another user cannot replace hyperd's socket there, but can take its name
    // while hyperd is stopped.
    let sticky = dir.path().join("sticky");
    let mine = dir.path().join("mine");
    for (d, mode) in [
        (&theirs, 0o755),
        (&open, 0o777),
        (&sticky, 0o1777),
        (&mine, 0o700),
    ] {
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    give(&theirs, &other);
    std::fs::write(mine.join("hyperd.sock"), "not a socket").unwrap();
    for (d, why) in [
        (&theirs, format!("belongs to uid {}", other.uid)),
        (&open, "writable by others".to_owned()),
        (&sticky, "writable by others".to_owned()),
        (&mine, "is not a socket".to_owned()),
    ] {
        let out = Command::new(bin("hyperd"))
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--socket")
            .arg(d.join("hyperd.sock"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}", d.display());
        assert!(stderr.contains(&why), "{stderr}");
    }
}
