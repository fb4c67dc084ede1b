//! Last use and pins: a load, tag and save each move an image's last use forward (compared as
//! ordered times, never as durations), a read's use survives closing the store, and a pinned
//! image outlives every prune while df counts none of its bytes as reclaimable. Prune's label
//! filters pick as docker's.

use crate::common::*;
use store::{ListFilter, PruneOptions, Store};

async fn last_used(store: &Store, image: &str) -> std::time::SystemTime {
    let i = store.images().inspect(image).await.unwrap();
    i.usage.last_used.expect("a use is recorded")
}

#[tokio::test]
async fn load_tag_and_save_move_the_last_use_forward_and_it_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["lu-a"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&img, &[("io.containerd.image.name", "lu:1")])]).await;
    store.images().load(reader(archive), &[]).await.unwrap();
    let loaded = last_used(&store, "lu:1").await;

    store.images().tag("lu:1", &name("lu:2")).await.unwrap();
    let tagged = last_used(&store, "lu:1").await;
    assert!(tagged > loaded, "{tagged:?} after {loaded:?}");

    // A save's use waits in memory, and is shown at once.
    save(&store, &[("lu:2", None)], DOCKER).await;
    let saved = last_used(&store, "lu:1").await;
    assert!(saved > tagged, "{saved:?} after {tagged:?}");
    let page = store
        .images()
        .list_page(&ListFilter::default(), None, 0)
        .unwrap();
    assert!(page.images.iter().all(|i| i.usage.last_used == Some(saved)));

    // Closing the store writes it.
    drop(store);
    let store = open(dir.path()).await;
    assert_eq!(last_used(&store, "lu:1").await, saved);
    let usage = store.images().disk_usage().unwrap();
    assert_eq!(usage.images[0].last_used, Some(saved));
}

#[tokio::test]
async fn a_pinned_image_outlives_prune_and_df_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["lu-pinned"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&img, &[("org.opencontainers.image.ref.name", "x")])]).await;
    store.images().load(reader(archive), &[]).await.unwrap();
    let digest = sha(&img.manifest);
    let usage = store.images().disk_usage().unwrap();
    assert!(usage.reclaimable > 0 && usage.tagged == 0);

    let pinned = store.images().set_pinned(&digest, true).await.unwrap();
    assert_eq!(pinned.to_string(), digest);
    assert!(store.images().inspect(&digest).await.unwrap().usage.pinned);
    let usage = store.images().disk_usage().unwrap();
    assert_eq!(usage.reclaimable, 0);
    assert!(usage.images[0].pinned);
    for all in [false, true] {
        let opts = PruneOptions {
            all,
            ..PruneOptions::default()
        };
        let pruned = store.images().prune(&opts).await.unwrap();
        assert_eq!((pruned.images.len(), pruned.freed), (0, 0));
    }
    assert!(store.images().inspect(&digest).await.is_ok());

    // Unpinned, it goes with the next prune, freeing what df said.
    store.images().set_pinned(&digest, false).await.unwrap();
    let reclaimable = store.images().disk_usage().unwrap().reclaimable;
    let pruned = store
        .images()
        .prune(&PruneOptions::default())
        .await
        .unwrap();
    assert_eq!(pruned.freed, reclaimable);
    assert!(store.images().inspect(&digest).await.is_err());
}

#[tokio::test]
async fn rmi_removes_a_pinned_image_and_its_pin() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["lu-rmi"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&img, &[("io.containerd.image.name", "rm:1")])]).await;
    store
        .images()
        .load(reader(archive.clone()), &[])
        .await
        .unwrap();
    store.images().set_pinned("rm:1", true).await.unwrap();
    store.images().remove("rm:1", false).await.unwrap();
    // Loaded again, it is a new image: not pinned.
    store.images().load(reader(archive), &[]).await.unwrap();
    assert!(!store.images().inspect("rm:1").await.unwrap().usage.pinned);
    let e = store
        .images()
        .set_pinned("nothing:1", true)
        .await
        .unwrap_err();
    assert!(matches!(e, store::Error::NotFound(_)), "{e}");
}

#[tokio::test]
async fn label_filters_pick_as_dockers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    // Each fixture's config has the label `label` = its seeds.
    let mut imgs = Vec::new();
    for seed in ["lb-a", "lb-b", "lb-c"] {
        imgs.push(Image::new(&[seed], "amd64", Comp::None).await);
    }
    let entries: Vec<(&Image, &[(&str, &str)])> = imgs.iter().map(|i| (i, &[][..])).collect();
    store
        .images()
        .load(reader(oci_archive(&entries).await), &[])
        .await
        .unwrap();
    let picked = |labels: &[&str], not: &[&str]| {
        let opts = PruneOptions {
            dry_run: true,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            not_labels: not.iter().map(|s| s.to_string()).collect(),
            ..PruneOptions::default()
        };
        let store = store.clone();
        async move { store.images().prune(&opts).await.unwrap().images.len() }
    };
    assert_eq!(picked(&[], &[]).await, 3);
    assert_eq!(picked(&["label"], &[]).await, 3);
    assert_eq!(picked(&["label=lb-a"], &[]).await, 1);
    assert_eq!(picked(&["label=lb-a", "other"], &[]).await, 0);
    assert_eq!(picked(&[], &["label=lb-a"]).await, 2);
    assert_eq!(picked(&[], &["label"]).await, 0);
    assert_eq!(picked(&["label=lb-b"], &["label=lb-a"]).await, 1);

    let opts = PruneOptions {
        labels: vec!["label=lb-b".into()],
        ..PruneOptions::default()
    };
    let pruned = store.images().prune(&opts).await.unwrap();
    assert_eq!(pruned.images, [sha(&imgs[1].manifest).parse().unwrap()]);
    assert_eq!(picked(&[], &[]).await, 2);
}
