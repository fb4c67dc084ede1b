//! `Store::stats`: the counts a metrics scrape reads agree with the blob directory after loads,
//! removals and a reopen, without walking it.

use std::path::Path;

use crate::common::*;

/// Blobs in the directory, and their bytes.
fn on_disk(root: &Path) -> (u64, u64) {
    let files = blob_files(root);
    let bytes = files
        .iter()
        .map(|f| {
            std::fs::metadata(root.join("blobs/sha256").join(f))
                .unwrap()
                .len()
        })
        .sum();
    (files.len() as u64, bytes)
}

#[tokio::test]
async fn the_counts_follow_loads_removals_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let empty = store.stats().blobs;
    assert_eq!((empty.blobs, empty.bytes, empty.collections), (0, 0, 1));

    load_two_sharing_a_layer(&store, "base").await;
    let loaded = store.stats().blobs;
    assert_eq!((loaded.blobs, loaded.bytes), on_disk(dir.path()));
    assert_eq!(loaded.collected_bytes, 0);

    store.images().remove("a:1", false).await.unwrap();
    let removed = store.stats().blobs;
    let (blobs, bytes) = on_disk(dir.path());
    assert_eq!((removed.blobs, removed.bytes), (blobs, bytes));
    assert!(removed.collections > loaded.collections);
    assert_eq!(removed.collected_blobs, loaded.blobs - blobs);
    assert_eq!(removed.collected_bytes, loaded.bytes - bytes);
    drop(store);

    // A blob no record lists, left by a crash: counted at open, then collected.
    write_orphan(dir.path());
    let store = open(dir.path()).await;
    let reopened = store.stats();
    assert_eq!((reopened.blobs.blobs, reopened.blobs.bytes), (blobs, bytes));
    assert_eq!(reopened.blobs.collected_bytes, b"orphan".len() as u64);
    assert_eq!((reopened.leases, reopened.open_writes), (0, 0));
}
