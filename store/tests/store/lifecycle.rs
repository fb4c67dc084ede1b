//! Naming, tags, removal, collection, check, locking and start-up cleaning.

use crate::common::*;
use store::{Error, Format, Removed};

#[tokio::test]
async fn seed_archive_with_pre_1_0_ref_name_key_loads_by_map() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["p1"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&img, &[("org.opencontainers.ref.name", "hello")])]).await;
    store
        .images()
        .load(reader(archive), &map(&[("centos:test", "hello")]))
        .await
        .unwrap();
    assert_eq!(rows(&store), vec![("centos:test".into(), img.id())]);
}

#[tokio::test]
async fn an_image_without_a_usable_name_is_kept_untagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["u1"], "amd64", Comp::None).await;
    let loaded = store
        .images()
        .load(
            reader(
                oci_archive(&[(&img, &[("org.opencontainers.image.ref.name", "latest")])]).await,
            ),
            &[],
        )
        .await
        .unwrap();
    assert!(loaded.images[0].names.is_empty());
    assert_eq!(rows(&store), vec![("<none>".into(), img.id())]);
    // An untagged image is removed by its ID.
    let removed = store
        .images()
        .remove(&hex_of(&img.id())[..12], false)
        .await
        .unwrap();
    assert_eq!(removed, vec![Removed::Deleted(img.id().parse().unwrap())]);
    assert!(blob_files(dir.path()).is_empty());
}

#[tokio::test]
async fn names_are_normalised_like_docker() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["n1"], "amd64", Comp::None).await;
    store
        .images()
        .load(reader(docker_archive(&[(&img, &["busybox"])]).await), &[])
        .await
        .unwrap();
    assert_eq!(rows(&store), vec![("busybox:latest".into(), img.id())]);
    // Every spelling of the same name reaches it.
    for spelling in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        "index.docker.io/library/busybox:latest",
    ] {
        assert!(store.images().inspect(spelling).await.is_ok(), "{spelling}");
    }
}

#[tokio::test]
async fn a_tag_that_exists_moves_and_the_old_image_stays_dangling() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let old = Image::new(&["old"], "amd64", Comp::None).await;
    let new = Image::new(&["new"], "amd64", Comp::None).await;
    store
        .images()
        .load(reader(docker_archive(&[(&old, &["app:1"])]).await), &[])
        .await
        .unwrap();
    store
        .images()
        .load(reader(docker_archive(&[(&new, &["app:1"])]).await), &[])
        .await
        .unwrap();
    assert_eq!(
        rows(&store),
        vec![("<none>".into(), old.id()), ("app:1".into(), new.id())]
    );
}

#[tokio::test]
async fn removing_one_image_keeps_the_blobs_another_still_uses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (_a, b) = load_two_sharing_a_layer(&store, "base").await;
    store.images().remove("a:1", false).await.unwrap();
    let left = blob_files(dir.path());
    let mut want: Vec<String> = b
        .blob_entries()
        .iter()
        .map(|e| e.path["blobs/sha256/".len()..].to_owned())
        .collect();
    want.sort();
    assert_eq!(left, want);
    assert!(store.check().await.unwrap().problems.is_empty());
}

#[tokio::test]
async fn rmi_by_id_with_several_tags_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["f1"], "amd64", Comp::None).await;
    store
        .images()
        .load(
            reader(docker_archive(&[(&img, &["x:1", "y:1"])]).await),
            &[],
        )
        .await
        .unwrap();
    let full_id = img.id();
    let id = &hex_of(&full_id)[..12];
    assert!(matches!(
        store.images().remove(id, false).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(rows(&store).len(), 2);
    let removed = store.images().remove(id, true).await.unwrap();
    assert_eq!(removed.len(), 3);
    assert!(rows(&store).is_empty());
    assert!(matches!(
        store.images().remove("x:1", false).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn tag_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["t1"], "amd64", Comp::None).await;
    store
        .images()
        .load(
            reader(oci_archive(&[(&img, &[("io.containerd.image.name", "t:1")])]).await),
            &[],
        )
        .await
        .unwrap();
    store
        .images()
        .tag("t:1", &name("quay.io/me/t:2"))
        .await
        .unwrap();
    assert_eq!(
        rows(&store),
        vec![
            ("quay.io/me/t:2".into(), img.id()),
            ("t:1".into(), img.id())
        ]
    );
    let inspected = store.images().inspect("quay.io/me/t:2").await.unwrap();
    assert_eq!(inspected.manifest, img.manifest);
    assert_eq!(inspected.config, img.config);
    assert!(matches!(
        store.images().tag("missing:1", &name("a:b")).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn check_finds_a_corrupted_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["c1"], "amd64", Comp::None).await;
    store
        .images()
        .load(
            reader(oci_archive(&[(&img, &[("io.containerd.image.name", "c:1")])]).await),
            &[],
        )
        .await
        .unwrap();
    let report = store.check().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.blobs_checked, 3);
    let layer = dir
        .path()
        .join("blobs/sha256")
        .join(hex_of(&sha(&img.layers[0].0)));
    std::fs::write(&layer, b"rotten").unwrap();
    let report = store.check().await.unwrap();
    assert_eq!(report.problems.len(), 1);
    assert!(
        report.problems[0].contains("corrupt"),
        "{:?}",
        report.problems
    );
}

#[tokio::test]
async fn a_second_store_on_the_same_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path()).await;
    assert!(matches!(
        store::Store::open(dir.path()).await,
        Err(Error::Locked(_))
    ));
}

#[tokio::test]
async fn start_up_drops_crash_leftovers_and_unreferenced_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&["k1"], "amd64", Comp::None).await;
    {
        let store = open(dir.path()).await;
        store
            .images()
            .load(
                reader(oci_archive(&[(&img, &[("io.containerd.image.name", "k:1")])]).await),
                &[],
            )
            .await
            .unwrap();
    }
    // What a load killed halfway leaves: a staging directory and a blob published before its
    // metadata commit.
    std::fs::create_dir_all(dir.path().join("ingest/123-0")).unwrap();
    std::fs::write(dir.path().join("ingest/123-0/tmp-1"), b"partial").unwrap();
    let orphan = write_orphan(dir.path());
    let store = open(dir.path()).await;
    assert_eq!(ingest_files(dir.path()), 0);
    assert!(!blob_files(dir.path()).contains(&orphan));
    assert_eq!(rows(&store), vec![("k:1".into(), img.id())]);
    assert!(store.check().await.unwrap().problems.is_empty());
}

#[tokio::test]
async fn a_save_in_flight_keeps_its_blobs_through_a_remove() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["big1", "big2", "big3"], "amd64", Comp::None).await;
    store
        .images()
        .load(
            reader(oci_archive(&[(&img, &[("io.containerd.image.name", "big:1")])]).await),
            &[],
        )
        .await
        .unwrap();
    // A pipe smaller than the archive: the save blocks until the reader drains it.
    let (mut rx, tx) = tokio::io::duplex(1024);
    let saver = store.clone();
    let save = tokio::spawn(async move {
        let items = [store::SaveItem {
            image: "big:1".into(),
            ref_name: None,
        }];
        saver
            .images()
            .save(
                &items,
                Format::Oci {
                    referrers: store::Referrers::Include,
                },
                tx,
            )
            .await
            .map(drop)
    });
    let mut first = [0u8; 512];
    rx.read_exact(&mut first).await.unwrap();
    store.images().remove("big:1", false).await.unwrap();
    let mut rest = Vec::new();
    rx.read_to_end(&mut rest).await.unwrap();
    save.await.unwrap().unwrap();
    assert!(
        blob_files(dir.path()).is_empty(),
        "the blobs the save kept are collected when it ends"
    );
    let mut archive = first.to_vec();
    archive.extend(rest);
    store.images().load(reader(archive), &[]).await.unwrap();
    assert_eq!(rows(&store), vec![("big:1".into(), img.id())]);
    // Once the save ended, collection was free to run; the re-load put everything back.
    assert!(store.check().await.unwrap().problems.is_empty());
}

#[tokio::test]
async fn blobs_held_on_a_lease_outlive_the_removal_of_their_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = plain().await;
    let archive = oci_archive(&[(&img, &[("io.containerd.image.name", "app:1")])]).await;
    store.images().load(reader(archive), &[]).await.unwrap();
    let stored = blob_files(dir.path());
    let digests: Vec<store::Digest> = stored
        .iter()
        .map(|hex| format!("sha256:{hex}").parse().unwrap())
        .collect();
    let lease = store.leases().create(60).await.unwrap().id;
    store.leases().hold_blobs(&lease, &digests).await.unwrap();

    store.images().remove("app:1", false).await.unwrap();
    store.gc().await.unwrap();
    assert_eq!(blob_files(dir.path()), stored);
    store.leases().delete(&lease).await.unwrap();
    store.gc().await.unwrap();
    assert!(blob_files(dir.path()).is_empty());

    let lease = store.leases().create(60).await.unwrap().id;
    let e = store
        .leases()
        .hold_blobs(&lease, &digests[..1])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
}

/// A load says which of the blobs it uses the store held before: none the first time, the
/// shared layer beside a new image, every one on a reload.
#[tokio::test]
async fn a_load_counts_the_blobs_it_found_already_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let a = Image::new(&["shared-c", "own-a"], "amd64", Comp::None).await;
    let b = Image::new(&["shared-c", "own-b"], "amd64", Comp::None).await;
    let archive = |img: &Image, name: &str| {
        let img = img.clone();
        let name = name.to_owned();
        async move { oci_archive(&[(&img, &[("io.containerd.image.name", name.as_str())])]).await }
    };
    let load = |bytes: Vec<u8>| {
        let store = &store;
        async move { store.images().load(reader(bytes), &[]).await.unwrap() }
    };
    // manifest, config, two layers
    let first = load(archive(&a, "a:1").await).await;
    assert_eq!(
        (
            first.blobs,
            first.already_stored,
            first.already_stored_bytes
        ),
        (4, 0, 0)
    );

    let beside = load(archive(&b, "b:1").await).await;
    let shared = a.layers[0].0.len() as u64;
    assert_eq!((beside.blobs, beside.already_stored), (4, 1));
    assert_eq!(beside.already_stored_bytes, shared);

    let again = load(archive(&a, "a:1").await).await;
    let all = a.manifest.len() + a.config.len() + a.layers.iter().map(|l| l.0.len()).sum::<usize>();
    assert_eq!((again.blobs, again.already_stored), (4, 4));
    assert_eq!(again.already_stored_bytes, all as u64);
}
