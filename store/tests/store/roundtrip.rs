//! Import/export round trips through both formats, compression, entry order and platforms.

use crate::common::*;
use store::Format;

#[tokio::test]
async fn seed_workflow_keeps_image_ids_across_save_rmi_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let centos = Image::new(&["c1", "c2"], "amd64", Comp::Gzip).await;
    let busybox = Image::new(&["b1"], "amd64", Comp::None).await;
    let archive = oci_archive(&[
        (
            &centos,
            &[("io.containerd.image.name", "docker.io/library/centos:7")],
        ),
        (
            &busybox,
            &[("org.opencontainers.image.ref.name", "busybox:latest")],
        ),
    ])
    .await;
    store.images().load(reader(archive), &[]).await.unwrap();
    let before = rows(&store);
    assert_eq!(
        before,
        vec![
            ("busybox:latest".into(), busybox.id()),
            ("centos:7".into(), centos.id())
        ]
    );

    let saved = save(
        &store,
        &[
            ("centos:7", Some("hello")),
            ("busybox:latest", Some("world")),
        ],
        Format::Oci {
            referrers: store::Referrers::Include,
        },
    )
    .await;
    let files = untar(&saved).await;
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let refs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(refs, ["hello", "world"]);
    assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
    assert_eq!(index["manifests"][0]["platform"]["os"], "linux");
    assert_eq!(files["oci-layout"], LAYOUT);

    store.images().remove("centos:7", false).await.unwrap();
    store
        .images()
        .remove("busybox:latest", false)
        .await
        .unwrap();
    assert!(rows(&store).is_empty());
    assert!(blob_files(dir.path()).is_empty(), "rmi frees the blobs");

    store
        .images()
        .load(
            reader(saved),
            &map(&[("centos:test", "hello"), ("busybox:test", "world")]),
        )
        .await
        .unwrap();
    assert_eq!(
        rows(&store),
        vec![
            ("busybox:test".into(), busybox.id()),
            ("centos:test".into(), centos.id())
        ]
    );
}

#[tokio::test]
async fn docker_archive_round_trip_keeps_ids_and_manifest_digests() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["d1", "d2", "d3"], "amd64", Comp::None).await;
    let loaded = store
        .images()
        .load(
            reader(docker_archive(&[(&img, &["app:1", "app:2"])]).await),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(loaded.images.len(), 1);
    assert_eq!(loaded.images[0].id.to_string(), img.id());
    assert_eq!(
        rows(&store),
        vec![("app:1".into(), img.id()), ("app:2".into(), img.id())]
    );

    let saved = save(&store, &[("app:1", None)], DOCKER).await;
    let files = untar(&saved).await;
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["docker.io/library/app:1"])
    );
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 3);

    let dir2 = tempfile::tempdir().unwrap();
    let other = open(dir2.path()).await;
    let again = other.images().load(reader(saved), &[]).await.unwrap();
    assert_eq!(again.images[0].id, loaded.images[0].id);
    assert_eq!(
        again.images[0].digest, loaded.images[0].digest,
        "the generated manifest is deterministic"
    );
}

#[tokio::test]
async fn oci_image_with_gzip_layers_saves_as_docker_with_uncompressed_layers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["g1", "g2"], "amd64", Comp::Gzip).await;
    store
        .images()
        .load(
            reader(oci_archive(&[(&img, &[("org.opencontainers.image.ref.name", "x:1")])]).await),
            &[],
        )
        .await
        .unwrap();
    let saved = save(&store, &[("x:1", None)], DOCKER).await;
    let files = untar(&saved).await;
    for (_, raw) in &img.layers {
        let path = format!("blobs/sha256/{}", hex_of(&sha(raw)));
        assert_eq!(files[&path], *raw, "layer {path} is the uncompressed tar");
    }
    let dir2 = tempfile::tempdir().unwrap();
    let loaded = open(dir2.path())
        .await
        .images()
        .load(reader(saved), &[])
        .await
        .unwrap();
    assert_eq!(
        loaded.images[0].id.to_string(),
        img.id(),
        "diff_ids check out against the config"
    );
}

#[tokio::test]
async fn saving_twice_gives_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let a = Image::new(&["s1"], "amd64", Comp::Zstd).await;
    let b = Image::new(&["s2", "s1"], "amd64", Comp::Zstd).await;
    let archive = oci_archive(&[
        (&a, &[("io.containerd.image.name", "a:1")]),
        (&b, &[("io.containerd.image.name", "b:1")]),
    ])
    .await;
    store.images().load(reader(archive), &[]).await.unwrap();
    for format in [
        Format::Oci {
            referrers: store::Referrers::Include,
        },
        DOCKER,
    ] {
        let one = save(&store, &[("a:1", Some("x")), ("b:1", None)], format.clone()).await;
        let two = save(&store, &[("a:1", Some("x")), ("b:1", None)], format.clone()).await;
        assert_eq!(one, two, "{format:?}");
    }
}

#[tokio::test]
async fn shared_blobs_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (a, _b) = load_two_sharing_a_layer(&store, "shared").await;
    let saved = save(
        &store,
        &[("a:1", None), ("b:1", None)],
        Format::Oci {
            referrers: store::Referrers::Include,
        },
    )
    .await;
    let shared = format!("blobs/sha256/{}", hex_of(&sha(&a.layers[0].0)));
    let count = untar_paths(&saved)
        .await
        .iter()
        .filter(|p| **p == shared)
        .count();
    assert_eq!(count, 1);
}

async fn untar_paths(bytes: &[u8]) -> Vec<String> {
    use futures_util::StreamExt;
    let mut a = tokio_tar::Archive::new(bytes);
    let mut out = Vec::new();
    let mut entries = a.entries().unwrap();
    while let Some(e) = entries.next().await {
        out.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    out
}

#[tokio::test]
async fn entry_order_and_dot_slash_prefixes_do_not_matter() {
    let img = Image::new(&["o1", "o2"], "amd64", Comp::Gzip).await;
    let base = oci_entries(&[(&img, &[("io.containerd.image.name", "o:1")])]);
    let mut reversed = base.clone();
    reversed.reverse();
    let dotted: Vec<Entry> = base
        .iter()
        .map(|e| Entry {
            path: format!("./{}", e.path),
            ..e.clone()
        })
        .collect();
    for entries in [base, reversed, dotted] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        store
            .images()
            .load(reader(tar(&entries).await), &[])
            .await
            .unwrap();
        assert_eq!(rows(&store), vec![("o:1".into(), img.id())]);
    }
}

#[tokio::test]
async fn compressed_whole_archives_load() {
    let img = Image::new(&["z1"], "amd64", Comp::None).await;
    let plain = oci_archive(&[(&img, &[("io.containerd.image.name", "z:1")])]).await;
    for archive in [gzip(&plain).await, zstd(&plain).await] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        store.images().load(reader(archive), &[]).await.unwrap();
        assert_eq!(rows(&store), vec![("z:1".into(), img.id())]);
    }
}

#[tokio::test]
async fn layers_are_stored_as_they_came() {
    for comp in [Comp::None, Comp::Gzip, Comp::Zstd] {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        let img = Image::new(&["l1"], "amd64", comp).await;
        let loaded = store
            .images()
            .load(reader(oci_archive(&[(&img, &[])]).await), &[])
            .await
            .unwrap();
        assert_eq!(
            loaded.images[0].digest.to_string(),
            sha(&img.manifest),
            "{comp:?}"
        );
        let stored = std::fs::read(
            dir.path()
                .join("blobs/sha256")
                .join(hex_of(&sha(&img.layers[0].0))),
        )
        .unwrap();
        assert_eq!(stored, img.layers[0].0, "{comp:?}");
    }
}

async fn multi_platform_store(dir: &std::path::Path) -> (store::Store, Image, Image, Vec<u8>) {
    let store = open(dir).await;
    let (entries, amd, arm, inner) = multi_platform("docker.io/library/multi:1").await;
    store
        .images()
        .load(reader(tar(&entries).await), &[])
        .await
        .unwrap();
    (store, amd, arm, inner)
}

#[tokio::test]
async fn multi_platform_index_is_one_image_and_saves_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (store, amd, arm, inner) = multi_platform_store(dir.path()).await;
    let list = store.images().list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].digest.to_string(), sha(&inner));
    assert_eq!(list[0].platforms, ["linux/amd64", "linux/arm64"]);
    if std::env::consts::ARCH == "x86_64" {
        assert_eq!(
            list[0].id.to_string(),
            amd.id(),
            "the ID is the host platform's config"
        );
    }
    let saved = untar(
        &save(
            &store,
            &[("multi:1", None)],
            Format::Oci {
                referrers: store::Referrers::Include,
            },
        )
        .await,
    )
    .await;
    for img in [&amd, &arm] {
        for e in img.blob_entries() {
            assert_eq!(saved[&e.path], e.data);
        }
    }
    assert_eq!(
        saved[&format!("blobs/sha256/{}", hex_of(&sha(&inner)))],
        inner
    );
}

#[tokio::test]
async fn docker_save_of_a_multi_platform_image_picks_one_platform() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _amd, arm, _) = multi_platform_store(dir.path()).await;
    let items = [store::SaveItem {
        image: "multi:1".into(),
        ref_name: None,
    }];
    let saved = store
        .images()
        .save(&items, docker_for("linux/arm64"), Vec::new())
        .await
        .unwrap();
    let files = untar(&saved).await;
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", hex_of(&arm.id()))
    );
    let err = store
        .images()
        .save(&items, docker_for("linux/s390x"), Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, store::Error::NotFound(ref m) if m.contains("linux/arm64")),
        "{err}"
    );
}

#[tokio::test]
async fn docker_25_archives_with_both_manifests_load_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["both"], "amd64", Comp::None).await;
    let mut entries = oci_entries(&[(
        &img,
        &[
            ("io.containerd.image.name", "docker.io/library/both:1"),
            ("org.opencontainers.image.ref.name", "1"),
        ],
    )]);
    let layer = format!("blobs/sha256/{}", hex_of(&sha(&img.layers[0].0)));
    let manifest = serde_json::json!([{"Config": format!("blobs/sha256/{}", hex_of(&img.id())), "RepoTags": ["both:1"], "Layers": [layer]}]);
    entries.push(Entry::file(
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    ));
    let loaded = store
        .images()
        .load(reader(tar(&entries).await), &[])
        .await
        .unwrap();
    assert_eq!(loaded.images.len(), 1);
    assert_eq!(
        loaded.images[0].digest.to_string(),
        sha(&img.manifest),
        "the OCI manifest is kept, not regenerated"
    );
    assert_eq!(rows(&store), vec![("both:1".into(), img.id())]);
}

#[tokio::test]
async fn docker_layers_that_are_symlinks_to_other_layers_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["same", "same"], "amd64", Comp::None).await;
    let raw = &img.layers[0].1;
    let entries = vec![
        Entry::file("cfg.json", &img.config),
        Entry::file("aaa/layer.tar", raw),
        Entry::link("bbb/layer.tar", tokio_tar::EntryType::Symlink, "../aaa/layer.tar"),
        Entry::file(
            "manifest.json",
            &serde_json::to_vec(&serde_json::json!([{"Config": "cfg.json", "RepoTags": ["sym:1"], "Layers": ["aaa/layer.tar", "bbb/layer.tar"]}])).unwrap(),
        ),
    ];
    store
        .images()
        .load(reader(tar(&entries).await), &[])
        .await
        .unwrap();
    assert_eq!(rows(&store), vec![("sym:1".into(), img.id())]);
}

#[tokio::test]
async fn loading_a_blob_the_store_has_verifies_it_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = Image::new(&["r1"], "amd64", Comp::Gzip).await;
    let archive = oci_archive(&[(&img, &[("io.containerd.image.name", "r:1")])]).await;
    store
        .images()
        .load(reader(archive.clone()), &[])
        .await
        .unwrap();
    let blobs = blob_files(dir.path());
    store
        .images()
        .load(reader(archive), &map(&[("r:2", "r:1")]))
        .await
        .unwrap();
    assert_eq!(blob_files(dir.path()), blobs);
    assert_eq!(
        rows(&store),
        vec![("r:1".into(), img.id()), ("r:2".into(), img.id())]
    );
}

#[tokio::test]
async fn a_layer_labelled_gzip_that_is_plain_tar_loads_and_saves_as_docker() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut img = Image::new(&["liar"], "amd64", Comp::None).await;
    img.layer_types = vec!["application/vnd.oci.image.layer.v1.tar+gzip".into()];
    img.manifest = img.manifest_with(|_| {});
    store
        .images()
        .load(
            reader(oci_archive(&[(&img, &[("io.containerd.image.name", "liar:1")])]).await),
            &[],
        )
        .await
        .unwrap();
    let saved = untar(&save(&store, &[("liar:1", None)], DOCKER).await).await;
    let raw = &img.layers[0].1;
    assert_eq!(saved[&format!("blobs/sha256/{}", hex_of(&sha(raw)))], *raw);
}

/// `ctr images export`: Docker media types, a manifest list, a tag-only ref name, and a
/// manifest.json beside index.json.
#[tokio::test]
async fn ctr_export_shape_with_docker_media_types_loads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut img = Image::new(&["ctr"], "amd64", Comp::Gzip).await;
    img.layer_types = vec!["application/vnd.docker.image.rootfs.diff.tar.gzip".into()];
    img.manifest = img.manifest_with(|m| {
        m["mediaType"] = serde_json::json!("application/vnd.docker.distribution.manifest.v2+json");
        m["config"]["mediaType"] =
            serde_json::json!("application/vnd.docker.container.image.v1+json");
    });
    let mut child = img.descriptor(&[]);
    child["mediaType"] = serde_json::json!("application/vnd.docker.distribution.manifest.v2+json");
    child["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [child],
    }))
    .unwrap();
    let top = serde_json::json!({
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "digest": sha(&list), "size": list.len(),
        "annotations": {"io.containerd.image.name": "docker.io/library/ctr:1", "org.opencontainers.image.ref.name": "1"},
    });
    let layer = format!("blobs/sha256/{}", hex_of(&sha(&img.layers[0].0)));
    let manifest = serde_json::json!([{"Config": format!("blobs/sha256/{}", hex_of(&img.id())), "RepoTags": ["ctr:1"], "Layers": [layer]}]);
    let mut entries = vec![
        Entry::file("oci-layout", LAYOUT),
        Entry::file("index.json", &index_json(vec![top])),
        Entry::blob(&list),
    ];
    entries.extend(img.blob_entries());
    entries.push(Entry::file(
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    ));
    let loaded = store
        .images()
        .load(reader(tar(&entries).await), &[])
        .await
        .unwrap();
    assert_eq!(loaded.images.len(), 1);
    assert_eq!(loaded.images[0].digest.to_string(), sha(&list));
    assert_eq!(rows(&store), vec![("ctr:1".into(), img.id())]);
    // Saved back as docker: the list resolves to the host platform and the layer is decompressed.
    let saved = untar(&save(&store, &[("ctr:1", None)], DOCKER).await).await;
    assert_eq!(
        saved[&format!("blobs/sha256/{}", hex_of(&sha(&img.layers[0].1)))],
        img.layers[0].1
    );
}
