//! Archives made at test time by the real tools load without options, and what hyperd saves loads
//! in them with the same digests, IDs and names.

use integration::TestDaemon;
use integration::fixtures::*;
use integration::tools::*;

/// (name, full image ID) of each image hyperd lists, sorted.
fn hyperd_images(d: &TestDaemon) -> Vec<(String, String)> {
    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["images", "--format", "json"])).unwrap();
    let mut v: Vec<(String, String)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                format!(
                    "{}:{}",
                    i["Repository"].as_str().unwrap(),
                    i["Tag"].as_str().unwrap()
                ),
                i["ID"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn skopeo_oci_archive_loads_with_its_name_and_digests() {
    let d = TestDaemon::start();
    let layout = two_layer_layout(&d);
    let archive = d.path("sk.tar");
    skopeo_copy(
        &format!("oci:{}:v1", p(&layout)),
        &format!("oci-archive:{}:busybox:1.35", p(&archive)),
    );
    let (manifest, config) = skopeo_digests(&format!("oci:{}:v1", p(&layout)));
    d.ok(&["load", "-i", p(&archive)]);
    assert_eq!(hyperd_images(&d), [("busybox:1.35".to_owned(), config)]);
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "busybox:1.35"])).unwrap();
    assert_eq!(inspect[0]["Digest"], manifest.as_str());
}

#[test]
fn skopeo_docker_archive_with_extra_tags_loads_every_tag() {
    let d = TestDaemon::start();
    let layout = two_layer_layout(&d);
    let archive = d.path("sk-docker.tar");
    sh(&mut cmd(
        "skopeo",
        &[
            "copy",
            "--additional-tag",
            "app:2",
            &format!("oci:{}:v1", p(&layout)),
            &format!("docker-archive:{}:app:1", p(&archive)),
        ],
    ));
    let (_, config) = skopeo_digests(&format!("oci:{}:v1", p(&layout)));
    let out = d.ok(&["load", "-i", p(&archive)]);
    assert_eq!(out, "Loaded image: app:1\nLoaded image: app:2\n");
    assert_eq!(
        hyperd_images(&d),
        [
            ("app:1".to_owned(), config.clone()),
            ("app:2".to_owned(), config)
        ]
    );
}

#[test]
fn umoci_layouts_tarred_with_gnu_tar_load_with_and_without_dot_slash() {
    let d = TestDaemon::start();
    let layout = two_layer_layout(&d);
    let (_, config) = skopeo_digests(&format!("oci:{}:v1", p(&layout)));
    let plain = d.path("plain.tar");
    sh(&mut cmd(
        "tar",
        &[
            "-cf",
            p(&plain),
            "-C",
            p(&layout),
            "oci-layout",
            "index.json",
            "blobs",
        ],
    ));
    let dotted = d.path("dotted.tar");
    sh(&mut cmd("tar", &["-cf", p(&dotted), "-C", p(&layout), "."]));
    d.ok(&["load", "-i", p(&plain), "-r", "plain:1=v1"]);
    d.ok(&["load", "-i", p(&dotted), "-r", "dotted:1=v1"]);
    assert_eq!(
        hyperd_images(&d),
        [
            ("dotted:1".to_owned(), config.clone()),
            ("plain:1".to_owned(), config)
        ]
    );
}

#[test]
fn whole_archives_compressed_by_gzip_and_zstd_load() {
    let d = TestDaemon::start();
    let layout = two_layer_layout(&d);
    let archive = d.path("c.tar");
    skopeo_copy(
        &format!("oci:{}:v1", p(&layout)),
        &format!("oci-archive:{}:comp:1", p(&archive)),
    );
    sh(&mut cmd("gzip", &["-k", p(&archive)]));
    sh(&mut cmd("zstd", &["-q", "-k", p(&archive)]));
    d.ok(&[
        "load",
        "-i",
        &format!("{}.gz", p(&archive)),
        "-r",
        "gz:1=comp:1",
    ]);
    d.ok(&[
        "load",
        "-i",
        &format!("{}.zst", p(&archive)),
        "-r",
        "zst:1=comp:1",
    ]);
    let names: Vec<String> = hyperd_images(&d).into_iter().map(|r| r.0).collect();
    assert_eq!(names, ["gz:1", "zst:1"]);
}

#[test]
fn podman_archives_load_with_podmans_names() {
    let d = TestDaemon::start();
    let layout = two_layer_layout(&d);
    let pod = d.path("podman");
    let (_, config) = skopeo_digests(&format!("oci:{}:v1", p(&layout)));
    let seed = d.path("seed.tar");
    skopeo_copy(
        &format!("oci:{}:v1", p(&layout)),
        &format!("oci-archive:{}:busybox:1.35", p(&seed)),
    );
    sh(containers("podman", &pod).args(["load", "-q", "-i", p(&seed)]));
    sh(containers("podman", &pod).args([
        "tag",
        &config,
        "localhost/app:1",
        "quay.io/me/other:2",
        "docker.io/library/busybox:1.35",
    ]));
    let oci = d.path("pod-oci.tar");
    let docker = d.path("pod-docker.tar");
    let multi = d.path("pod-multi.tar");
    sh(containers("podman", &pod).args([
        "save",
        "--format",
        "oci-archive",
        "-o",
        p(&oci),
        "localhost/app:1",
    ]));
    sh(containers("podman", &pod).args([
        "save",
        "--format",
        "docker-archive",
        "-o",
        p(&docker),
        "quay.io/me/other:2",
    ]));
    sh(containers("podman", &pod).args([
        "save",
        "-m",
        "-o",
        p(&multi),
        "localhost/app:1",
        "quay.io/me/other:2",
        "docker.io/library/busybox:1.35",
    ]));

    assert_eq!(
        d.ok(&["load", "-i", p(&oci)]),
        "Loaded image: localhost/app:1\n"
    );
    assert_eq!(
        d.ok(&["load", "-i", p(&docker)]),
        "Loaded image: quay.io/me/other:2\n"
    );
    let out = d.ok(&["load", "-i", p(&multi)]);
    assert_eq!(
        out,
        "Loaded image: localhost/app:1\nLoaded image: quay.io/me/other:2\nLoaded image: busybox:1.35\n"
    );
    let want: Vec<(String, String)> = ["busybox:1.35", "localhost/app:1", "quay.io/me/other:2"]
        .iter()
        .map(|n| (n.to_string(), config.clone()))
        .collect();
    assert_eq!(hyperd_images(&d), want);
}

#[test]
fn buildah_oci_archive_loads() {
    let d = TestDaemon::start();
    let dir = d.path("buildah");
    let ctr = sh(containers("buildah", &dir).args(["from", "scratch"]))
        .trim()
        .to_owned();
    let file = d.path("hello.txt");
    std::fs::write(&file, "built by buildah\n").unwrap();
    sh(containers("buildah", &dir).args(["copy", &ctr, p(&file), "/hello.txt"]));
    sh(containers("buildah", &dir).args(["config", "--cmd", "/hello.txt", &ctr]));
    sh(containers("buildah", &dir).args(["commit", "-q", &ctr, "localhost/built:1"]));
    let archive = d.path("bh.tar");
    sh(containers("buildah", &dir).args([
        "push",
        "localhost/built:1",
        &format!("oci-archive:{}:localhost/built:1", p(&archive)),
    ]));
    let id = sh(containers("buildah", &dir).args([
        "images",
        "--no-trunc",
        "--format",
        "{{.ID}}",
        "localhost/built:1",
    ]));
    let id = id.trim();
    let id = if id.starts_with("sha256:") {
        id.to_owned()
    } else {
        format!("sha256:{id}")
    };
    assert_eq!(
        d.ok(&["load", "-i", p(&archive)]),
        "Loaded image: localhost/built:1\n"
    );
    assert_eq!(hyperd_images(&d), [("localhost/built:1".to_owned(), id)]);
}

#[test]
fn what_hyperd_saves_as_oci_passes_skopeo_umoci_and_podman() {
    let d = TestDaemon::start();
    let (_, manifest, config) = load_skopeo_image(&d);
    let saved = d.path("saved-oci.tar");
    d.ok(&[
        "save",
        "-f",
        "oci",
        "-o",
        p(&saved),
        "-r",
        "busybox:1.35=hello",
        "busybox:1.35",
    ]);

    assert_eq!(
        skopeo_digests(&format!("oci-archive:{}:hello", p(&saved))),
        (manifest.clone(), config.clone())
    );
    let copied = d.path("copied");
    skopeo_copy(
        &format!("oci-archive:{}:hello", p(&saved)),
        &format!("oci:{}:x", p(&copied)),
    );
    assert_eq!(skopeo_digests(&format!("oci:{}:x", p(&copied))).0, manifest);

    let unpacked = d.path("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    sh(&mut cmd("tar", &["-xf", p(&saved), "-C", p(&unpacked)]));
    let stat = sh(&mut cmd(
        "umoci",
        &["stat", "--image", &format!("{}:hello", p(&unpacked))],
    ));
    assert!(stat.contains("umoci repack"), "{stat}");

    // podman names an OCI archive by io.containerd.image.name before the ref name.
    let pod = d.path("podman");
    sh(containers("podman", &pod).args(["load", "-q", "-i", p(&saved)]));
    assert_eq!(
        podman_images(&pod),
        [("docker.io/library/busybox:1.35".to_owned(), config)]
    );
}

#[test]
fn what_hyperd_saves_as_docker_passes_skopeo_and_podman() {
    let d = TestDaemon::start();
    let (layout, _, config) = load_skopeo_image(&d);
    let saved = d.path("saved-docker.tar");
    d.ok(&["save", "-f", "docker", "-o", p(&saved), "busybox:1.35"]);

    assert_eq!(
        skopeo_digests(&format!("docker-archive:{}", p(&saved))).1,
        config
    );
    // Converting docker-archive to OCI, skopeo re-serialises the config (it does so for its own
    // docker-archives too), so only the content can be compared there.
    let copied = d.path("copied");
    skopeo_copy(
        &format!("docker-archive:{}", p(&saved)),
        &format!("oci:{}:x", p(&copied)),
    );
    let config_of = |image: String| -> serde_json::Value {
        serde_json::from_str(&sh(&mut cmd("skopeo", &["inspect", "--config", &image]))).unwrap()
    };
    assert_eq!(
        config_of(format!("oci:{}:x", p(&copied))),
        config_of(format!("oci:{}:v1", p(&layout)))
    );

    let pod = d.path("podman");
    sh(containers("podman", &pod).args(["load", "-q", "-i", p(&saved)]));
    assert_eq!(
        podman_images(&pod),
        [("docker.io/library/busybox:1.35".to_owned(), config)]
    );
}

#[tokio::test]
async fn multi_platform_images_save_whole_as_oci_and_one_platform_as_docker() {
    let d = TestDaemon::start();
    let (entries, _, _, inner) = multi_platform("docker.io/library/multi:1").await;
    let f = d.path("multi.tar");
    std::fs::write(&f, tar(&entries).await).unwrap();
    d.ok(&["load", "-i", p(&f)]);
    assert_eq!(
        d.ok(&["images", "-q"]).lines().count(),
        1,
        "a multi-platform image is one row"
    );

    let saved = d.path("multi-oci.tar");
    d.ok(&["save", "-f", "oci", "-o", p(&saved), "multi:1"]);
    let raw = sh(&mut cmd(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:multi:1", p(&saved)),
        ],
    ));
    assert_eq!(
        raw.as_bytes(),
        inner.as_slice(),
        "the index is kept byte for byte"
    );
    let all = d.path("all");
    sh(&mut cmd(
        "skopeo",
        &[
            "copy",
            "--all",
            &format!("oci-archive:{}:multi:1", p(&saved)),
            &format!("oci:{}:m", p(&all)),
        ],
    ));

    let docker = d.path("multi-docker.tar");
    d.ok(&[
        "save",
        "-f",
        "docker",
        "--platform",
        "linux/arm64",
        "-o",
        p(&docker),
        "multi:1",
    ]);
    let config: serde_json::Value = serde_json::from_str(&sh(&mut cmd(
        "skopeo",
        &[
            "inspect",
            "--config",
            &format!("docker-archive:{}", p(&docker)),
        ],
    )))
    .unwrap();
    assert_eq!(config["architecture"], "arm64");
}
