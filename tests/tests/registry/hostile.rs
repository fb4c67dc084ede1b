//! A registry out to hurt hyperd or its users (issue 23): documents listed thousands of times,
//! endless token and error bodies, a token realm over plain HTTP, terminal escapes in error
//! messages. Each is refused or made harmless, and hyperd's peak memory (VmHWM) stays within
//! [`MAX_RSS_MIB`].

use std::process::Output;

use integration::TestDaemon;
use integration::fake_registry::{FakeRegistry, Fault};
use integration::fixtures::{Image, hex_of, index_json, noise_image, sha};
use integration::registry::{TestRegistry, write_docker_config};

/// What a hostile registry may take hyperd to, at most.
const MAX_RSS_MIB: u64 = 128;
const GIB: u64 = 1 << 30;
/// Largest manifest hyperd reads (store's `MAX_JSON`), less room for the rest of it.
const BIG_MANIFEST: usize = (4 << 20) - 4096;

fn image(label: &str) -> Image {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(noise_image(label, 1, 4, None))
}

/// `hyperctl pull <options> <registry>/app:v1` with the credentials in `docker_config`.
fn pull(d: &TestDaemon, reg: &str, docker_config: &std::path::Path, options: &[&str]) -> Output {
    d.ctl()
        .env("DOCKER_CONFIG", docker_config)
        .arg("pull")
        .args(options)
        .arg(format!("{reg}/app:v1"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running hyperctl")
}

fn anonymous(d: &TestDaemon, reg: &FakeRegistry, options: &[&str]) -> Output {
    pull(d, &reg.host(), &d.path("no-docker-config"), options)
}

fn failed(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the pull succeeded: {err}");
    err
}

fn assert_bounded(d: &TestDaemon, what: &str) {
    let peak = d.peak_rss_mib();
    eprintln!("{what}: hyperd peak RSS {peak} MiB");
    assert!(peak <= MAX_RSS_MIB, "{what}: hyperd peaked at {peak} MiB");
}

#[test]
fn an_index_listing_one_big_manifest_thousands_of_times_is_read_once() {
    let img = image("repeated");
    // One manifest of almost 4 MiB (an annotation pads it), listed as often as a 4 MiB index
    // holds it.
    let pad = |m: &mut serde_json::Value| {
        m["annotations"] = serde_json::json!({"pad": "p".repeat(BIG_MANIFEST - 600)});
    };
    let manifest = img.manifest_with(pad);
    assert!(manifest.len() <= BIG_MANIFEST, "{}", manifest.len());
    let entry = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(&manifest),
        "size": manifest.len(),
        "platform": {"os": "linux", "architecture": "amd64"},
    });
    let index = index_json(vec![entry; 20_000]);
    assert!(index.len() < 4 << 20, "{}", index.len());
    let reg = FakeRegistry::start();
    reg.put_image("app", "v1", &img);
    reg.put_manifest("app", &sha(&manifest), &manifest);
    reg.put_manifest("app", "v1", &index);
    let d = TestDaemon::start();
    d.reset_peak_rss();
    let out = anonymous(&d, &reg, &["--all-platforms"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let path = FakeRegistry::manifest_path("app", &sha(&manifest));
    assert_eq!(reg.count("GET", &path), 1);
    // The pull ends in CreateImage, which walks the stored index and its repeats again.
    let blobs = d.blob_files();
    for stored in [&index, &manifest] {
        assert!(blobs.contains(hex_of(&sha(stored))), "{blobs:?}");
    }
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 1);
    assert_bounded(&d, "an index listing one 4 MiB manifest 20,000 times");
}

/// A registry whose `/v2/` asks for a token from its own `/token`.
fn token_registry() -> (FakeRegistry, TestDaemon) {
    let reg = FakeRegistry::start();
    reg.put_image("app", "v1", &image("token"));
    let realm = format!("{}/token", reg.url());
    reg.challenge(&format!(r#"Bearer realm="{realm}",service="fake""#));
    (reg, TestDaemon::start())
}

#[test]
fn an_endless_token_answer_is_refused_and_costs_no_memory() {
    for announced in [false, true] {
        let (reg, d) = token_registry();
        let huge = Fault::Huge {
            status: 200,
            bytes: GIB,
            announced,
        };
        reg.fault("/token", huge);
        d.reset_peak_rss();
        let err = failed(&anonymous(&d, &reg, &[]));
        assert!(
            err.contains("token answer") && err.contains("1048576-byte limit"),
            "{err}"
        );
        assert_bounded(
            &d,
            &format!("a 1 GiB token answer (announced: {announced})"),
        );
    }
    // A sane token is taken, and carried to the registry.
    let (reg, d) = token_registry();
    reg.put_raw("/token", br#"{"token":"t0k3n"}"#, "application/json");
    let out = anonymous(&d, &reg, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = FakeRegistry::manifest_path("app", "v1");
    let sent = reg.authorized();
    assert!(
        sent.contains(&(manifest, "Bearer t0k3n".to_owned())),
        "{sent:?}"
    );
}

#[test]
fn endless_error_bodies_are_cut_and_cost_no_memory() {
    let img = image("endless-404");
    let blob = FakeRegistry::blob_path("app", &sha(&img.layers[0].0));
    for (path, announced) in [
        (blob.clone(), false),
        (blob, true),
        (FakeRegistry::manifest_path("app", "v1"), false),
    ] {
        let reg = FakeRegistry::start();
        reg.put_image("app", "v1", &img);
        let huge = Fault::Huge {
            status: 404,
            bytes: GIB,
            announced,
        };
        reg.fault(&path, huge);
        let d = TestDaemon::start();
        d.reset_peak_rss();
        let err = failed(&anonymous(&d, &reg, &[]));
        assert!(
            err.contains("404") && err.len() < 8192,
            "{}",
            &err[..err.len().min(300)]
        );
        assert_bounded(
            &d,
            &format!("a 1 GiB 404 body for {path} (announced: {announced})"),
        );
    }
}

#[test]
fn escape_sequences_in_an_error_never_reach_the_terminal_raw() {
    let hostile = "denied\x1b]0;pwned\x07\x1b[2J\r\nError: all is well\u{9b}31m";
    let envelope = serde_json::json!({"errors": [{"code": "DENIED", "message": hostile}]});
    for body in [
        envelope.to_string().into_bytes(),
        hostile.as_bytes().to_vec(),
    ] {
        let reg = FakeRegistry::start();
        reg.put_image("app", "v1", &image("escapes"));
        let path = FakeRegistry::manifest_path("app", "v1");
        reg.fault(&path, Fault::Refuse(403, body));
        let d = TestDaemon::start();
        let err = failed(&anonymous(&d, &reg, &[]));
        assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
        assert!(
            err.contains(r"denied\u{1b}]0;pwned\u{7}\u{1b}[2J\r\nError"),
            "{err:?}"
        );
    }
}

#[test]
fn a_credential_never_goes_to_a_plain_http_realm_off_the_machine() {
    // The realm's name never resolves: a request there would fail otherwise than refused.
    let far = "http://realm.hyperd-test.invalid/token";
    let reg = TestRegistry::with_tls_and_realm(far);
    let d = TestDaemon::start_with_args(&["--certs-dir", reg.certs_d().to_str().unwrap()]);
    let config = write_docker_config(&d.path("docker"), &reg.host(), "alice", "s3cret");
    let config_dir = config.parent().unwrap();
    let err = failed(&pull(&d, &reg.host(), config_dir, &[]));
    assert!(err.contains(far) && err.contains("plain HTTP"), "{err}");
    // A loopback realm for a loopback registry (nothing leaves the machine) is asked, with the
    // credential: what the refusal above keeps from a realm elsewhere.
    let realm = FakeRegistry::start();
    let near = format!("{}/token", realm.url());
    let reg = TestRegistry::with_tls_and_realm(&near);
    let d = TestDaemon::start_with_args(&["--certs-dir", reg.certs_d().to_str().unwrap()]);
    let config = write_docker_config(&d.path("docker"), &reg.host(), "alice", "s3cret");
    failed(&pull(&d, &reg.host(), config.parent().unwrap(), &[]));
    let sent = realm.authorized();
    assert!(
        sent.iter()
            .any(|(p, a)| p.starts_with("/token") && a.starts_with("Basic ")),
        "{sent:?}"
    );
}
