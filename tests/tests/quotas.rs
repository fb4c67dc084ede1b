//! One uid cannot starve the others: at its quota of leases, open writes, write slots, load
//! slots and handed-over files it is refused (RESOURCE_EXHAUSTED, QUOTA_REACHED) while another
//! uid's calls still work; refs are per uid; root lists and deletes another uid's leases with
//! `hyperctl leases`.

use std::process::Command;

use hyperd_proto::reason_of;
use hyperd_proto::tonic::Code;
use hyperd_proto::v1::content_service_client::ContentServiceClient;
use hyperd_proto::v1::image_service_client::ImageServiceClient;
use hyperd_proto::v1::{self, ErrorReason};
use integration::fixtures::{noise, noise_image, oci_archive, sha};
use integration::python::PYTHON_DIR;
use integration::tools::sh;
use integration::users::OtherUser;
use integration::wait::eventually;
use integration::{TestDaemon, bin};
use tokio_stream::wrappers::ReceiverStream;

type Content = ContentServiceClient<hyperd_proto::tonic::transport::Channel>;

/// A daemon whose socket `user` may use, and stubs from the protos `user` may import.
fn shared_daemon(user: &OtherUser) -> TestDaemon {
    let d = TestDaemon::start_with_args(&["--group", &user.gid.to_string()]);
    user.may_traverse(d.dir.path());
    let generated = d.path("py");
    std::fs::create_dir(&generated).unwrap();
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    sh(Command::new("/usr/bin/python3")
        .args(["-m", "grpc_tools.protoc", "-I", proto_dir, "--python_out"])
        .arg(&generated)
        .arg("--grpc_python_out")
        .arg(&generated)
        .args(["hyperd/v1/content.proto"]));
    sh(Command::new("chmod").arg("-R").arg("a+rX").arg(&generated));
    d
}

/// `quota_user.py` in `mode`, run as `user`: what it printed.
fn as_user(d: &TestDaemon, user: &OtherUser, mode: &str) -> String {
    let out = user
        .command("/usr/bin/python3")
        .arg(format!("{PYTHON_DIR}/quota_user.py"))
        .arg(&d.socket)
        .arg(d.path("py"))
        .arg(mode)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// hyperctl run as `user` against the daemon's socket.
fn hyperctl_as(d: &TestDaemon, user: &OtherUser) -> Command {
    let mut c = user.command(bin("hyperctl"));
    c.arg("--socket").arg(&d.socket);
    c
}

/// `file` in the daemon's directory: an archive of one small image named `name`, which any
/// user may read.
async fn named_archive(d: &TestDaemon, file: &str, name: &str) -> std::path::PathBuf {
    let img = noise_image(name, 1, 4, None).await;
    let path = d.path(file);
    std::fs::write(
        &path,
        oci_archive(&[(&img, &[("io.containerd.image.name", name)])]).await,
    )
    .unwrap();
    sh(Command::new("chmod").arg("a+r").arg(&path));
    path
}

async fn content(d: &TestDaemon) -> Content {
    ContentServiceClient::new(hyperd_proto::connect(d.socket.clone()).await.unwrap())
}

/// A Write stream of `blob` under `reference` that sends its first `sent` bytes and stays open.
fn open_write(
    c: &Content,
    reference: &str,
    blob: &[u8],
    sent: usize,
) -> tokio::task::JoinHandle<Result<v1::WriteResponse, hyperd_proto::tonic::Status>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let first = v1::WriteRequest {
        r#ref: reference.into(),
        expected: sha(blob),
        total: blob.len() as u64,
        data: blob[..sent].to_vec().into(),
        ..v1::WriteRequest::default()
    };
    let mut c = c.clone();
    tokio::spawn(async move {
        tx.send(first).await.unwrap();
        let r = c
            .write(ReceiverStream::new(rx))
            .await
            .map(|r| r.into_inner());
        drop(tx);
        r
    })
}

type LoadCall = tokio::task::JoinHandle<
    Result<hyperd_proto::tonic::Response<v1::LoadResponse>, hyperd_proto::tonic::Status>,
>;

/// A Load stream, on a connection of its own, that sends its options and then nothing.
async fn stalled_load(d: &TestDaemon) -> (tokio::sync::mpsc::Sender<v1::LoadRequest>, LoadCall) {
    let mut images =
        ImageServiceClient::new(hyperd_proto::connect(d.socket.clone()).await.unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(v1::LoadRequest {
        part: Some(v1::load_request::Part::Options(v1::LoadOptions::default())),
    })
    .await
    .unwrap();
    let task = tokio::spawn(async move { images.load(ReceiverStream::new(rx)).await });
    (tx, task)
}

fn quota_reached(s: &hyperd_proto::tonic::Status) -> bool {
    s.code() == Code::ResourceExhausted && reason_of(s) == Some(ErrorReason::QuotaReached)
}

#[tokio::test]
async fn a_uid_at_its_lease_quota_leaves_others_alone_and_root_lists_and_frees_its_leases() {
    let user = OtherUser::create();
    let d = shared_daemon(&user);
    assert_eq!(
        as_user(&d, &user, "fill"),
        "leases 1024 RESOURCE_EXHAUSTED QUOTA_REACHED\nopen mine 1\n"
    );
    // Root still makes leases, and the user's ref is not root's.
    let mut c = content(&d).await;
    let lease = c
        .create_lease(v1::CreateLeaseRequest { ttl_seconds: 60 })
        .await
        .unwrap()
        .into_inner();
    let status = |r: &str| v1::StatusRequest { r#ref: r.into() };
    let e = c.status(status("mine")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Nor is root's the user's: Status and Abort see nothing, and the write stays.
    let blob = noise("theirs", 4);
    let theirs = open_write(&c, "theirs", &blob, 2);
    eventually(10, "root's write open", async || {
        c.clone()
            .status(status("theirs"))
            .await
            .is_ok_and(|s| s.into_inner().offset == 2)
    })
    .await;
    assert_eq!(
        as_user(&d, &user, "other"),
        "status NOT_FOUND\nabort NOT_FOUND\n"
    );
    assert_eq!(
        c.status(status("theirs"))
            .await
            .unwrap()
            .into_inner()
            .offset,
        2
    );
    theirs.abort();

    // Root sees every lease with its uid; the user sees its own only.
    let listed = d.ok(&["leases", "ls"]);
    let uid = user.uid.to_string();
    let users: Vec<&str> = listed
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(uid.as_str()))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(users.len(), 1024, "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&lease.id) && l.contains("   0   "))
    );
    let own = hyperctl_as(&d, &user)
        .args(["leases", "ls", "-q"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&own.stdout).lines().count(), 1024);
    // The user may not delete root's lease; root deletes the user's, which frees its quota.
    let rm = hyperctl_as(&d, &user)
        .args(["leases", "rm", &lease.id])
        .output()
        .unwrap();
    assert!(!rm.status.success());
    let mut args = vec!["leases", "rm"];
    args.extend(&users[..10]);
    d.ok(&args);
    assert_eq!(as_user(&d, &user, "again"), "lease ok\n");
}

/// Calls one uid may have waiting for a slot of one kind (`hyperd/src/api/slots.rs`).
const WAITING: usize = 64;

#[tokio::test]
async fn a_uid_holding_its_write_and_load_slots_leaves_the_others_their_share() {
    let user = OtherUser::create();
    let d = shared_daemon(&user);
    // 8 streams hold root's share of the write slots, 64 more wait behind them: all stall.
    // A connection carries at most 16 streams: eight a connection, nine of them.
    let blob = noise("stall", 4);
    let mut writes = Vec::new();
    for i in 0..8 + WAITING {
        if i % 8 == 0 {
            writes.push((content(&d).await, Vec::new()));
        }
        let (c, calls) = writes.last_mut().unwrap();
        calls.push(open_write(c, &format!("stall-{i}"), &blob, 1));
    }
    eventually(30, "64 writes waiting", async || {
        d.log().matches("write waiting for a free slot").count() >= WAITING
    })
    .await;
    let e = open_write(&content(&d).await, "one-more", &blob, 1)
        .await
        .unwrap()
        .unwrap_err();
    assert!(quota_reached(&e), "{e:?}");
    // Another uid writes meanwhile.
    assert_eq!(as_user(&d, &user, "write"), "written True\n");

    // Root's loads likewise: 2 hold a slot, 64 wait; the other uid's hand-over load runs.
    let mut stalled = Vec::new();
    for _ in 0..2 + WAITING {
        stalled.push(stalled_load(&d).await);
    }
    eventually(30, "64 loads waiting", async || {
        d.log().matches("load waiting for a free slot").count() >= WAITING
    })
    .await;
    let e = stalled_load(&d).await.1.await.unwrap().unwrap_err();
    assert!(quota_reached(&e), "{e:?}");
    let archive = named_archive(&d, "other.tar", "other:1").await;
    let out = hyperctl_as(&d, &user)
        .args(["load", "-q", "-i"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let handed = format!("load from a handed-over file started uid={}", user.uid);
    assert!(d.log().contains(&handed), "{}", d.log());
    drop(writes);
    drop(stalled);
}

/// The descriptors of `file` that the process `pid` holds open.
fn open_copies(pid: u32, file: &std::path::Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target == file)
        .count()
}

/// A handed-over file counts against its uid until hyperd closes it, also while its call waits
/// for a slot (a uid once held 400 that way); past 16, hyperctl is told the quota and streams
/// instead, while another uid's hand-over load and pull go on.
// Multi-threaded: the stalled loads' client side must run while the test blocks on processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_over_files_waiting_for_a_slot_count_against_their_uid() {
    let user = OtherUser::create();
    let d = shared_daemon(&user);
    let reg = integration::registry::TestRegistry::plain();
    let pushed = format!("{}/shared/app:1", reg.host());
    let archive = named_archive(&d, "pushed.tar", &pushed).await;
    let docker_config = d.path("docker");
    std::fs::create_dir(&docker_config).unwrap();
    sh(Command::new("chmod").arg("a+rx").arg(&docker_config));
    d.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    d.ok_with_config(&docker_config, &["push", "-q", &pushed]);
    d.ok(&["rmi", &pushed]);

    // Root's two load slots stall; its hand-over loads then wait for one, each holding its file.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(stalled_load(&d).await);
    }
    eventually(30, "two stalled loads holding root's slots", async || {
        d.log().matches("load started").count() == 2
    })
    .await;
    let file = named_archive(&d, "root.tar", "root:1").await;
    let load = || {
        d.ctl()
            .args(["load", "-q", "-i", file.to_str().unwrap()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let waiting: Vec<_> = (0..16).map(|_| load()).collect();
    eventually(30, "16 hand-over loads waiting", async || {
        d.log().matches("load waiting for a free slot").count() >= 16
    })
    .await;
    assert_eq!(open_copies(d.pid(), &file), 16);
    // The seventeenth is refused the hand-over, told why, and streams instead (and waits).
    let mut refused = load();
    let mut note = String::new();
    use std::io::BufRead;
    std::io::BufReader::new(refused.stderr.take().unwrap())
        .read_line(&mut note)
        .unwrap();
    assert!(
        note.contains("uid 0 holds 16 handed-over files") && note.contains("streaming it instead"),
        "{note}"
    );
    assert_eq!(open_copies(d.pid(), &file), 16);

    // The other uid hands over a file and pulls meanwhile.
    let other = named_archive(&d, "other.tar", "other:1").await;
    let as_other = |args: &[&str]| {
        let out = hyperctl_as(&d, &user)
            .env("DOCKER_CONFIG", &docker_config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    as_other(&["load", "-q", "-i", other.to_str().unwrap()]);
    let handed = format!("load from a handed-over file started uid={}", user.uid);
    assert!(d.log().contains(&handed), "{}", d.log());
    as_other(&["pull", "-q", &pushed]);
    assert!(d.ok(&["images"]).contains("shared/app"));

    // Root's stalled loads end; every waiting load then succeeds, and hyperd holds no file.
    drop(stalled);
    refused.kill().unwrap();
    refused.wait().unwrap();
    for c in waiting {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(open_copies(d.pid(), &file), 0);
}
