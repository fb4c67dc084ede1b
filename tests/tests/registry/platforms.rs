//! A two-platform index through a real registry both ways: `hyperctl pull` of one platform, of
//! another, of the whole index (`-a`), a push of that index, and a platform the index lacks;
//! skopeo puts the index in and checks what hyperd pushed. A lone manifest of the other platform
//! is refused for an explicit `--platform` of this one.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration::TestDaemon;
use integration::fixtures::*;
use integration::registry::TestRegistry;
use integration::tools::*;
use serde_json::{Value, json};

/// The index, in an OCI layout as `v1` and in an OCI archive named `local/multi:v1`.
struct Multi {
    /// The image for this host's platform and the other one.
    host: Image,
    other: Image,
    /// `--platform` for `other`.
    other_platform: &'static str,
    index: Vec<u8>,
    layout: PathBuf,
    archive: PathBuf,
}

async fn multi(dir: &Path) -> Multi {
    let amd = Image::new(&["p-amd-1", "p-amd-2"], "amd64", Comp::Gzip).await;
    let arm = Image::new(&["p-arm-1", "p-arm-2"], "arm64", Comp::Gzip).await;
    let child = |img: &Image, arch: &str| {
        let mut d = img.descriptor(&[]);
        d["platform"] = json!({"os": "linux", "architecture": arch});
        d
    };
    let index = index_json(vec![child(&amd, "amd64"), child(&arm, "arm64")]);
    let top = json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": sha(&index), "size": index.len(),
        "annotations": {
            "org.opencontainers.image.ref.name": "v1",
            "io.containerd.image.name": "local/multi:v1",
        },
    });
    let mut entries = vec![
        Entry::file("oci-layout", LAYOUT),
        Entry::file("index.json", &index_json(vec![top])),
        Entry::blob(&index),
    ];
    entries.extend(amd.blob_entries());
    entries.extend(arm.blob_entries());
    let layout = dir.join("layout");
    for e in &entries {
        let path = layout.join(&e.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &e.data).unwrap();
    }
    let archive = dir.join("multi.tar");
    std::fs::write(&archive, tar(&entries).await).unwrap();
    // The pulls below take the host's platform; this test knows only the two it builds.
    let (host, other, other_platform) = match std::env::consts::ARCH {
        "x86_64" => (amd, arm, "linux/arm64"),
        "aarch64" => (arm, amd, "linux/amd64"),
        arch => panic!("this test needs a linux/amd64 or linux/arm64 host, not {arch}"),
    };
    Multi {
        host,
        other,
        other_platform,
        index,
        layout,
        archive,
    }
}

/// The index pushed to `multi:v1` by `skopeo copy --all`.
async fn seeded(reg: &TestRegistry, dir: &Path) -> Multi {
    let m = multi(dir).await;
    sh(Command::new("skopeo")
        .args(["copy", "-q", "--all"])
        .args(reg.skopeo_args("dest-"))
        .arg(format!("oci:{}:v1", p(&m.layout)))
        .arg(reg.docker_ref("multi:v1")));
    m
}

/// Every blob of `img`, config first.
fn blobs(img: &Image) -> Vec<String> {
    std::iter::once(sha(&img.config))
        .chain(img.layers.iter().map(|(b, _)| sha(b)))
        .collect()
}

/// Asserts the pull since `mark` fetched exactly `img`'s blobs, each once, and nothing of `not`.
fn fetched_only(reg: &TestRegistry, mark: integration::registry::Mark, img: &Image, not: &Image) {
    let requests = reg.requests_since(mark);
    let gets: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.uri.contains("/blobs/"))
        .map(|r| r.uri.as_str())
        .collect();
    assert_eq!(gets.len(), blobs(img).len(), "{gets:#?}");
    for digest in blobs(img) {
        assert!(gets.iter().any(|u| u.ends_with(&digest)), "{gets:#?}");
    }
    let others = std::iter::once(sha(&not.manifest)).chain(blobs(not));
    for digest in others {
        assert!(
            !requests.iter().any(|r| r.uri.contains(&digest)),
            "{digest} of the other platform was asked for: {requests:#?}"
        );
    }
}

#[tokio::test]
async fn one_platform_another_and_the_whole_index_pull_and_the_index_pushes_back_whole() {
    let reg = TestRegistry::plain();
    let d = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let m = seeded(&reg, dir.path()).await;
    let index_digest = reg.skopeo_digest("multi:v1");
    assert_eq!(
        index_digest,
        sha(&m.index),
        "skopeo keeps the index as built"
    );
    let name = format!("{}/multi:v1", reg.host());

    // By default the host's manifest is the image, and only its blobs move.
    let mark = reg.mark();
    let out = d.ok(&["pull", &name]);
    assert!(
        out.contains(&format!("Digest: {}", sha(&m.host.manifest))),
        "{out}"
    );
    let image = d.inspect(&name);
    assert_eq!(image["Digest"], sha(&m.host.manifest));
    assert_eq!(image["Id"], m.host.id());
    fetched_only(&reg, mark, &m.host, &m.other);

    let mark = reg.mark();
    d.ok(&["pull", "--platform", m.other_platform, &name]);
    let image = d.inspect(&name);
    assert_eq!(image["Digest"], sha(&m.other.manifest));
    assert_eq!(image["Id"], m.other.id());
    fetched_only(&reg, mark, &m.other, &m.host);

    // The whole index: every blob is stored already, so none moves.
    let mark = reg.mark();
    let out = d.ok(&["pull", "-a", &name]);
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    assert_eq!(reg.count_since(mark, "GET", "/blobs/"), 0);
    let image = d.inspect(&name);
    assert_eq!(image["Digest"], index_digest);
    assert_eq!(
        image["Manifest"],
        serde_json::from_slice::<Value>(&m.index).unwrap()
    );
    let listed: Vec<&str> = image["Manifest"]["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["digest"].as_str().unwrap())
        .collect();
    for child in [&m.host, &m.other] {
        assert!(listed.contains(&sha(&child.manifest).as_str()), "{image:#}");
    }
    let platforms = image["Platforms"].to_string();
    assert!(
        platforms.contains("linux/amd64") && platforms.contains("linux/arm64"),
        "{image:#}"
    );
    // The ID a load of the same index gives: the host manifest's config.
    let loaded = TestDaemon::start();
    loaded.ok(&["load", "-q", "-i", p(&m.archive)]);
    let loaded_image = loaded.inspect("local/multi:v1");
    assert_eq!(loaded_image["Digest"], index_digest);
    assert_eq!(image["Id"], loaded_image["Id"]);
    assert_eq!(image["Id"], m.host.id());

    // Pushed elsewhere: the same index bytes, the children first, the tag last.
    let target = format!("{}/copy/multi:v2", reg.host());
    d.ok(&["tag", &name, &target]);
    let mark = reg.mark();
    let out = d.ok(&["push", &target]);
    assert!(
        out.contains(&format!("v2: digest: {index_digest}")),
        "{out}"
    );
    let manifest_puts: Vec<String> = reg
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.method == "PUT" && r.uri.contains("/manifests/"))
        .map(|r| r.uri)
        .collect();
    assert_eq!(manifest_puts.len(), 3, "{manifest_puts:#?}");
    assert!(
        manifest_puts[2].ends_with("/manifests/v2"),
        "{manifest_puts:#?}"
    );
    assert_eq!(
        reg.skopeo_inspect_raw("copy/multi:v2").as_bytes(),
        m.index.as_slice()
    );
    for child in [&m.host, &m.other] {
        let by_digest = format!("copy/multi@{}", sha(&child.manifest));
        assert_eq!(
            reg.skopeo_inspect_raw(&by_digest).as_bytes(),
            child.manifest.as_slice()
        );
    }

    // skopeo takes the pushed index whole, with the same digests.
    let copied = dir.path().join("copied");
    sh(Command::new("skopeo")
        .args(["copy", "-q", "--all"])
        .args(reg.skopeo_args("src-"))
        .arg(reg.docker_ref("copy/multi:v2"))
        .arg(format!("oci:{}:v2", p(&copied))));
    let raw = sh(&mut cmd(
        "skopeo",
        &["inspect", "--raw", &format!("oci:{}:v2", p(&copied))],
    ));
    assert_eq!(sha(raw.as_bytes()), index_digest);
    for digest in [&m.host, &m.other]
        .into_iter()
        .flat_map(|i| std::iter::once(sha(&i.manifest)).chain(blobs(i)))
    {
        let path = copied.join("blobs/sha256").join(hex_of(&digest));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(sha(&bytes), digest);
    }
}

#[tokio::test]
async fn a_platform_the_index_lacks_fails_the_pull_and_stores_nothing() {
    let reg = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let m = seeded(&reg, dir.path()).await;
    let name = format!("{}/multi:v1", reg.host());

    let d = TestDaemon::start();
    let mark = reg.mark();
    let out = d.run(&["pull", "--platform", "linux/s390x", &name]);
    let err = String::from_utf8_lossy(&out.stderr);
    // FAILED_PRECONDITION: hyperctl's code for any other failure.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has no image for linux/s390x") && err.contains("linux/amd64, linux/arm64"),
        "{err}"
    );
    assert_eq!(reg.count_since(mark, "GET", "/blobs/"), 0);
    assert_eq!(d.ok(&["images", "-q"]).trim(), "");
    let stored = d.blob_files().len();
    assert_eq!(stored, 0);

    // Into an empty store, `-a` fetches each blob of both platforms once. A failed pull then
    // leaves the name on the index.
    let mark = reg.mark();
    d.ok(&["pull", "-q", "-a", &name]);
    let mut gets: Vec<String> = reg
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.method == "GET" && r.uri.contains("/blobs/"))
        .map(|r| r.uri.rsplit('/').next().unwrap().to_owned())
        .collect();
    gets.sort();
    let mut all: Vec<String> = blobs(&m.host).into_iter().chain(blobs(&m.other)).collect();
    all.sort();
    assert_eq!(gets, all);
    let before = d.ok(&["images", "-q"]);
    let out = d.run(&["pull", "--platform", "windows/amd64", &name]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(d.ok(&["images", "-q"]), before);
    assert_eq!(d.inspect(&name)["Digest"], sha(&m.index));
}

/// docker's rule for a lone manifest: `--platform` must match what its config declares, and the
/// refusal comes before any layer is fetched; without `--platform` the image is pulled.
#[tokio::test]
async fn an_image_of_one_other_platform_is_refused_for_an_explicit_platform() {
    let reg = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let m = multi(dir.path()).await;
    let layout = dir.path().join("single");
    let top = m
        .other
        .descriptor(&[("org.opencontainers.image.ref.name", "v1")]);
    let mut entries = vec![
        Entry::file("oci-layout", LAYOUT),
        Entry::file("index.json", &index_json(vec![top])),
    ];
    entries.extend(m.other.blob_entries());
    for e in &entries {
        let path = layout.join(&e.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &e.data).unwrap();
    }
    sh(Command::new("skopeo")
        .args(["copy", "-q"])
        .args(reg.skopeo_args("dest-"))
        .arg(format!("oci:{}:v1", p(&layout)))
        .arg(reg.docker_ref("single:v1")));
    let name = format!("{}/single:v1", reg.host());
    let host_platform = match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        _ => "linux/arm64",
    };

    let d = TestDaemon::start();
    let mark = reg.mark();
    let out = d.run(&["pull", "--platform", host_platform, &name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "is an image for {} only, not {host_platform}",
            m.other_platform
        )),
        "{err}"
    );
    let layers_asked = reg
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.uri.contains("/blobs/") && !r.uri.ends_with(&sha(&m.other.config)))
        .count();
    assert_eq!(layers_asked, 0, "a layer was fetched before the refusal");
    assert_eq!(d.ok(&["images", "-q"]).trim(), "");

    d.ok(&["pull", "-q", "--platform", m.other_platform, &name]);
    assert_eq!(d.inspect(&name)["Digest"], sha(&m.other.manifest));
    d.ok(&["rmi", &name]);
    d.ok(&["pull", "-q", &name]);
    assert_eq!(d.inspect(&name)["Id"], m.other.id());
}
