//! `system df` and `image prune`: what df calls reclaimable is, byte for byte, what a prune of
//! the dangling images frees; a dry run changes nothing; `--all` and `until` pick as docker's do.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::common::*;
use store::{PruneOptions, Store};

/// Bytes of every file under `blobs/sha256/`.
fn blob_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// `kept:1` and an untagged image sharing its first layer, and a second untagged one of its own.
async fn three(store: &Store) -> (Image, Image, Image) {
    let kept = Image::new(&["u-shared", "u-kept"], "amd64", Comp::None).await;
    let dangling = Image::new(&["u-shared", "u-gone"], "amd64", Comp::None).await;
    let alone = Image::new(&["u-alone"], "amd64", Comp::Gzip).await;
    let archive = oci_archive(&[
        (&kept, &[("io.containerd.image.name", "kept:1")]),
        (
            &dangling,
            &[("org.opencontainers.image.ref.name", "latest")],
        ),
        (&alone, &[("org.opencontainers.image.ref.name", "other")]),
    ])
    .await;
    store.images().load(reader(archive), &[]).await.unwrap();
    (kept, dangling, alone)
}

fn own_bytes(img: &Image) -> u64 {
    (img.manifest.len() + img.config.len()) as u64
}

#[tokio::test]
async fn reclaimable_is_what_a_prune_of_the_dangling_images_frees() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (kept, dangling, alone) = three(&store).await;
    let usage = store.images().disk_usage().unwrap();
    assert_eq!((usage.images.len(), usage.tagged), (3, 1));
    assert_eq!(usage.bytes, blob_bytes(dir.path()));
    let shared = kept.layers[0].0.len() as u64;
    let only = |img: &Image, from: usize| -> u64 {
        own_bytes(img)
            + img.layers[from..]
                .iter()
                .map(|l| l.0.len() as u64)
                .sum::<u64>()
    };
    assert_eq!(usage.reclaimable, only(&dangling, 1) + only(&alone, 0));
    let of = |img: &Image| {
        let digest = sha(&img.manifest);
        let u = usage
            .images
            .iter()
            .find(|u| u.digest.to_string() == digest)
            .unwrap();
        (u.unique, u.shared)
    };
    assert_eq!(of(&kept), (only(&kept, 1), shared));
    assert_eq!(of(&alone), (only(&alone, 0), 0));

    let dry = store
        .images()
        .prune(&PruneOptions {
            dry_run: true,
            ..PruneOptions::default()
        })
        .await
        .unwrap();
    assert_eq!((dry.images.len(), dry.freed), (2, usage.reclaimable));
    assert_eq!(
        store.images().disk_usage().unwrap(),
        usage,
        "a dry run changes nothing"
    );

    let before = blob_bytes(dir.path());
    let pruned = store
        .images()
        .prune(&PruneOptions::default())
        .await
        .unwrap();
    assert_eq!(pruned.freed, usage.reclaimable);
    assert_eq!(before - blob_bytes(dir.path()), usage.reclaimable);
    assert_eq!(rows(&store), vec![("kept:1".into(), kept.id())]);
    assert_eq!(store.images().disk_usage().unwrap().reclaimable, 0);
}

#[tokio::test]
async fn all_takes_tagged_images_too_and_until_only_older_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    three(&store).await;
    // The fixtures' configs say they were made in January 2024.
    let before_them = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let opts = |all: bool, until: Option<SystemTime>| PruneOptions {
        all,
        created_before: until,
        dry_run: true,
        ..PruneOptions::default()
    };
    let picked = |o: PruneOptions| {
        let store = store.clone();
        async move { store.images().prune(&o).await.unwrap().images.len() }
    };
    assert_eq!(picked(opts(true, None)).await, 3);
    assert_eq!(picked(opts(true, Some(before_them))).await, 0);
    assert_eq!(picked(opts(false, Some(SystemTime::now()))).await, 2);
    let before = blob_bytes(dir.path());
    let real = PruneOptions {
        dry_run: false,
        ..opts(true, None)
    };
    let all = store.images().prune(&real).await.unwrap();
    assert_eq!(all.freed, before);
    assert!(rows(&store).is_empty());
    assert_eq!(blob_bytes(dir.path()), 0);
}
