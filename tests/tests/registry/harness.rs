//! The registry harness against a real peer: skopeo pushes to and pulls from each variant of
//! `TestRegistry`, and the harness sees those requests, refuses what the registry refuses and
//! exposes the stored blobs.

use std::path::PathBuf;

use integration::registry::{TestRegistry, write_docker_config};
use integration::tools::*;

/// A two-layer umoci layout in `dir`: its `oci:` reference, manifest digest, and the digests of
/// its config and layers.
fn image(dir: &tempfile::TempDir) -> (String, String, Vec<String>) {
    let layout = umoci_image(
        dir.path(),
        "v1",
        &[
            &[("etc/hello", "hello\n")],
            &[("usr/bin/tool", "#!/bin/sh\necho tool\n")],
        ],
    );
    let source = format!("oci:{}:v1", p(&layout));
    let raw = sh(&mut cmd("skopeo", &["inspect", "--raw", &source]));
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_owned()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_owned());
    }
    let (manifest, _) = skopeo_digests(&source);
    (source, manifest, blobs)
}

fn oci_dest(dir: &tempfile::TempDir, name: &str) -> (PathBuf, String) {
    let path = dir.path().join(name);
    let r = format!("oci:{}:v1", p(&path));
    (path, r)
}

#[test]
fn plain_registry_round_trips_an_image_and_logs_each_request() {
    let reg = TestRegistry::plain();
    assert!(
        reg.requests().is_empty(),
        "the readiness probe is not a test's request: {:?}",
        reg.requests()
    );
    let dir = tempfile::tempdir().unwrap();
    let (source, manifest, blobs) = image(&dir);

    reg.skopeo_copy_to(&source, "hyperd/test:v1");
    let puts = reg.requests();
    assert!(
        puts.iter().any(|r| r.method == "PUT"
            && r.uri == "/v2/hyperd/test/manifests/v1"
            && r.status == 201),
        "{puts:#?}"
    );
    assert_eq!(reg.skopeo_digest("hyperd/test:v1"), manifest);
    for b in &blobs {
        assert!(reg.blob_data_path(b).is_file(), "{b} stored");
    }

    let mark = reg.mark();
    let (_, back) = oci_dest(&dir, "back");
    reg.skopeo_copy_from("hyperd/test:v1", &back);
    assert_eq!(skopeo_digests(&back).0, manifest);
    // One GET per blob, each answered in full; nothing from before the mark.
    let gets: Vec<_> = reg
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.method == "GET" && r.uri.contains("/blobs/"))
        .collect();
    assert_eq!(gets.len(), blobs.len(), "{gets:#?}");
    assert_eq!(
        reg.count_since(mark, "GET", "/blobs/"),
        reg.count("GET", "/blobs/")
    );
    for b in &blobs {
        assert!(
            gets.iter()
                .any(|r| r.uri == format!("/v2/hyperd/test/blobs/{b}") && r.status == 200),
            "GET of {b}: {gets:#?}"
        );
    }
    assert_eq!(reg.count_since(mark, "PUT", "/"), 0);
    assert!(reg.log().contains("msg=\"response completed\""));
}

#[test]
fn auth_registry_refuses_anonymous_clients_and_accepts_credentials() {
    let reg = TestRegistry::with_auth("alice", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let (source, manifest, _) = image(&dir);
    reg.skopeo_copy_to(&source, "private/img:v1");
    let target = reg.docker_ref("private/img:v1");

    let mark = reg.mark();
    let anonymous = cmd(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &target],
    )
    .output()
    .unwrap();
    assert!(!anonymous.status.success());
    assert!(
        stderr(&anonymous).contains("unauthorized"),
        "{}",
        stderr(&anonymous)
    );
    let wrong = cmd(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds=alice:wrong",
            &target,
        ],
    )
    .output()
    .unwrap();
    assert!(!wrong.status.success());
    let refused = reg.requests_since(mark);
    assert!(!refused.is_empty());
    assert!(
        refused.iter().all(|r| r.status == 401),
        "nothing served without valid credentials: {refused:#?}"
    );

    assert_eq!(reg.skopeo_digest("private/img:v1"), manifest);
    // The docker config.json the harness writes is one a real client reads.
    let auth_dir = dir.path().join("docker");
    let authfile = write_docker_config(&auth_dir, &reg.host(), "alice", "s3cret");
    let raw = sh(&mut cmd(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--authfile",
            p(&authfile),
            &target,
        ],
    ));
    assert_eq!(raw, reg.skopeo_inspect_raw("private/img:v1"));
}

#[test]
fn tls_registry_is_trusted_only_through_its_ca() {
    let reg = TestRegistry::with_tls();
    assert!(reg.base_url().starts_with("https://127.0.0.1:"));
    assert!(reg.ca_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let ca_crt = reg.certs_d().join(reg.host()).join("ca.crt");
    assert_eq!(std::fs::read_to_string(ca_crt).unwrap(), reg.ca_pem());

    let dir = tempfile::tempdir().unwrap();
    let (source, manifest, _) = image(&dir);
    reg.skopeo_copy_to(&source, "secure/img:v1");
    assert_eq!(reg.skopeo_digest("secure/img:v1"), manifest);

    let untrusted = cmd(
        "skopeo",
        &["inspect", "--raw", &reg.docker_ref("secure/img:v1")],
    )
    .output()
    .unwrap();
    assert!(!untrusted.status.success());
    assert!(
        stderr(&untrusted).contains("certificate signed by unknown authority"),
        "{}",
        stderr(&untrusted)
    );
    assert!(reg.log().contains("TLS handshake error"), "{}", reg.log());

    // The certificate also names localhost.
    let cert_dir = format!("--cert-dir={}", p(&reg.cert_dir()));
    let by_name = format!("docker://localhost:{}/secure/img:v1", reg.port());
    let raw = sh(&mut cmd(
        "skopeo",
        &["inspect", "--raw", &cert_dir, &by_name],
    ));
    assert_eq!(raw, reg.skopeo_inspect_raw("secure/img:v1"));

    let (_, back) = oci_dest(&dir, "back");
    reg.skopeo_copy_from("secure/img:v1", &back);
    assert_eq!(skopeo_digests(&back).0, manifest);
}

#[test]
fn a_corrupted_stored_blob_is_served_and_fails_the_client() {
    let reg = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let (source, _, blobs) = image(&dir);
    reg.skopeo_copy_to(&source, "broken/img:v1");

    // Same length, different bytes: only the digest can tell.
    let layer = &blobs[1];
    let path = reg.blob_data_path(layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let mark = reg.mark();
    let (_, dest) = oci_dest(&dir, "dest");
    let out = reg.skopeo_try_copy_from("broken/img:v1", &dest);
    assert!(!out.status.success(), "copy of a corrupt blob succeeded");
    assert!(
        stderr(&out).contains(&format!("Digest did not match, expected {layer}")),
        "the error names the blob: {}",
        stderr(&out)
    );
    // The registry does not check what it reads back: it answered 200.
    assert!(
        reg.requests_since(mark)
            .iter()
            .any(|r| r.method == "GET" && r.uri.ends_with(layer.as_str()) && r.status == 200),
        "{:#?}",
        reg.requests_since(mark)
    );
}
