//! `check` through CheckStream: the same problems as the unary Check, progress while it runs
//! (monotone, its last report counting every blob), and hyperctl's check reading it.

use futures_util::StreamExt;
use hyperd_proto::v1::{self, check_stream_response::Part};
use integration::fixtures::*;
use integration::grpc::images;
use integration::tools::p;
use integration::{TestDaemon, damage};

/// The answers of one CheckStream call: its progress reports, then its result.
async fn check_streamed(d: &TestDaemon) -> (Vec<v1::CheckProgress>, v1::CheckResponse) {
    let mut answers = images(&d.socket)
        .await
        .check_stream(v1::CheckRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut reports = Vec::new();
    while let Some(answer) = answers.next().await {
        match answer.unwrap().part.unwrap() {
            Part::Progress(p) => reports.push(p),
            Part::Done(done) => {
                assert!(answers.next().await.is_none(), "a message after the result");
                return (reports, done);
            }
        }
    }
    panic!("CheckStream ended without a result");
}

async fn load_named(d: &TestDaemon, img: &Image, name: &str) {
    let file = d.write_file(
        &format!("{}.tar", name.replace(':', "-")),
        &oci_archive(&[(img, &[("io.containerd.image.name", name)])]).await,
    );
    d.ok(&["load", "-q", "-i", p(&file)]);
}

#[tokio::test]
async fn check_stream_reports_the_damage_check_reports() {
    let mut d = TestDaemon::start();
    let (a, b, c) = (
        noise_image("check-a", 1, 4, None).await,
        noise_image("check-b", 2, 4, None).await,
        noise_image("check-c", 1, 4, None).await,
    );
    load_named(&d, &a, "a:1").await;
    load_named(&d, &b, "b:1").await;
    load_named(&d, &c, "c:1").await;
    d.kill();
    damage::drop_record(&d.root, "docker.io/library/a:1");
    d.restart();
    let layer = &b.layers[1].0;
    let layer_file = d.root.join("blobs/sha256").join(hex_of(&sha(layer)));
    std::fs::write(&layer_file, vec![b'x'; layer.len()]).unwrap();
    let stray = noise("check-stray", 100);
    std::fs::write(
        d.root.join("blobs/sha256").join(hex_of(&sha(&stray))),
        &stray,
    )
    .unwrap();

    let unary = images(&d.socket)
        .await
        .check(v1::CheckRequest {})
        .await
        .unwrap()
        .into_inner();
    let (_, streamed) = check_streamed(&d).await;
    assert_eq!(streamed, unary);
    let corrupt = format!("blob {} is corrupt", sha(layer));
    let dangling = "tag docker.io/library/a:1 points at missing image";
    for problem in [corrupt.as_str(), dangling] {
        let found = streamed.problems.iter().filter(|p| p.contains(problem));
        assert_eq!(found.count(), 1, "{problem}: {:?}", streamed.problems);
    }
    assert_eq!(streamed.problems.len(), 2, "{:?}", streamed.problems);
    assert_eq!(streamed.unreferenced, 1);
    assert_eq!(streamed.blobs_checked, d.blob_files().len() as u64);

    let out = d.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("problem: {corrupt}")), "{stdout}");
    assert!(stdout.contains(dangling), "{stdout}");
    assert!(stdout.contains(": 2 problems, 1 unreferenced"), "{stdout}");
}

#[tokio::test]
async fn check_stream_reports_progress_up_to_every_blob() {
    let d = TestDaemon::start();
    for k in 0..4 {
        let img = noise_image(&format!("progress-{k}"), 3, 64, None).await;
        load_named(&d, &img, &format!("p{k}:1")).await;
    }
    let (reports, done) = check_streamed(&d).await;
    assert!(done.problems.is_empty(), "{:?}", done.problems);
    assert!(!reports.is_empty(), "no progress before the result");
    for pair in reports.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert!(after.blobs_done >= before.blobs_done, "{reports:?}");
        assert!(after.bytes_done >= before.bytes_done, "{reports:?}");
    }
    assert!(reports.iter().all(|r| r.blobs_total == done.blobs_checked));
    let last = reports.last().unwrap();
    assert_eq!(last.blobs_done, done.blobs_checked);
    let blobs = d.root.join("blobs/sha256");
    let bytes: u64 = d
        .blob_files()
        .iter()
        .map(|f| std::fs::metadata(blobs.join(f)).unwrap().len())
        .sum();
    assert_eq!(done.blobs_checked, 4 * 5);
    assert_eq!(last.bytes_done, bytes);
    assert!(
        d.ok(&["check"])
            .contains("checked 20 blobs: 0 problems, 0 unreferenced")
    );
}
