//! The workflow of the seed document, through the real hyperctl and hyperd binaries.

use std::io::Write;
use std::process::Stdio;

use integration::TestDaemon;
use integration::fixtures::*;

/// Two images with full names in a docker-archive, written to a file in the daemon's temp dir.
async fn two_image_archive(d: &TestDaemon) -> (std::path::PathBuf, Image, Image) {
    let centos = Image::new(&["centos-a", "centos-b"], "amd64", Comp::None).await;
    let busybox = Image::new(&["busybox"], "amd64", Comp::None).await;
    let path = d.path("two.tar");
    std::fs::write(
        &path,
        docker_archive(&[(&centos, &["centos:7"]), (&busybox, &["busybox:latest"])]).await,
    )
    .unwrap();
    (path, centos, busybox)
}

/// (REPOSITORY, TAG, IMAGE ID) of each `images` row, sorted.
fn listed(d: &TestDaemon) -> Vec<(String, String, String)> {
    let out = d.ok(&["images"]);
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    let mut rows: Vec<_> = lines
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_owned(), cols[1].to_owned(), cols[2].to_owned())
        })
        .collect();
    rows.sort();
    rows
}

fn short(id: &str) -> String {
    hex_of(id)[..12].to_owned()
}

#[tokio::test]
async fn save_rmi_load_keeps_image_ids() {
    let d = TestDaemon::start();
    let (archive, centos, busybox) = two_image_archive(&d).await;
    let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(
        out,
        "Loaded image: centos:7\nLoaded image: busybox:latest\n"
    );
    assert_eq!(
        listed(&d),
        [
            ("busybox".into(), "latest".into(), short(&busybox.id())),
            ("centos".into(), "7".into(), short(&centos.id()))
        ]
    );

    let saved = d.path("mix-oci.tar");
    let saved_s = saved.to_str().unwrap();
    d.ok(&[
        "save",
        "-o",
        saved_s,
        "-f",
        "oci",
        "-r",
        "centos:7=hello",
        "-r",
        "busybox:latest=world",
        "centos:7",
        "busybox:latest",
    ]);
    let files = untar(&std::fs::read(&saved).unwrap()).await;
    let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2);
    for (m, refname) in manifests.iter().zip(["hello", "world"]) {
        assert_eq!(
            m["annotations"]["org.opencontainers.image.ref.name"],
            refname
        );
        assert_eq!(
            m["platform"],
            serde_json::json!({"architecture": "amd64", "os": "linux"})
        );
        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    }

    let out = d.ok(&["rmi", "centos:7", "busybox:latest"]);
    assert!(
        out.contains("Untagged: centos:7") && out.contains("Untagged: busybox:latest"),
        "{out}"
    );
    assert_eq!(out.matches("Deleted: sha256:").count(), 2, "{out}");
    assert!(listed(&d).is_empty());

    d.ok(&[
        "load",
        "-i",
        saved_s,
        "-r",
        "centos:test=hello",
        "-r",
        "busybox:test=world",
    ]);
    assert_eq!(
        listed(&d),
        [
            ("busybox".into(), "test".into(), short(&busybox.id())),
            ("centos".into(), "test".into(), short(&centos.id()))
        ]
    );
}

#[tokio::test]
async fn docker_format_round_trip() {
    let d = TestDaemon::start();
    let (archive, centos, _) = two_image_archive(&d).await;
    d.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let saved = d.path("centos.tar");
    d.ok(&[
        "save",
        "-o",
        saved.to_str().unwrap(),
        "-f",
        "docker",
        "centos:7",
    ]);
    let files = untar(&std::fs::read(&saved).unwrap()).await;
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["docker.io/library/centos:7"])
    );
    d.ok(&["rmi", "centos:7"]);
    d.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(listed(&d).contains(&("centos".into(), "7".into(), short(&centos.id()))));
}

#[tokio::test]
async fn save_piped_into_load() {
    let source = TestDaemon::start();
    let target = TestDaemon::start();
    let (archive, centos, busybox) = two_image_archive(&source).await;
    source.ok(&["load", "-i", archive.to_str().unwrap()]);
    let mut save = source
        .ctl()
        .args(["save", "-f", "oci", "centos:7", "busybox:latest"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let load = target
        .ctl()
        .args(["load"])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success());
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    assert_eq!(listed(&target), listed(&source));
    let ids: Vec<String> = listed(&target).into_iter().map(|r| r.2).collect();
    assert_eq!(ids, [short(&busybox.id()), short(&centos.id())]);
}

#[tokio::test]
async fn load_from_stdin_with_dash() {
    let d = TestDaemon::start();
    let img = Image::new(&["stdin"], "amd64", Comp::Gzip).await;
    let bytes =
        gzip(&oci_archive(&[(&img, &[("org.opencontainers.image.ref.name", "app:1")])]).await)
            .await;
    let mut child = d
        .ctl()
        .args(["load", "-i", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "Loaded image: app:1\n"
    );
}

#[tokio::test]
async fn images_quiet_json_tag_inspect_and_check() {
    let d = TestDaemon::start();
    let (archive, centos, busybox) = two_image_archive(&d).await;
    d.ok(&["load", "-i", archive.to_str().unwrap()]);
    d.ok(&["tag", "centos:7", "registry.local:5000/os/centos:prod"]);
    let mut ids: Vec<String> = d.ok(&["images", "-q"]).lines().map(str::to_owned).collect();
    ids.sort();
    let mut want = vec![short(&centos.id()), short(&busybox.id())];
    want.sort();
    assert_eq!(ids, want, "-q lists each image once");

    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["images", "--format", "json"])).unwrap();
    let names: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"registry.local:5000/os/centos:prod"),
        "{names:?}"
    );

    let inspect: serde_json::Value = serde_json::from_str(&d.ok(&["inspect", "centos:7"])).unwrap();
    assert_eq!(inspect[0]["Id"], centos.id());
    assert_eq!(inspect[0]["Config"]["architecture"], "amd64");
    assert_eq!(inspect[0]["Manifest"]["schemaVersion"], 2);
    let mut tags: Vec<&str> = inspect[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["centos:7", "registry.local:5000/os/centos:prod"]);

    let out = d.ok(&["check"]);
    assert!(out.contains("0 problems"), "{out}");
    let out = d.ok(&["version"]);
    assert!(
        out.contains("Client: hyperctl")
            && out.contains("Server: hyperd")
            && out.contains("hyperd.v1"),
        "{out}"
    );
}

#[tokio::test]
async fn two_images_sharing_an_id_are_named_each_by_name_at_digest() {
    let d = TestDaemon::start();
    let img = Image::new(&["shared"], "amd64", Comp::None).await;
    let oci = d.path("oci.tar");
    let name = [("io.containerd.image.name", "docker.io/library/app:oci")];
    std::fs::write(&oci, oci_archive(&[(&img, &name)]).await).unwrap();
    let docker = d.path("docker.tar");
    std::fs::write(&docker, docker_archive(&[(&img, &["app:docker"])]).await).unwrap();
    d.ok(&["load", "-i", oci.to_str().unwrap()]);
    d.ok(&["load", "-i", docker.to_str().unwrap()]);
    let rows: serde_json::Value =
        serde_json::from_str(&d.ok(&["images", "--format", "json"])).unwrap();
    let digest_of = |tag: &str| {
        let row = rows.as_array().unwrap().iter().find(|r| r["Tag"] == tag);
        row.unwrap()["Digest"].as_str().unwrap().to_owned()
    };
    let (oci_digest, docker_digest) = (digest_of("oci"), digest_of("docker"));
    assert_ne!(oci_digest, docker_digest);

    // The shared ID names neither, and says how to name each.
    let out = d.run(&["rmi", "-f", &img.id()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for each in [&oci_digest, &docker_digest] {
        assert!(err.contains(&format!("app@{each}")), "{err}");
    }
    let removed = d.ok(&["rmi", &format!("app@{oci_digest}")]);
    assert_eq!(
        removed,
        format!("Untagged: app:oci\nDeleted: {}\n", img.id())
    );
    // Another repository's NAME@DIGEST is no such image; the ID now names one.
    let out = d.run(&["inspect", &format!("other@{docker_digest}")]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(d.ok(&["rmi", &img.id()]).contains("Untagged: app:docker"));
}
