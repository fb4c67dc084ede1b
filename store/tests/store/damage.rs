//! Damage to the store's own data (a record missing behind a tag, a blob changed or gone on
//! disk) is reported as such, naming what is damaged, and never panics; removing a tag whose
//! record is gone repairs the store.

use crate::common::*;
use store::{Error, Format, SaveItem, Store};

async fn store_with_one_image(dir: &std::path::Path) -> (Store, Image) {
    let store = open(dir).await;
    let img = Image::new(&["damage"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&img, &[("io.containerd.image.name", "app:1")])]).await;
    store.images().load(reader(archive), &[]).await.unwrap();
    (store, img)
}

fn item(image: &str) -> Vec<SaveItem> {
    vec![SaveItem {
        image: image.to_owned(),
        ref_name: None,
    }]
}

fn assert_corrupt<T: std::fmt::Debug>(result: store::Result<T>, naming: &str) {
    match result {
        Err(Error::Corrupt(m)) => assert!(m.contains(naming), "{m} does not name {naming}"),
        other => panic!("expected damage naming {naming}, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_blob_changed_on_disk_is_damage_naming_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (store, img) = store_with_one_image(dir.path()).await;
    let config = dir.path().join("blobs/sha256").join(hex_of(&img.id()));
    std::fs::write(&config, b"{\"not\": \"the config\"}").unwrap();
    assert_corrupt(store.images().inspect("app:1").await, &img.id());
    assert_corrupt(
        store
            .images()
            .save(&item("app:1"), DOCKER, Vec::new())
            .await,
        &img.id(),
    );
}

#[tokio::test]
async fn a_stored_blob_gone_from_disk_is_damage_naming_its_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (store, img) = store_with_one_image(dir.path()).await;
    let layer = img.blob_entries().last().unwrap().path.clone();
    std::fs::remove_file(dir.path().join(&layer)).unwrap();
    let hex = layer.rsplit('/').next().unwrap();
    assert_corrupt(
        store
            .images()
            .save(
                &item("app:1"),
                Format::Oci {
                    referrers: store::Referrers::Include,
                },
                Vec::new(),
            )
            .await,
        hex,
    );
}

#[tokio::test]
async fn a_tag_whose_record_is_missing_is_damage_and_rmi_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, img) = store_with_one_image(dir.path()).await;
    assert_eq!(rows(&store).len(), 1);
    drop(store);
    integration::damage::drop_record(dir.path(), "docker.io/library/app:1");
    let store = open(dir.path()).await;

    // The indexes, rebuilt at open from the records left, list nothing.
    assert!(store.images().list().unwrap().is_empty());
    assert_corrupt(store.images().inspect("app:1").await, "has no record");
    assert_corrupt(
        store
            .images()
            .save(
                &item("app:1"),
                Format::Oci {
                    referrers: store::Referrers::Include,
                },
                Vec::new(),
            )
            .await,
        "has no record",
    );
    assert_corrupt(
        store.images().tag("app:1", &name("b:1")).await,
        "has no record",
    );
    let report = store.check().await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].contains("app:1"));

    let removed = store.images().remove("app:1", false).await.unwrap();
    assert_eq!(removed, vec![store::Removed::Untagged(name("app:1"))]);
    assert!(store.check().await.unwrap().problems.is_empty());
    assert!(store.images().list().unwrap().is_empty());
    // The image's blobs went with the record: loading it again stores it whole.
    let archive = oci_archive(&[(&img, &[("io.containerd.image.name", "app:1")])]).await;
    store.images().load(reader(archive), &[]).await.unwrap();
    assert!(store.images().inspect("app:1").await.is_ok());
}
