//! Referrers through the store's own API: a stray one refused without a trace, the same save
//! twice the same bytes, and `create_referrer`, the path registry pulls take.

use crate::common::*;
use integration::artifacts::*;
use store::{Created, Digest, Error, Format, Store, WriteStart};

const OCI: Format = Format::Oci {
    referrers: store::Referrers::Include,
};

/// Writes `blob` through the content API under `lease`, as a pull would.
async fn put(store: &Store, lease: &str, blob: &[u8]) {
    let start = WriteStart {
        reference: sha(blob),
        expected: sha(blob).parse().unwrap(),
        total: blob.len() as u64,
        lease: Some(lease.to_owned()),
        offset: 0,
    };
    if let store::Began::Open(mut w) = store.content().begin_write(start).await.unwrap() {
        w.write(blob.to_vec()).await.unwrap().unwrap();
    }
}

fn digest(bytes: &[u8]) -> Digest {
    sha(bytes).parse().unwrap()
}

#[tokio::test]
async fn a_referrer_of_nothing_stored_or_archived_is_refused_without_a_trace() {
    let app = plain().await;
    let stray = spdx_sbom(b"a manifest that is nowhere", MANIFEST);
    let name = [("io.containerd.image.name", "app:1")];
    let archive = tar(&layout(&[(&app, &name)], &[&stray])).await;
    let e = refused(archive, "neither stored nor in the archive").await;
    assert!(matches!(e, Error::Conflict(_)), "{e:?}");
}

#[tokio::test]
async fn an_oci_save_with_referrers_is_the_same_bytes_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let app = Image::new(&["twice"], "amd64", Comp::None).await;
    let sig = cosign_signature(&app.manifest, MANIFEST, "twice");
    let sbom = spdx_sbom(&app.manifest, MANIFEST);
    let name = [("io.containerd.image.name", "app:1")];
    let archive = tar(&layout(&[(&app, &name)], &[&sbom, &sig])).await;
    store.images().load(reader(archive), &[]).await.unwrap();
    let first = save(&store, &[("app:1", None)], OCI).await;
    assert_eq!(save(&store, &[("app:1", None)], OCI).await, first);
    let bare = save(
        &store,
        &[("app:1", None)],
        Format::Oci {
            referrers: store::Referrers::Omit,
        },
    )
    .await;
    assert!(bare.len() < first.len());
    assert_eq!(rows(&store), vec![("app:1".into(), app.id())]);
}

#[tokio::test]
async fn create_referrer_stores_a_pulled_signature_beside_its_stored_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let app = Image::new(&["pulled"], "amd64", Comp::None).await;
    let sig = cosign_signature(&app.manifest, MANIFEST, "pulled");
    let lease = store.leases().create(3600).await.unwrap().id;
    for b in [&app.manifest, &app.config, &app.layers[0].0, &sig.manifest]
        .into_iter()
        .chain(&sig.blobs)
    {
        put(&store, &lease, b).await;
    }
    let (app_d, sig_d) = (digest(&app.manifest), digest(&sig.manifest));

    let e = store
        .images()
        .create_referrer(&sig_d, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Conflict(m) if m.contains("is not stored")),
        "{e}"
    );
    let e = store
        .images()
        .create_referrer(&app_d, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("not a referrer")),
        "{e}"
    );
    let created = store
        .images()
        .create_image(&app_d, None, &[name("app:1")])
        .await;
    assert!(matches!(created, Ok(Created::Image(_))), "{created:?}");

    let r = store.images().create_referrer(&sig_d, None).await.unwrap();
    assert_eq!(
        (&r.subject, r.artifact_type.as_deref()),
        (&app_d, Some(EMPTY))
    );
    assert_eq!(r.blobs[0], sig_d);
    let index = store.images().referrers_index(&app_d, None).unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(index["manifests"][0]["digest"], sig.digest());
    assert_eq!(
        store.images().inspect("app:1").await.unwrap().referrers,
        [r]
    );
    assert_eq!(rows(&store).len(), 1);
    // The referrer now holds its blobs, without the lease.
    store.leases().delete(&lease).await.unwrap();
    store.gc().await.unwrap();
    assert!(blob_files(dir.path()).contains(&sig_d.hex()));

    // Collected with its image: the record goes in the removal's transaction, the blobs after.
    let removed = store.images().remove("app:1", false).await.unwrap();
    assert!(removed.contains(&store::Removed::Referrer(sig_d.clone())));
    assert!(matches!(
        store.images().referrers_index(&app_d, None),
        Err(Error::NotFound(_))
    ));
    store.gc().await.unwrap();
    assert!(
        blob_files(dir.path()).is_empty(),
        "{:?}",
        blob_files(dir.path())
    );
}
