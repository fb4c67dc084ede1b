//! Loads and saves through a file handed to hyperd (the companion socket `<socket>.fd`, then
//! LoadFile or SaveFile) give exactly what streaming gives; what cannot be handed over is
//! refused or streamed, with a clear message; hyperd keeps no descriptor past the call.

use std::os::unix::net::UnixStream;
use std::path::Path;

use hyperd_proto::v1::image_service_client::ImageServiceClient;
use hyperd_proto::v1::{LoadFileRequest, LoadOptions, load_file_response};
use integration::TestDaemon;
use integration::fixtures::*;
use integration::handoff::hand_over;
use integration::tools::{p, unstamped};

const HANDED: &str = "load from a handed-over file started";

/// Descriptors the daemon holds open on paths under its temporary directory, its root aside.
fn open_files(d: &TestDaemon) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.starts_with(d.dir.path()) && !p.starts_with(&d.root))
        .filter(|p| p.file_name().is_some_and(|n| n != "hyperd.log"))
        .map(|p| p.display().to_string())
        .collect()
}

/// Two images (one with a layer past the 8 MiB step at which copying and hashing overlap)
/// as an OCI archive, and as a legacy docker-archive whose layers are not named by digest.
async fn archives() -> Vec<(&'static str, Vec<u8>)> {
    let big = noise_image("fd-big", 2, 9 << 10, None).await;
    let small = Image::new(&["fd-a", "fd-b"], "arm64", Comp::Gzip).await;
    let oci = oci_archive(&[
        (&big, &[("io.containerd.image.name", "big:1")]),
        (&small, &[("io.containerd.image.name", "small:1")]),
    ])
    .await;
    let docker = docker_archive(&[(&big, &["docker:1"])]).await;
    vec![
        ("oci.tar", oci.clone()),
        ("docker.tar", docker),
        ("oci.tar.gz", gzip(&oci).await),
    ]
}

#[tokio::test]
async fn loads_and_saves_through_a_file_give_what_streaming_gives() {
    let (fd, streamed) = (TestDaemon::start(), TestDaemon::start());
    for (name, bytes) in archives().await {
        let (a, b) = (fd.path(name), streamed.path(name));
        std::fs::write(&a, &bytes).unwrap();
        std::fs::write(&b, &bytes).unwrap();
        let handed = fd.log().matches(HANDED).count();
        // The same, but for how the summary says the stored blobs were saved.
        let streamed_said = streamed.ok(&["load", "--no-fd", "-i", p(&b)]);
        assert_eq!(
            fd.ok(&["load", "-i", p(&a)]),
            streamed_said
                .replace(" not written)", " skipped)")
                .replace(" not sent)", " skipped)"),
            "{name}"
        );
        assert_eq!(fd.log().matches(HANDED).count(), handed + 1, "{name}");
    }
    assert!(!streamed.log().contains(HANDED));
    for image in ["big:1", "small:1", "docker:1"] {
        assert_eq!(
            unstamped(&fd.ok(&["inspect", image])),
            unstamped(&streamed.ok(&["inspect", image]))
        );
    }
    assert_eq!(
        unstamped(&fd.ok(&["images", "--format", "json"])),
        unstamped(&streamed.ok(&["images", "--format", "json"]))
    );
    for format in ["oci", "docker"] {
        let save = |d: &TestDaemon, out: &Path, how: &str| {
            d.ok(&["save", how, "-f", format, "-o", p(out), "big:1", "docker:1"]);
            std::fs::read(out).unwrap()
        };
        let handed = save(&fd, &fd.path("x.tar"), "-q");
        assert_eq!(handed, save(&fd, &fd.path("y.tar"), "--no-fd"), "{format}");
        assert_eq!(handed, save(&streamed, &streamed.path("z.tar"), "--no-fd"));
    }
    assert!(fd.log().contains("save into a handed-over file started"));
    assert!(fd.ok(&["check"]).contains(" 0 problems"));
    assert_eq!(open_files(&fd), Vec::<String>::new());
}

fn make_fifo(path: &Path) {
    let mode = rustix::fs::Mode::from_raw_mode(0o600);
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, mode, 0).unwrap();
}

async fn one_image(name: &str) -> Vec<u8> {
    let img = noise_image(name, 1, 10 << 10, None).await;
    oci_archive(&[(&img, &[("io.containerd.image.name", &format!("{name}:1"))])]).await
}

#[tokio::test]
async fn stdin_redirected_from_a_file_is_handed_over_from_where_it_stands() {
    use std::io::{Seek, SeekFrom, Write};
    let d = TestDaemon::start();
    let path = d.path("prefixed");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"not the archive").unwrap();
    f.write_all(&one_image("offset").await).unwrap();
    let mut stdin = std::fs::File::open(&path).unwrap();
    stdin.seek(SeekFrom::Start(15)).unwrap();
    let out = d.ctl().arg("load").stdin(stdin).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Loaded image: offset:1\n"
    );
    assert!(d.log().contains(HANDED));
}

#[tokio::test]
async fn a_fifo_is_streamed_and_an_archive_on_another_filesystem_is_copied_all_the_same() {
    let d = TestDaemon::start();
    let bytes = one_image("fifo").await;
    let fifo = d.path("fifo");
    make_fifo(&fifo);
    let writer = {
        let (fifo, bytes) = (fifo.clone(), bytes.clone());
        std::thread::spawn(move || std::fs::write(fifo, bytes).unwrap())
    };
    assert_eq!(d.ok(&["load", "-i", p(&fifo)]), "Loaded image: fifo:1\n");
    writer.join().unwrap();
    assert!(!d.log().contains(HANDED));
    // tmpfs to the root's filesystem: no kernel copy across them, so hyperd copies through a
    // buffer, and still hashes the copy.
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let other = shm.path().join("other.tar");
    std::fs::write(&other, one_image("shm").await).unwrap();
    assert_eq!(d.ok(&["load", "-i", p(&other)]), "Loaded image: shm:1\n");
    assert!(d.log().contains(HANDED));
    assert!(d.ok(&["check"]).contains(" 0 problems"));
}

#[tokio::test]
async fn the_companion_socket_takes_only_regular_files() {
    let d = TestDaemon::start();
    let dir = std::fs::File::open(d.dir.path()).unwrap();
    assert_eq!(
        hand_over(&d, &dir),
        "error: the descriptor is a directory, not a regular file; stream it instead\n"
    );
    let fifo = d.path("fifo");
    make_fifo(&fifo);
    // Read and write: opening a FIFO so does not wait for the other end.
    let fifo = std::fs::File::options()
        .read(true)
        .write(true)
        .open(fifo)
        .unwrap();
    assert!(hand_over(&d, &fifo).starts_with("error: the descriptor is a FIFO or pipe"));
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(hand_over(&d, &a).starts_with("error: the descriptor is a socket"));
    assert_eq!(open_files(&d), Vec::<String>::new());
    // A file is held open for its token (until its call, or 30 s), and nothing else is.
    let waiting = d.path("waiting");
    std::fs::write(&waiting, b"").unwrap();
    let token = hand_over(&d, std::fs::File::open(&waiting).unwrap());
    assert_eq!(token.trim_end().len(), 32, "{token}");
    assert_eq!(open_files(&d), vec![waiting.display().to_string()]);
}

#[tokio::test]
async fn hyperctl_streams_when_hyperd_refuses_the_file_or_has_no_companion_socket() {
    let mut d = TestDaemon::start();
    let path = d.path("a.tar");
    std::fs::write(&path, one_image("refused").await).unwrap();
    // One uid may keep only so many files waiting for their calls.
    let held: Vec<String> = (0..16)
        .map(|_| hand_over(&d, std::fs::File::open(&path).unwrap()))
        .collect();
    assert!(held.iter().all(|t| t.len() == 33), "{held:?}");
    let out = d.run(&["load", "-i", p(&path)]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "hyperd did not take the file (uid {} holds 16 handed-over files, waiting or in calls, \
         its quota; let some calls end or tokens expire); streaming it instead\n"
            .replace("{}", &rustix::process::getuid().as_raw().to_string())
    );
    assert!(!d.log().contains(HANDED));
    // An older hyperd has no companion socket: hyperctl streams without a word.
    d.restart();
    std::fs::remove_file(hyperd_proto::fd_socket(&d.socket)).unwrap();
    let out = d.run(&["load", "-i", p(&path)]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(!d.log().contains(HANDED));
}

#[tokio::test]
async fn a_file_cut_short_while_hyperd_reads_it_is_refused_and_a_token_serves_once() {
    let d = TestDaemon::start();
    let path = d.path("cut.tar");
    let bytes = one_image("cut").await;
    std::fs::write(&path, &bytes).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let token = hand_over(&d, &file).trim_end().to_owned();
    drop(file);
    // Cut inside the 10 MiB layer's body, after hyperd was handed the file.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(bytes.len() as u64 / 2)
        .unwrap();
    let mut client = ImageServiceClient::new(hyperd_proto::connect(&d.socket).await.unwrap());
    let call = |token: String| LoadFileRequest {
        fd_token: token,
        options: Some(LoadOptions::default()),
        offset: 0,
    };
    let mut answers = client
        .load_file(call(token.clone()))
        .await
        .unwrap()
        .into_inner();
    let err = loop {
        match answers.message().await {
            Ok(Some(m)) => assert!(
                matches!(m.part, Some(load_file_response::Part::Progress(_))),
                "{m:?}"
            ),
            Ok(None) => panic!("no result"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("cut short while hyperd read it"),
        "{}",
        err.message()
    );
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(open_files(&d), Vec::<String>::new());
    let again = client.load_file(call(token)).await.unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition, "{again:?}");
}

/// Runs as root only: hyperctl as another user, who may use hyperd's sockets but not read the
/// archive, is refused by the kernel when it opens the file; hyperd is never asked to.
#[tokio::test]
async fn a_file_the_client_cannot_read_is_never_reached_through_hyperd() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let d = TestDaemon::start();
    let private = d.path("private");
    std::fs::create_dir(&private).unwrap();
    let path = private.join("a.tar");
    std::fs::write(&path, one_image("private").await).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
    for p in [
        d.dir.path().to_path_buf(),
        d.socket.clone(),
        hyperd_proto::fd_socket(&d.socket),
    ] {
        let mode = if p.is_dir() { 0o711 } else { 0o666 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = d
        .ctl()
        .args(["load", "-i", p(&path)])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Permission denied"), "{err}");
    assert!(!d.log().contains(HANDED));
    assert_eq!(d.ok(&["images", "-q"]), "");
}

/// Connections to the companion socket are capped per uid (64 in flight), so that no uid can
/// use up hyperd's descriptors through it; past the cap a connection is closed unanswered, and
/// one is let in again as soon as the others go.
#[test]
fn the_companion_socket_caps_one_uids_connections() {
    use std::io::Read;
    let d = TestDaemon::start();
    let fd_socket = hyperd_proto::fd_socket(&d.socket);
    let held: Vec<UnixStream> = (0..64)
        .map(|_| UnixStream::connect(&fd_socket).unwrap())
        .collect();
    // Each accepted one waits for its descriptor; the next is closed without a word.
    let mut refused = UnixStream::connect(&fd_socket).unwrap();
    let mut answer = String::new();
    refused.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "");
    assert!(
        d.log().contains("refusing connections from this uid"),
        "{}",
        d.log()
    );
    drop(held);
    let file = d.path("f");
    std::fs::write(&file, b"x").unwrap();
    // The freed places come back as hyperd sees the held connections close.
    integration::wait::until(10, "a hand-over let in again", || {
        integration::handoff::try_hand_over(&d, std::fs::File::open(&file).unwrap())
            .is_ok_and(|answer| answer.trim_end().len() == 32)
    });
}
