//! What the CLI says and exits with when things go wrong; the daemon keeps serving.

use std::time::Duration;

use hyperd_proto::tonic::transport::Channel;
use hyperd_proto::tonic::{Code, Status};
use hyperd_proto::v1::content_service_client::ContentServiceClient;
use hyperd_proto::v1::image_service_client::ImageServiceClient;
use hyperd_proto::v1::registry_service_client::RegistryServiceClient;
use hyperd_proto::v1::{self, load_request::Part};
use integration::TestDaemon;
use integration::fixtures::*;
use integration::tools::stderr;
use tokio_stream::StreamExt;
use tonic_types::StatusExt;

#[test]
fn a_daemon_that_is_not_running_is_reported_with_exit_code_4() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(integration::bin("hyperctl"))
        .args([
            "--socket",
            dir.path().join("none.sock").to_str().unwrap(),
            "images",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.starts_with("Error: cannot connect to hyperd at") && err.contains("Is hyperd running?"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn rmi_goes_on_past_missing_images_and_exits_3() {
    let d = TestDaemon::start();
    let img = Image::new(&["rmi"], "amd64", Comp::None).await;
    let f = d.path("a.tar");
    std::fs::write(&f, docker_archive(&[(&img, &["a:1"])]).await).unwrap();
    d.ok(&["load", "-i", f.to_str().unwrap()]);
    let out = d.run(&["rmi", "nope:1", "a:1"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "Error: no such image: nope:1\n");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Untagged: a:1"));
    assert_eq!(d.ok(&["images", "-q"]), "");
}

#[tokio::test]
async fn a_bad_archive_names_the_cause_and_changes_nothing() {
    let d = TestDaemon::start();
    let img = Image::new(&["bad"], "amd64", Comp::None).await;
    let mut entries = oci_entries(&[(&img, &[("io.containerd.image.name", "bad:1")])]);
    entries.last_mut().unwrap().data[700] ^= 1;
    let f = d.path("bad.tar");
    std::fs::write(&f, tar(&entries).await).unwrap();
    let out = d.run(&["load", "-i", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("digest mismatch") && err.contains(&sha(&img.layers[0].0)),
        "{err}"
    );
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(
        std::fs::read_dir(d.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(std::fs::read_dir(d.root.join("ingest")).unwrap().count(), 0);
    // Still serving.
    d.ok(&["images"]);
}

#[tokio::test]
async fn what_is_not_a_tar_archive_is_named_for_what_it_is() {
    let d = TestDaemon::start();
    let img = Image::new(&["cut"], "amd64", Comp::None).await;
    let whole = oci_archive(&[(&img, &[("io.containerd.image.name", "cut:1")])]).await;
    let text = b"hello, this is not an archive\n".repeat(40);
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("empty", vec![], "the archive is empty (0 bytes)"),
        (
            "empty.gz",
            gzip(b"").await,
            "the archive decompresses to nothing",
        ),
        ("text", text.clone(), "not a tar archive: the input is text"),
        (
            "text.gz",
            gzip(&text).await,
            "not a tar archive: the input is gzip-compressed text",
        ),
        (
            "elf",
            b"\x7fELF\x02\x01\x01".repeat(100),
            "binary data starting 7f 45 4c 46",
        ),
        ("cut", whole[..whole.len() / 2 + 100].to_vec(), "truncated"),
    ];
    for (name, bytes, want) in cases {
        let f = d.path(name);
        std::fs::write(&f, bytes).unwrap();
        for how in [
            &["load", "-i", f.to_str().unwrap()][..],
            &["load", "--no-fd", "-i", f.to_str().unwrap()],
        ] {
            let out = d.run(how);
            assert_eq!(out.status.code(), Some(1), "{name}");
            assert!(
                stderr(&out).contains(want),
                "{name} {how:?}: {}",
                stderr(&out)
            );
        }
    }
    assert_eq!(d.ok(&["images", "-q"]), "");
}

#[tokio::test]
async fn usage_errors_exit_2_and_bad_names_are_refused() {
    let d = TestDaemon::start();
    assert_eq!(d.run(&["save"]).status.code(), Some(2));
    assert_eq!(d.run(&["frobnicate"]).status.code(), Some(2));
    let out = d.run(&["load", "-i", "/nonexistent/archive.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("opening /nonexistent/archive.tar"),
        "{}",
        stderr(&out)
    );
    let out = d.run(&["tag", "x:1", "NOT VALID"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid reference"),
        "{}",
        stderr(&out)
    );
    for args in [
        &["load", "-r", "hello"][..],
        &["save", "-r", "centos:7", "centos:7"],
    ] {
        let out = d.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("invalid value"), "{}", stderr(&out));
    }
    // A socket from the environment is no required flag in the usage line.
    let mut ctl = std::process::Command::new(integration::bin("hyperctl"));
    let out = ctl
        .env("HYPERD_SOCKET", &d.socket)
        .arg("tag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Usage: hyperctl tag <SOURCE> <TARGET>"),
        "{}",
        stderr(&out)
    );
    let out = d.run(&["save", "-o", d.path("x.tar").to_str().unwrap(), "missing:1"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !d.path("x.tar").exists(),
        "no file is left for a failed save"
    );
}

#[tokio::test]
async fn a_load_map_naming_an_absent_ref_is_not_found() {
    let d = TestDaemon::start();
    let img = Image::new(&["map"], "amd64", Comp::None).await;
    let f = d.path("m.tar");
    std::fs::write(
        &f,
        oci_archive(&[(&img, &[("org.opencontainers.image.ref.name", "hello")])]).await,
    )
    .unwrap();
    let out = d.run(&["load", "-i", f.to_str().unwrap(), "-r", "x:1=world"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no image with ref name \"world\""),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn every_call_answers_a_store_whose_tag_points_at_a_missing_record() {
    let mut d = TestDaemon::start();
    let img = Image::new(&["dangling"], "amd64", Comp::None).await;
    let f = d.path("a.tar");
    std::fs::write(&f, docker_archive(&[(&img, &["a:1"])]).await).unwrap();
    d.ok(&["load", "-i", f.to_str().unwrap()]);
    d.kill();
    integration::damage::drop_record(&d.root, "docker.io/library/a:1");
    d.restart();
    let pid = d.pid();

    assert_eq!(d.ok(&["images", "-q"]), "");
    for args in [
        &["inspect", "a:1"][..],
        &["save", "-o", d.path("out.tar").to_str().unwrap(), "a:1"],
        &["tag", "a:1", "b:1"],
    ] {
        let out = d.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("damaged store") && stderr(&out).contains("has no record"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let check = d.run(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("tag docker.io/library/a:1 points at missing image")
    );
    assert!(d.ok(&["version"]).contains("Server: hyperd"));
    let other = Image::new(&["other"], "amd64", Comp::None).await;
    let g = d.path("b.tar");
    std::fs::write(&g, docker_archive(&[(&other, &["c:1"])]).await).unwrap();
    d.ok(&["load", "-i", g.to_str().unwrap()]);

    // Removing the tag repairs the store.
    assert_eq!(d.ok(&["rmi", "a:1"]), "Untagged: a:1\n");
    assert!(d.ok(&["check"]).contains("0 problems"));
    assert_eq!(
        d.ok(&["images", "--format", "json"])
            .matches("\"Name\"")
            .count(),
        1
    );
    assert_eq!(d.pid(), pid, "hyperd restarted");
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

/// The code of `s`, and the reason in its details: a `google.rpc.ErrorInfo` of hyperd's domain.
fn assert_reason(s: &Status, code: Code, reason: &str) {
    assert_eq!(s.code(), code, "{s:?}");
    let info = s
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {s:?}"));
    assert_eq!(
        (info.domain.as_str(), info.reason.as_str()),
        ("hyperd.v1", reason),
        "{s:?}"
    );
}

async fn clients(d: &TestDaemon) -> (ImageServiceClient<Channel>, ContentServiceClient<Channel>) {
    let channel = hyperd_proto::connect(d.socket.clone()).await.unwrap();
    (
        ImageServiceClient::new(channel.clone()),
        ContentServiceClient::new(channel),
    )
}

fn options() -> v1::LoadRequest {
    v1::LoadRequest {
        part: Some(Part::Options(v1::LoadOptions::default())),
    }
}

#[tokio::test]
async fn refusals_carry_their_reason_beside_the_code_and_message() {
    let d = TestDaemon::start();
    let (mut images, mut content) = clients(&d).await;
    let inspect = v1::InspectRequest {
        image: "nope:1".into(),
    };
    let s = images.inspect(inspect).await.unwrap_err();
    assert_reason(&s, Code::NotFound, "NOT_FOUND");
    assert_eq!(s.message(), "no such image: nope:1");

    let tag = v1::TagRequest {
        source: "nope:1".into(),
        target: "NOT VALID".into(),
    };
    let s = images.tag(tag).await.unwrap_err();
    assert_reason(&s, Code::InvalidArgument, "INVALID_REFERENCE");

    let read = v1::ReadRequest {
        digest: "sha256:nope".into(),
        ..Default::default()
    };
    let s = content.read(read).await.unwrap_err();
    assert_reason(&s, Code::InvalidArgument, "INVALID_REQUEST");

    let load_file = v1::LoadFileRequest {
        fd_token: "never-given".into(),
        ..Default::default()
    };
    let s = images.load_file(load_file).await.unwrap_err();
    assert_reason(&s, Code::FailedPrecondition, "FD_TOKEN_UNKNOWN");

    // A registry transfer's refusal comes as its stream's status.
    let mut registries =
        RegistryServiceClient::new(hyperd_proto::connect(d.socket.clone()).await.unwrap());
    let pull = v1::PullRequest {
        reference: "NOT VALID".into(),
        ..Default::default()
    };
    let s = match registries.pull(pull).await {
        Ok(events) => events.into_inner().message().await.unwrap_err(),
        Err(s) => s,
    };
    assert_reason(&s, Code::InvalidArgument, "INVALID_REFERENCE");
    assert!(
        s.message().starts_with("invalid reference \"NOT VALID\""),
        "{}",
        s.message()
    );
}

/// What hyperctl retries on: a body left out as stored, of a blob the store does not hold.
#[tokio::test]
async fn a_left_out_blob_the_store_lacks_is_told_by_its_reason() {
    let d = TestDaemon::start();
    let (mut images, _) = clients(&d).await;
    let mut header = tokio_tar::Header::new_gnu();
    header
        .set_path(format!("blobs/sha256/{}", "ab".repeat(32)))
        .unwrap();
    header.set_size(1 << 20);
    header.set_entry_type(tokio_tar::EntryType::Regular);
    header.set_cksum();
    let msgs = vec![
        options(),
        v1::LoadRequest {
            part: Some(Part::Chunk(header.as_bytes().to_vec().into())),
        },
        v1::LoadRequest {
            part: Some(Part::Elided(1 << 20)),
        },
    ];
    let s = images.load(tokio_stream::iter(msgs)).await.unwrap_err();
    assert_reason(&s, Code::FailedPrecondition, "LEFT_OUT_BLOB_GONE");
    assert!(
        s.message()
            .contains("was left out of the archive as stored, but the store does not hold it"),
        "{s:?}"
    );
}

/// Loads and writes that hold a slot and send nothing, and a load cut short by shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slots_and_shutdown_are_told_by_their_reasons() {
    let mut d = TestDaemon::start_with_args(&["--load-idle-timeout", "1"]);
    let (mut images, mut content) = clients(&d).await;
    let img = noise_image("reasons", 1, 64, None).await;
    let archive = oci_archive(&[(&img, &[])]).await;
    let half = v1::LoadRequest {
        part: Some(Part::Chunk(archive[..archive.len() / 2].to_vec().into())),
    };

    // Sends `msgs`, then holds the stream open until the answer comes.
    async fn held<T: Send + 'static>(msgs: Vec<T>) -> impl tokio_stream::Stream<Item = T> {
        tokio_stream::iter(msgs).chain(tokio_stream::pending())
    }
    let s = images
        .load(held(vec![options(), half.clone()]).await)
        .await
        .unwrap_err();
    // The store reads the stream's end as a cut archive: the code says so, the reason why.
    assert_reason(&s, Code::InvalidArgument, "SLOT_IDLE");
    assert!(s.message().contains("sent nothing for 1s"), "{s:?}");

    let blob = vec![7u8; 1000];
    let write = v1::WriteRequest {
        r#ref: "idle".into(),
        expected: sha(&blob),
        total: blob.len() as u64,
        data: blob[..10].to_vec().into(),
        ..Default::default()
    };
    let s = content.write(held(vec![write]).await).await.unwrap_err();
    assert_reason(&s, Code::DeadlineExceeded, "SLOT_IDLE");

    // The first load logged its start too: wait for this one's, or SIGTERM may come before the
    // call reaches hyperd, which then closes the connection without an answer.
    let load = tokio::spawn(async move { images.load(held(vec![options(), half]).await).await });
    let started = std::time::Instant::now();
    while d.log().matches("load started").count() < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", d.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(d.terminate().success(), "{}", d.log());
    let s = load.await.unwrap().unwrap_err();
    assert_reason(&s, Code::Unavailable, "SHUTTING_DOWN");
    assert_eq!(s.message(), "hyperd is shutting down");
}
