//! `hyperctl pull` from registries that misbehave (issue 13, "bad registries"): each fault is
//! refused with a message naming it, leaves nothing in the store, and is retried with backoff
//! only when it is transient. No request goes to a host the registry did not redirect a blob to.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use integration::TestDaemon;
use integration::fake_registry::{FakeRegistry, Fault};
use integration::fixtures::{Image, index_json, noise_image, sha};

/// How many times hyperd tries a request that keeps failing transiently.
const ATTEMPTS: usize = 3;
/// Exit codes of hyperctl (hyperctl/src/exit.rs).
const FAILURE: i32 = 1;
const NOT_FOUND: i32 = 3;
const REGISTRY_AUTH: i32 = 5;
const REGISTRY_UNAVAILABLE: i32 = 6;

/// An image of two incompressible layers of `kib` KiB each.
fn image(label: &str, kib: usize) -> Image {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(noise_image(label, 2, kib, None))
}

/// A fake registry serving `image` as `app:v1`, and a daemon that gives up on a registry
/// silent for `timeout` seconds.
fn serve(image: &Image, timeout: &str) -> (FakeRegistry, TestDaemon) {
    let reg = FakeRegistry::start();
    reg.put_image("app", "v1", image);
    let d = TestDaemon::start_with_args(&["--registry-timeout", timeout]);
    (reg, d)
}

fn layer(image: &Image, i: usize) -> (String, String) {
    let digest = sha(&image.layers[i].0);
    let path = FakeRegistry::blob_path("app", &digest);
    (digest, path)
}

fn manifest_path() -> String {
    FakeRegistry::manifest_path("app", "v1")
}

/// `hyperctl pull <registry>/app:v1`, with no credentials.
fn pull(d: &TestDaemon, reg: &FakeRegistry) -> Output {
    pull_with(d, reg, &[])
}

/// `hyperctl pull <options> <registry>/app:v1`, with no credentials.
fn pull_with(d: &TestDaemon, reg: &FakeRegistry, options: &[&str]) -> Output {
    let none = d.path("docker-config");
    d.ctl()
        .env("DOCKER_CONFIG", &none)
        .arg("pull")
        .args(options)
        .arg(format!("{}/app:v1", reg.host()))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running hyperctl")
}

/// A pull that must fail with `code`; its error line.
fn pull_succeeds(d: &TestDaemon, reg: &FakeRegistry) {
    let out = pull(d, reg);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn pull_fails(d: &TestDaemon, reg: &FakeRegistry, code: i32) -> String {
    pull_with_fails(d, reg, &[], code)
}

fn pull_with_fails(d: &TestDaemon, reg: &FakeRegistry, options: &[&str], code: i32) -> String {
    let out = pull_with(d, reg, options);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{err}\n{:#?}",
        reg.requests()
    );
    assert_nothing_stored(d);
    err
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |r| r.count())
}

/// No image, no blob, no partial write: a pull ends its writes and drops its lease before it
/// answers, so all is gone by the time hyperctl exits.
fn assert_nothing_stored(d: &TestDaemon) {
    assert_eq!(d.ok(&["images", "-q"]).trim(), "");
    let blobs = d.root.join("blobs/sha256");
    assert_eq!(entries(&blobs), 0, "blobs left in {}", blobs.display());
    let partials = d.root.join("ingest/content");
    assert_eq!(
        entries(&partials),
        0,
        "partial writes left in {}",
        partials.display()
    );
}

#[test]
fn bytes_that_do_not_match_their_digest_are_refused_at_once() {
    let img = image("mismatch", 64);
    let (digest, path) = layer(&img, 0);
    let mut wrong = img.layers[0].0.clone();
    wrong[100] ^= 0xff;
    let (reg, d) = serve(&img, "2");
    reg.fault(&path, Fault::Body(wrong));
    let err = pull_fails(&d, &reg, FAILURE);
    assert!(
        err.contains(&digest) && err.contains("not what its digest says"),
        "{err}"
    );
    assert_eq!(reg.count("GET", &path), 1);

    // A manifest is checked against the registry's Docker-Content-Digest.
    let (reg, d) = serve(&img, "2");
    let other = img.manifest_with(|m| m["annotations"] = serde_json::json!({"a": "b"}));
    reg.fault(&manifest_path(), Fault::Body(other.clone()));
    let err = pull_fails(&d, &reg, FAILURE);
    let (sent, promised) = (sha(&other), sha(&img.manifest));
    assert!(err.contains(&sent) && err.contains(&promised), "{err}");
    assert!(err.contains("Docker-Content-Digest"), "{err}");
    assert_eq!(reg.count("GET", &manifest_path()), 1);
}

/// An index that lists an index is refused from its own listing: the nested one is never
/// fetched.
#[test]
fn an_index_inside_an_index_is_refused_before_it_is_fetched() {
    let img = image("nested", 16);
    let inner = index_json(vec![img.descriptor(&[])]);
    let (reg, d) = serve(&img, "2");
    let nested = serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": sha(&inner),
        "size": inner.len(),
    });
    reg.put_manifest("app", "v1", &index_json(vec![nested]));
    reg.put_manifest("app", &sha(&inner), &inner);
    let err = pull_with_fails(&d, &reg, &["-a"], FAILURE);
    assert!(
        err.contains(&sha(&inner)) && err.contains("an index inside an index"),
        "{err}"
    );
    let inner_path = FakeRegistry::manifest_path("app", &sha(&inner));
    assert_eq!(reg.count("GET", &inner_path), 0);
}

/// A manifest of another size than the index's descriptor says is the registry's fault,
/// whether the pull walks the whole index or picks one platform from it.
#[test]
fn a_manifest_of_another_size_than_its_descriptor_is_refused() {
    let img = image("sized", 16);
    let mut longer = img.descriptor(&[]);
    longer["size"] = serde_json::json!(img.manifest.len() + 1);
    longer["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
    for options in [&["-a"][..], &["--platform", "linux/amd64"]] {
        let (reg, d) = serve(&img, "2");
        reg.put_manifest("app", "v1", &index_json(vec![longer.clone()]));
        let err = pull_with_fails(&d, &reg, options, FAILURE);
        assert!(
            err.contains(&sha(&img.manifest)) && err.contains("bytes"),
            "{options:?}: {err}"
        );
    }
}

#[test]
fn a_truncated_blob_is_retried_then_refused() {
    let img = image("truncated", 64);
    let (reg, d) = serve(&img, "2");
    let (digest, path) = layer(&img, 0);
    reg.fault(&path, Fault::TruncateAt(10_000));

    let err = pull_fails(&d, &reg, REGISTRY_UNAVAILABLE);
    assert!(
        err.contains(&digest) && err.contains("before message length"),
        "{err}"
    );
    assert_eq!(reg.count("GET", &path), ATTEMPTS);
}

#[test]
fn a_blob_body_longer_than_its_descriptor_is_refused_at_once() {
    let img = image("oversized-blob", 64);
    let (digest, path) = layer(&img, 0);
    let mut longer = img.layers[0].0.clone();
    longer.extend_from_slice(b"and then some");
    // Without a Content-Length the excess shows only as it arrives.
    for fault in [Fault::Body(longer.clone()), Fault::Chunked(longer)] {
        let (reg, d) = serve(&img, "2");
        reg.fault(&path, fault.clone());
        let err = pull_fails(&d, &reg, FAILURE);
        assert!(
            err.contains(&digest) && err.contains("the manifest gives"),
            "{fault:?}: {err}"
        );
        assert_eq!(reg.count("GET", &path), 1, "{fault:?}");
    }
}

#[test]
fn a_manifest_over_the_json_limit_is_refused_with_or_without_a_length() {
    let img = image("big-manifest", 64);
    let huge =
        img.manifest_with(|m| m["annotations"] = serde_json::json!({"pad": "x".repeat(5 << 20)}));
    for fault in [Fault::Body(huge.clone()), Fault::Chunked(huge)] {
        let (reg, d) = serve(&img, "2");
        reg.fault(&manifest_path(), fault.clone());
        let err = pull_fails(&d, &reg, FAILURE);
        assert!(
            err.contains("manifest") && err.contains("limit"),
            "{fault:?}: {err}"
        );
        assert_eq!(reg.count("GET", &manifest_path()), 1, "{fault:?}");
    }
}

#[test]
fn a_manifest_is_never_read_through_a_redirect() {
    let img = image("manifest-redirect", 64);
    let (reg, d) = serve(&img, "2");
    let other = FakeRegistry::start();
    other.put_image("app", "v1", &img);
    reg.fault(
        &manifest_path(),
        Fault::Redirect(format!("{}{}", other.url(), manifest_path())),
    );

    let err = pull_fails(&d, &reg, FAILURE);
    assert!(err.contains("redirect"), "{err}");
    assert_eq!(reg.count("GET", &manifest_path()), 1);
    assert_eq!(other.requests(), vec![]);
}

#[test]
fn a_blob_redirect_loop_is_refused_without_retrying() {
    let img = image("loop", 64);
    let (reg, d) = serve(&img, "2");
    let (digest, path) = layer(&img, 0);
    reg.fault(&path, Fault::Redirect(format!("{}{path}", reg.url())));

    let err = pull_fails(&d, &reg, REGISTRY_UNAVAILABLE);
    assert!(err.contains(&digest) && err.contains("redirect"), "{err}");
    // One attempt: the request and the redirects reqwest follows (10) before it gives up.
    assert_eq!(reg.count("GET", &path), 11, "{:#?}", reg.requests());
}

#[test]
fn a_blob_redirect_to_another_host_is_followed() {
    let img = image("cdn", 64);
    let (reg, d) = serve(&img, "2");
    let cdn = FakeRegistry::start();
    let (_, path) = layer(&img, 0);
    cdn.put_blob("app", &img.layers[0].0);
    reg.fault(&path, Fault::Redirect(format!("{}{path}", cdn.url())));

    pull_succeeds(&d, &reg);
    assert_eq!(reg.count("GET", &path), 1);
    assert_eq!(cdn.requests(), vec![("GET".to_owned(), path.clone())]);
    assert_eq!(d.ok(&["images", "-q"]).trim(), &img.id()[7..19]);
}

#[test]
fn a_stalled_blob_is_cut_off_and_retried() {
    let img = image("stall", 64);
    let (reg, d) = serve(&img, "1");
    let (digest, path) = layer(&img, 0);
    reg.fault(&path, Fault::StallAfter(10_000));

    let started = Instant::now();
    let err = pull_fails(&d, &reg, REGISTRY_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the stall was not cut"
    );
    assert!(err.contains(&digest) && err.contains("stalled"), "{err}");
    assert_eq!(reg.count("GET", &path), ATTEMPTS);
}

#[test]
fn a_stalled_manifest_is_cut_off_and_retried() {
    let img = image("stall-manifest", 64);
    let (reg, d) = serve(&img, "1");
    reg.fault(&manifest_path(), Fault::StallAfter(10));

    let err = pull_fails(&d, &reg, REGISTRY_UNAVAILABLE);
    assert!(err.contains("manifest") && err.contains("stalled"), "{err}");
    assert_eq!(reg.count("GET", &manifest_path()), ATTEMPTS);
}

#[test]
fn unavailable_answers_are_retried_with_backoff() {
    let img = image("flaky", 64);
    let (reg, d) = serve(&img, "2");
    let (digest, path) = layer(&img, 0);
    reg.fault(&path, Fault::Unavailable(ATTEMPTS - 1));

    pull_succeeds(&d, &reg);
    assert_eq!(reg.count("GET", &path), ATTEMPTS);

    let (reg, d) = serve(&img, "2");
    reg.fault(&path, Fault::Unavailable(usize::MAX));
    let started = Instant::now();
    let err = pull_fails(&d, &reg, REGISTRY_UNAVAILABLE);
    assert!(
        err.contains(&digest) && err.contains("503 try again later"),
        "{err}"
    );
    assert_eq!(reg.count("GET", &path), ATTEMPTS);
    // The pauses between attempts: 0.5 s, then 1 s.
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[test]
fn refusals_are_not_retried() {
    let img = image("refused", 64);
    let (digest, blob) = layer(&img, 0);
    for (path, status, code) in [
        (blob.clone(), 404, NOT_FOUND),
        (blob.clone(), 403, REGISTRY_AUTH),
        (manifest_path(), 404, NOT_FOUND),
        (manifest_path(), 401, REGISTRY_AUTH),
    ] {
        let (reg, d) = serve(&img, "2");
        reg.fault(&path, Fault::Status(status));
        let err = pull_fails(&d, &reg, code);
        let named = if path == blob {
            digest.as_str()
        } else {
            "manifest"
        };
        assert!(err.contains(named), "{status} for {path}: {err}");
        assert_eq!(reg.count("GET", &path), 1, "{status} for {path}");
    }
}

/// oci-client tries a descriptor's `urls` when the registry fails to serve the blob; hyperd
/// never hands them over, so even then nothing goes elsewhere.
#[test]
fn urls_in_a_layer_descriptor_are_never_fetched() {
    let img = image("urls", 64);
    let elsewhere = FakeRegistry::start();
    let (digest, path) = layer(&img, 0);
    elsewhere.put_blob("app", &img.layers[0].0);
    let manifest = img.manifest_with(|m| {
        m["layers"][0]["urls"] = serde_json::json!([format!("{}{path}", elsewhere.url())]);
    });
    let (reg, d) = serve(&img, "2");
    reg.put_manifest("app", "v1", &manifest);
    pull_succeeds(&d, &reg);
    assert_eq!(reg.count("GET", &path), 1);

    let (reg, d) = serve(&img, "2");
    reg.put_manifest("app", "v1", &manifest);
    reg.fault(&path, Fault::Status(404));
    let err = pull_fails(&d, &reg, NOT_FOUND);
    assert!(err.contains(&digest), "{err}");
    assert_eq!(elsewhere.requests(), vec![]);
}

/// A blob that fails for good ends the pull while another is half written: that write goes too,
/// at once, not when writes expire an hour later.
#[test]
fn a_failed_pull_leaves_no_partial_write_of_the_blobs_in_flight() {
    let img = image("in-flight", 3 << 10);
    // The stalled blob has written its first 1 MiB piece long before this times out.
    let (reg, d) = serve(&img, "10");
    let (_, stalled) = layer(&img, 0);
    let (failing, path) = layer(&img, 1);
    reg.fault(&stalled, Fault::StallAfter(2 << 20));
    // Truncation fails for good after the retries' pauses (1.5 s), within the stall.
    reg.fault(&path, Fault::TruncateAt(1000));

    let err = pull_fails(&d, &reg, REGISTRY_UNAVAILABLE);
    assert!(err.contains(&failing), "{err}");
    assert_eq!(reg.count("GET", &stalled), 1);
}
