//! Real clients pull from hyperd's registry endpoint on loopback and get the stored digests:
//! skopeo by name (one image, and an index with `--all`), containerd 1.6 through a
//! `hosts.toml` that names hyperd as the mirror of a made-up host (it adds `?ns=HOST`), and
//! podman through a `registries.conf` mirror (it asks for `/v2/<prefix>/<repo>`), and another
//! hyperd, referrers included.

use integration::TestDaemon;
use integration::fixtures::*;
use integration::serve::registry_addr;
use integration::tools::{Containerd, cmd, containers, p, sh};
use serde_json::Value;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A daemon serving a registry on loopback, holding `image` as `name`.
async fn serving(image: &Image, name: &str) -> (TestDaemon, String) {
    let d = TestDaemon::start_with_args(&["--registry-listen", "127.0.0.1:0"]);
    let archive = oci_archive(&[(image, &[(REF_NAME, name)])]).await;
    d.ok(&["load", "-i", p(&d.write_file("image.tar", &archive))]);
    let addr = registry_addr(&d);
    (d, addr)
}

/// The digest of the one manifest an OCI layout's index.json lists.
fn layout_digest(dir: &std::path::Path) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn skopeo_inspects_and_copies_the_stored_digests() {
    let app = Image::new(&["clients skopeo"], "amd64", Comp::Gzip).await;
    let (d, addr) = serving(&app, "app:1").await;
    let (entries, amd, _, inner) = multi_platform("docker.io/library/multi:1").await;
    d.ok(&[
        "load",
        "-i",
        p(&d.write_file("multi.tar", &tar(&entries).await)),
    ]);

    let inspect = sh(&mut cmd(
        "skopeo",
        &[
            "inspect",
            "--no-tags",
            "--tls-verify=false",
            &format!("docker://{addr}/app:1"),
        ],
    ));
    let inspect: Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], sha(&app.manifest).as_str());

    let copy = |source: &str, dir: &str, all: bool| {
        let dest = d.path(dir);
        let mut args = vec!["copy", "-q", "--src-tls-verify=false"];
        if all {
            args.push("--all");
        }
        let (source, target) = (
            format!("docker://{addr}/{source}"),
            format!("oci:{}:x", p(&dest)),
        );
        args.extend([source.as_str(), target.as_str()]);
        sh(&mut cmd("skopeo", &args));
        layout_digest(&dest)
    };
    assert_eq!(copy("app:1", "app-oci", false), sha(&app.manifest));
    assert_eq!(
        copy("library/app:1", "app-oci-2", false),
        sha(&app.manifest)
    );
    // The index whole with --all; without, the host's (amd64) manifest.
    assert_eq!(copy("multi:1", "multi-all", true), sha(&inner));
    assert_eq!(copy("multi:1", "multi-one", false), sha(&amd.manifest));
}

#[tokio::test]
async fn containerd_pulls_through_hyperd_named_as_a_mirror_in_hosts_toml() {
    let app = Image::new(&["clients ctr"], "amd64", Comp::Gzip).await;
    let (d, addr) = serving(&app, "made.up.example/app:1").await;
    let hosts = d.path("hosts");
    std::fs::create_dir_all(hosts.join("made.up.example")).unwrap();
    std::fs::write(
        hosts.join("made.up.example/hosts.toml"),
        format!(
            "server = \"https://made.up.example\"\n\n[host.\"http://{addr}\"]\n  \
             capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .unwrap();
    let containerd = Containerd::start(&d.path("containerd"));
    containerd.ctr(&[
        "images",
        "pull",
        "--snapshotter",
        "native",
        "--hosts-dir",
        p(&hosts),
        "made.up.example/app:1",
    ]);
    assert_eq!(
        containerd.images(),
        [("made.up.example/app:1".to_owned(), sha(&app.manifest))]
    );
    assert!(d.log().contains("registry endpoint listening"));
}

#[tokio::test]
async fn podman_pulls_through_a_registries_conf_mirror() {
    let app = Image::new(&["clients podman"], "amd64", Comp::Gzip).await;
    let (d, addr) = serving(&app, "made.up.example/app:1").await;
    let conf = d.write_file(
        "registries.conf",
        format!(
            "[[registry]]\nlocation = \"made.up.example\"\n\n[[registry.mirror]]\n\
             location = \"{addr}/made.up.example\"\ninsecure = true\n"
        )
        .as_bytes(),
    );
    let pod = d.path("podman");
    let podman = || {
        let mut c = containers("podman", &pod);
        c.env("CONTAINERS_REGISTRIES_CONF", &conf);
        c
    };
    sh(podman().args(["pull", "-q", "made.up.example/app:1"]));
    let digest = sh(podman().args([
        "image",
        "inspect",
        "--format",
        "{{.Digest}} {{.ID}}",
        "made.up.example/app:1",
    ]));
    let id = app.id();
    assert_eq!(
        digest.trim(),
        format!("{} {}", sha(&app.manifest), &id[7..])
    );
}

#[tokio::test]
async fn another_hyperd_pulls_an_image_and_its_referrers_through_the_referrers_api() {
    use integration::artifacts::*;
    let app = Image::new(&["clients hyperd"], "amd64", Comp::Gzip).await;
    let (sig, sbom) = (
        cosign_signature(&app.manifest, MANIFEST, "clients"),
        spdx_sbom(&app.manifest, MANIFEST),
    );
    let source = TestDaemon::start_with_args(&["--registry-listen", "127.0.0.1:0"]);
    let entries = layout(&[(&app, &[(REF_NAME, "team/app:1")])], &[&sig, &sbom]);
    source.ok(&[
        "load",
        "-i",
        p(&source.write_file("app.tar", &tar(&entries).await)),
    ]);
    let addr = registry_addr(&source);

    let receiver = TestDaemon::start();
    let name = format!("{addr}/team/app:1");
    let out = receiver.ok(&["pull", "--referrers", &name]);
    assert!(out.contains("Referrers: 2"), "{out}");
    let inspect = receiver.inspect(&name);
    assert_eq!(inspect["Digest"], sha(&app.manifest).as_str());
    let mut referrers: Vec<String> = inspect["Referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Digest"].as_str().unwrap().to_owned())
        .collect();
    referrers.sort();
    let mut expected = vec![sig.digest(), sbom.digest()];
    expected.sort();
    // Only the referrers API has them: the tag schema's `sha256-<hex>` tags are not stored.
    assert_eq!(referrers, expected);
}
