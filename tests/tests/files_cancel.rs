//! A LoadFile or SaveFile whose client hangs up, or that shutdown ends, stops copying: a load
//! gives its slot back only once its copy has stopped, so cancelled calls never copy more at once
//! than there are slots, and SIGTERM does not wait for copies to finish. And a SaveFile into a file
//! that refuses writes blames the file, not the store.

use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hyperd_proto::tonic::Code;
use hyperd_proto::v1::image_service_client::ImageServiceClient;
use hyperd_proto::v1::{self, ErrorReason, LoadFileRequest, LoadOptions, load_file_response};
use integration::TestDaemon;
use integration::fixtures::*;
use integration::handoff::hand_over;
use integration::tools::p;
use integration::wait::eventually;

const STARTED: &str = "load from a handed-over file started";
const ENDED: &str = "load from a handed-over file ended";
/// hyperd's load slots, and one uid's share of them (the test runs as one uid).
const SLOTS: usize = 4;
const SHARE: usize = 2;

/// The token hyperd answers for the handed-over `fd`.
fn token_for(d: &TestDaemon, fd: impl AsFd) -> String {
    let answer = hand_over(d, fd);
    assert_eq!(answer.trim_end().len(), 32, "{answer}");
    answer.trim_end().to_owned()
}

/// An archive of one blob entry with a body of `len` bytes that the file leaves as a hole: cheap
/// to make, yet the copy reads and writes every byte of it.
fn sparse_archive(path: &Path, len: u64) {
    let mut h = tokio_tar::Header::new_ustar();
    h.set_path(format!("blobs/sha256/{}", "ab".repeat(32)))
        .unwrap();
    h.set_size(len);
    h.set_mode(0o644);
    h.set_entry_type(tokio_tar::EntryType::Regular);
    h.set_cksum();
    let file = std::fs::File::create(path).unwrap();
    file.write_all_at(h.as_bytes(), 0).unwrap();
    file.set_len(512 + len + 1024).unwrap();
}

/// Starts a LoadFile of `archive` on a connection of its own and returns once hyperd reports
/// progress past the entry's header, so its copy has begun; then hangs up.
async fn load_then_hang_up(d: &TestDaemon, archive: &Path) {
    let token = token_for(d, std::fs::File::open(archive).unwrap());
    let mut client = ImageServiceClient::new(hyperd_proto::connect(&d.socket).await.unwrap());
    let call = LoadFileRequest {
        fd_token: token,
        options: Some(LoadOptions::default()),
        offset: 0,
    };
    let mut answers = client.load_file(call).await.unwrap().into_inner();
    loop {
        match answers.message().await {
            Ok(Some(v1::LoadFileResponse {
                part: Some(load_file_response::Part::Progress(n)),
            })) if n > 512 => return,
            Ok(Some(_)) => {}
            // A copy that outran the first progress report ends at the digest check.
            Err(s) if s.code() == Code::DataLoss => return,
            other => panic!("{other:?}"),
        }
    }
}

/// The most loads the log shows copying at once (started and not yet ended).
fn most_at_once(log: &str) -> usize {
    let (mut now, mut most) = (0usize, 0usize);
    for line in log.lines() {
        if line.contains(STARTED) {
            now += 1;
            most = most.max(now);
        } else if line.contains(ENDED) {
            now -= 1;
        }
    }
    most
}

/// Staging directories of loads under the store's `ingest/`.
fn staging_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(root.join("ingest")) else {
        return Vec::new();
    };
    dir.map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "content"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_file_loads_stop_copying_and_keep_their_slot_until_they_have() {
    const CALLS: usize = SLOTS + 3;
    let mut d = TestDaemon::start();
    let archive = d.path("sparse.tar");
    sparse_archive(&archive, 2 << 30);
    let calls = (0..CALLS).map(|_| load_then_hang_up(&d, &archive));
    futures_util::future::join_all(calls).await;
    eventually(120, "every cancelled load to end", async || {
        d.log().matches(ENDED).count() == CALLS
    })
    .await;
    let log = d.log();
    assert_eq!(log.matches(STARTED).count(), CALLS, "{log}");
    assert!(log.contains("load waiting for a free slot"), "{log}");
    assert!(most_at_once(&log) <= SHARE, "{log}");
    assert_eq!(staging_dirs(&d.root), Vec::<PathBuf>::new());
    // Loads copying when SIGTERM comes stop, and hyperd exits.
    let copying = (0..2).map(|_| async {
        let token = token_for(&d, std::fs::File::open(&archive).unwrap());
        let mut client = ImageServiceClient::new(hyperd_proto::connect(&d.socket).await.unwrap());
        let call = LoadFileRequest {
            fd_token: token,
            options: Some(LoadOptions::default()),
            offset: 0,
        };
        client.load_file(call).await.unwrap().into_inner()
    });
    let _answers = futures_util::future::join_all(copying).await;
    eventually(60, "both loads copying", async || {
        d.log().matches(STARTED).count() == CALLS + 2
    })
    .await;
    // A copy that went on would hold the exit back: the runtime waits for its blocking threads.
    assert!(d.terminate().success());
    // Those still copying at exit were dropped with the runtime, their staging with them.
    assert_eq!(staging_dirs(&d.root), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn a_save_into_a_file_sealed_against_writing_blames_the_file() {
    use rustix::fs::{MemfdFlags, SealFlags};
    let d = TestDaemon::start();
    let img = noise_image("sealed", 1, 64, None).await;
    let tar = oci_archive(&[(&img, &[("io.containerd.image.name", "sealed:1")])]).await;
    let path = d.write_file("sealed.tar", &tar);
    d.ok(&["load", "-i", p(&path)]);
    let memfd = rustix::fs::memfd_create("archive", MemfdFlags::ALLOW_SEALING).unwrap();
    rustix::fs::fcntl_add_seals(&memfd, SealFlags::WRITE).unwrap();
    let token = token_for(&d, &memfd);
    let mut client = ImageServiceClient::new(hyperd_proto::connect(&d.socket).await.unwrap());
    let call = v1::SaveFileRequest {
        fd_token: token,
        save: Some(v1::SaveRequest {
            images: vec![v1::SaveImage {
                image: "sealed:1".into(),
                ref_name: String::new(),
            }],
            ..Default::default()
        }),
    };
    let mut answers = client.save_file(call).await.unwrap().into_inner();
    let err = loop {
        match answers.message().await {
            Ok(Some(_)) => {}
            Ok(None) => panic!("a save into a sealed file succeeded"),
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        hyperd_proto::reason_of(&err),
        Some(ErrorReason::HandedFileUnwritable),
        "{err:?}"
    );
    assert!(err.message().contains("Operation not permitted"), "{err:?}");
}
