//! `hyperctl pull` and `push` against a real registry (distribution 2.8 on loopback), with
//! skopeo as the peer that checks digests both ways.

use std::path::Path;

use integration::TestDaemon;
use integration::registry::{TestRegistry, write_certs_d, write_docker_config};
use integration::tools::*;
use integration::wait::until;

fn r(reg: &TestRegistry, repo_tag: &str) -> String {
    format!("{}/{repo_tag}", reg.host())
}

fn image(dir: &Path) -> (String, String) {
    two_layer_image(dir)
}

#[test]
fn pull_push_round_trip_with_skopeo_keeps_every_digest() {
    let reg = TestRegistry::plain();
    let d = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("docker");
    let (source, manifest) = image(dir.path());
    reg.skopeo_copy_to(&source, "src/app:v1");
    let name = r(&reg, "src/app:v1");

    let out = d.ok_with_config(&creds, &["pull", &name]);
    assert!(out.contains(&format!("Digest: {manifest}")), "{out}");
    let listed = d.ok_with_config(&creds, &["images", "--format", "json"]);
    assert!(
        listed.contains(&format!("{}/src/app", reg.host())),
        "{listed}"
    );

    // A second pull of the same image, and one by digest, download no blob.
    let mark = reg.mark();
    d.ok_with_config(&creds, &["pull", &name]);
    let by_digest = format!("{}/src/app@{manifest}", reg.host());
    let out = d.ok_with_config(&creds, &["pull", "-q", &by_digest]);
    assert_eq!(out.trim(), by_digest);
    assert_eq!(
        reg.count_since(mark, "GET", "/blobs/"),
        0,
        "{:#?}",
        reg.requests()
    );

    // Push under another repository: every blob is mounted, none uploaded; skopeo sees the
    // same manifest digest.
    let target = r(&reg, "dst/app:v2");
    d.ok_with_config(&creds, &["tag", &name, &target]);
    let mark = reg.mark();
    let out = d.ok_with_config(&creds, &["push", &target]);
    assert!(out.contains(&format!("v2: digest: {manifest}")), "{out}");
    let uploads = reg.count_since(mark, "PATCH", "/blobs/uploads/")
        + reg.count_since(mark, "PUT", "/blobs/uploads/");
    assert_eq!(uploads, 0, "{:#?}", reg.requests_since(mark));
    let m: serde_json::Value = serde_json::from_str(&reg.skopeo_inspect_raw("src/app:v1")).unwrap();
    let blobs = 1 + m["layers"].as_array().unwrap().len();
    assert_eq!(
        reg.count_since(mark, "POST", "mount="),
        blobs,
        "{:#?}",
        reg.requests_since(mark)
    );
    assert_eq!(reg.skopeo_digest("dst/app:v2"), manifest);

    // Pushed again: every blob is already there.
    let mark = reg.mark();
    d.ok_with_config(&creds, &["push", &target]);
    assert_eq!(reg.count_since(mark, "POST", "/blobs/uploads/"), 0);

    // A fresh store pulls what hyperd pushed and gets the same image ID.
    let id = d.ok_with_config(&creds, &["images", "-q"]);
    d.ok_with_config(&creds, &["rmi", &name, &target]);
    d.ok_with_config(&creds, &["pull", &target]);
    assert_eq!(d.ok_with_config(&creds, &["images", "-q"]), id);
}

#[test]
fn a_corrupted_blob_is_refused_and_nothing_is_stored() {
    let reg = TestRegistry::plain();
    let d = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = image(dir.path());
    reg.skopeo_copy_to(&source, "bad/app:v1");
    let raw = reg.skopeo_inspect_raw("bad/app:v1");
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    let path = reg.blob_data_path(layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let out = d.run_with_config(dir.path(), &["pull", &r(&reg, "bad/app:v1")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(layer) && err.contains("not what its digest says"),
        "{err}"
    );
    assert_eq!(d.ok_with_config(dir.path(), &["images", "-q"]).trim(), "");
    // The pull's lease is gone, so what it wrote was collected.
    until(5, "collection of the failed pull's blobs", || {
        d.blob_files().is_empty()
    });
}

#[test]
fn credentials_come_from_docker_config_and_login_writes_them() {
    let reg = TestRegistry::with_auth("alice", "s3cret");
    let d = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let (source, manifest) = image(dir.path());
    reg.skopeo_copy_to(&source, "priv/app:v1");
    let name = r(&reg, "priv/app:v1");

    let none = dir.path().join("none");
    let out = d.run_with_config(&none, &["pull", &name]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let with = dir.path().join("with");
    write_docker_config(&with, &reg.host(), "alice", "s3cret");
    assert!(
        d.ok_with_config(&with, &["pull", &name])
            .contains(&manifest)
    );

    // login checks the credential with the registry before writing it.
    let fresh = dir.path().join("fresh");
    let bad = d.run_with_config(
        &fresh,
        &["login", &reg.host(), "-u", "alice", "-p", "wrong"],
    );
    assert_eq!(bad.status.code(), Some(5));
    assert!(!fresh.join("config.json").exists());
    d.ok_with_config(
        &fresh,
        &["login", &reg.host(), "-u", "alice", "-p", "s3cret"],
    );
    let config = std::fs::read_to_string(fresh.join("config.json")).unwrap();
    assert!(config.contains(&reg.host()), "{config}");
    d.ok_with_config(&fresh, &["rmi", &name]);
    d.ok_with_config(&fresh, &["pull", &name]);
    d.ok_with_config(&fresh, &["logout", &reg.host()]);
    let out = d.run_with_config(&fresh, &["pull", &name]);
    assert_eq!(out.status.code(), Some(5));
}

#[test]
fn tls_registries_need_their_ca_in_the_certs_dir() {
    let reg = TestRegistry::with_tls();
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs.d");
    let (source, manifest) = image(dir.path());
    reg.skopeo_copy_to(&source, "tls/app:v1");
    let name = r(&reg, "tls/app:v1");

    let without = TestDaemon::start_with_args(&["--certs-dir", p(&certs)]);
    let out = without.run_with_config(dir.path(), &["pull", &name]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    write_certs_d(&certs, &reg.host(), reg.ca_pem());
    let with = TestDaemon::start_with_args(&["--certs-dir", p(&certs)]);
    assert!(
        with.ok_with_config(dir.path(), &["pull", &name])
            .contains(&manifest)
    );
}

#[test]
fn containerd_pulls_what_hyperd_pushes_and_the_other_way_round() {
    let reg = TestRegistry::plain();
    let d = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("docker");
    let (source, manifest) = image(dir.path());
    let archive = dir.path().join("app.tar");
    skopeo_copy(&source, &format!("oci-archive:{}:app:v1", p(&archive)));
    d.ok_with_config(&creds, &["load", "-i", p(&archive)]);
    let pushed = r(&reg, "hy/app:v1");
    d.ok_with_config(&creds, &["tag", "app:v1", &pushed]);
    d.ok_with_config(&creds, &["push", &pushed]);

    let containerd = Containerd::start(&dir.path().join("containerd"));
    containerd.ctr(&["content", "fetch", "--plain-http", &pushed]);
    assert_eq!(containerd.images(), [(pushed.clone(), manifest.clone())]);

    // containerd pushes it under another name; hyperd pulls it with the same digest and ID.
    let from_ctr = r(&reg, "ctr/app:v2");
    containerd.ctr(&["images", "tag", &pushed, &from_ctr]);
    containerd.ctr(&["images", "push", "--plain-http", &from_ctr]);
    let id = d.ok_with_config(&creds, &["images", "-q"]);
    d.ok_with_config(&creds, &["rmi", "app:v1", &pushed]);
    let out = d.ok_with_config(&creds, &["pull", &from_ctr]);
    assert!(out.contains(&format!("Digest: {manifest}")), "{out}");
    assert_eq!(d.ok_with_config(&creds, &["images", "-q"]), id);
}
