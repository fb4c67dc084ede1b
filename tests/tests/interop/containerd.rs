//! containerd: what `ctr images export` writes loads into hyperd, and what hyperd saves imports
//! into a private containerd, one platform or all.

use integration::TestDaemon;
use integration::fixtures::*;
use integration::tools::*;

#[test]
fn ctr_export_loads_and_what_hyperd_saves_imports_into_containerd() {
    let d = TestDaemon::start();
    let (_, manifest, config) = load_skopeo_image(&d);
    let containerd = Containerd::start(&d.path("containerd"));

    // hyperd -> containerd, both formats.
    let oci = d.path("to-ctr-oci.tar");
    d.ok(&["save", "-f", "oci", "-o", p(&oci), "busybox:1.35"]);
    containerd.ctr(&["images", "import", "--no-unpack", p(&oci)]);
    assert_eq!(
        containerd.images(),
        [(
            "docker.io/library/busybox:1.35".to_owned(),
            manifest.clone()
        )]
    );
    d.ok(&["tag", "busybox:1.35", "app:2"]);
    let docker = d.path("to-ctr-docker.tar");
    d.ok(&["save", "-f", "docker", "-o", p(&docker), "app:2"]);
    containerd.ctr(&["images", "import", "--no-unpack", p(&docker)]);
    assert!(
        containerd
            .images()
            .iter()
            .any(|(n, _)| n == "docker.io/library/app:2"),
        "{:?}",
        containerd.images()
    );

    // containerd -> hyperd: ctr export writes index.json (tag-only ref name) and manifest.json.
    let exported = d.path("from-ctr.tar");
    containerd.ctr(&[
        "images",
        "export",
        p(&exported),
        "docker.io/library/busybox:1.35",
    ]);
    d.ok(&["rmi", "-f", &config[7..19]]);
    assert_eq!(
        d.ok(&["load", "-i", p(&exported)]),
        "Loaded image: busybox:1.35\n"
    );
    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "busybox:1.35"])).unwrap();
    assert_eq!(inspect[0]["Digest"], manifest.as_str());
    assert_eq!(inspect[0]["Id"], config.as_str());
}

#[tokio::test]
async fn ctr_all_platforms_round_trip() {
    let d = TestDaemon::start();
    let (entries, _, _, inner) = multi_platform("docker.io/library/multi:1").await;
    let f = d.path("multi.tar");
    std::fs::write(&f, tar(&entries).await).unwrap();
    d.ok(&["load", "-i", p(&f)]);
    let saved = d.path("multi-oci.tar");
    d.ok(&["save", "-f", "oci", "-o", p(&saved), "multi:1"]);

    let containerd = Containerd::start(&d.path("containerd"));
    containerd.ctr(&[
        "images",
        "import",
        "--no-unpack",
        "--all-platforms",
        p(&saved),
    ]);
    let exported = d.path("ctr-all.tar");
    containerd.ctr(&[
        "images",
        "export",
        "--all-platforms",
        p(&exported),
        "docker.io/library/multi:1",
    ]);
    d.ok(&["rmi", "multi:1"]);
    assert_eq!(
        d.ok(&["load", "-i", p(&exported)]),
        "Loaded image: multi:1\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["images", "--format", "json"])).unwrap();
    assert_eq!(json[0]["Digest"], sha(&inner).as_str());
    assert_eq!(
        json[0]["Platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
}
