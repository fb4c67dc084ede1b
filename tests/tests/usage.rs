//! `system df` and `image prune` against the real hyperd: the reclaimable figure DiskUsage gives
//! is, byte for byte, what Prune then frees from the blob directory; `--dry-run` changes
//! nothing; without `-f` only a `y` on stdin goes ahead; `-a` and `until` pick as docker's do.

use std::io::Write;
use std::process::Stdio;

use hyperd_proto::v1::{DiskUsageRequest, PruneRequest};
use integration::TestDaemon;
use integration::fixtures::*;
use integration::grpc;
use integration::tools::p;

/// Bytes of every stored blob.
fn blob_bytes(d: &TestDaemon) -> u64 {
    let dir = d.root.join("blobs/sha256");
    d.blob_files()
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .sum()
}

/// `kept:1`, and two untagged images, one sharing `kept`'s first layer.
async fn loaded() -> TestDaemon {
    let kept = Image::new(&["df-shared", "df-kept"], "amd64", Comp::Gzip).await;
    let dangling = Image::new(&["df-shared", "df-gone"], "amd64", Comp::Gzip).await;
    let alone = Image::new(&["df-alone"], "amd64", Comp::None).await;
    let archive = oci_archive(&[
        (&kept, &[("io.containerd.image.name", "kept:1")]),
        (&dangling, &[("org.opencontainers.image.ref.name", "a")]),
        (&alone, &[("org.opencontainers.image.ref.name", "b")]),
    ])
    .await;
    let d = TestDaemon::start();
    d.ok(&["load", "-q", "-i", p(&d.write_file("three.tar", &archive))]);
    d
}

#[tokio::test]
async fn reclaimable_is_exactly_what_prune_frees() {
    let d = loaded().await;
    let mut images = grpc::images(&d.socket).await;
    let usage = images
        .disk_usage(DiskUsageRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((usage.images.len(), usage.tagged), (3, 1));
    assert_eq!(usage.bytes, blob_bytes(&d));
    assert!(usage.reclaimable > 0 && usage.reclaimable < usage.bytes);

    let dry = d.ok(&["image", "prune", "--dry-run"]);
    assert_eq!(
        dry.lines()
            .filter(|l| l.starts_with("Would delete: "))
            .count(),
        2,
        "{dry}"
    );
    assert_eq!(blob_bytes(&d), usage.bytes, "a dry run changes nothing");

    let before = blob_bytes(&d);
    let pruned = images
        .prune(PruneRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pruned.freed, usage.reclaimable);
    assert_eq!(before - blob_bytes(&d), usage.reclaimable);
    assert_eq!(pruned.images.len(), 2);
    assert_eq!(
        d.ok(&["images", "--format", "json"])
            .matches("\"kept\"")
            .count(),
        1
    );
    let df = d.ok(&["system", "df"]);
    assert!(df.lines().nth(1).unwrap().contains("0B (0%)"), "{df}");
}

#[tokio::test]
async fn prune_asks_first_and_all_with_until_picks_as_docker_does() {
    let d = loaded().await;
    // No `y`: nothing is removed.
    let mut no = d.ctl();
    let mut child = no
        .args(["image", "prune"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("all dangling images"));
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 3);

    // The fixtures' configs say January 2024: none is older than 2020.
    let none = d.ok(&[
        "image",
        "prune",
        "-a",
        "--dry-run",
        "--filter",
        "until=2020-01-01T00:00:00Z",
    ]);
    assert!(!none.contains("Would delete"), "{none}");
    let out = d.ok(&["image", "prune", "-a", "-f", "--filter", "until=24h"]);
    assert!(
        out.starts_with("Deleted Images:\nuntagged: kept:1\n"),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert!(d.blob_files().is_empty());

    // label= is a filter now (lastused.rs); a filter hyperctl does not know is still refused.
    let bad = d.run(&["image", "prune", "--filter", "dangling=true"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[tokio::test]
async fn df_verbose_shows_each_images_share() {
    let d = loaded().await;
    let df = d.ok(&["system", "df", "-v"]);
    let header = df
        .lines()
        .find(|l| l.starts_with("REPOSITORY"))
        .unwrap_or_else(|| panic!("{df}"));
    for column in ["SHARED SIZE", "UNIQUE SIZE", "REFERRERS"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(df.lines().any(|l| l.starts_with("kept ")), "{df}");
    assert_eq!(
        df.lines().filter(|l| l.starts_with("<none>")).count(),
        2,
        "{df}"
    );
}
