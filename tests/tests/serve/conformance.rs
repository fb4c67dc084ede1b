//! hyperd's registry endpoint against the distribution spec's pull and content-discovery
//! categories: status codes, headers and error bodies for manifests, blobs (HEAD, Range), tags,
//! the catalog and referrers; unknown names and digests, malformed requests, a blob asked for
//! under a repository that does not use it, and what the endpoint refuses to start with.

use integration::artifacts::*;
use integration::fixtures::*;
use integration::serve::{Reply, get, registry_addr, request};
use integration::tools::p;
use integration::{TestDaemon, bin};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// `app:1` (tagged also `2` and `10`) with a signature and an SBOM, and
/// `made.up.example/other:1`, served on loopback.
pub(super) struct Served {
    pub(super) d: TestDaemon,
    pub(super) base: String,
    pub(super) app: Image,
    pub(super) other: Image,
    pub(super) sig: Artifact,
    pub(super) sbom: Artifact,
}

pub(super) async fn served() -> Served {
    let d = TestDaemon::start_with_args(&["--registry-listen", "127.0.0.1:0"]);
    let app = Image::new(&["serve app a", "serve app b"], "amd64", Comp::Gzip).await;
    let other = Image::new(&["serve other"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, MANIFEST, "serve");
    let sbom = spdx_sbom(&app.manifest, MANIFEST);
    let entries = layout(
        &[
            (&app, &[(REF_NAME, "app:1")]),
            (&other, &[(REF_NAME, "made.up.example/other:1")]),
        ],
        &[&sig, &sbom],
    );
    let archive = d.write_file("served.tar", &tar(&entries).await);
    d.ok(&["load", "-i", p(&archive)]);
    d.ok(&["tag", "app:1", "app:2"]);
    d.ok(&["tag", "app:1", "app:10"]);
    let base = format!("http://{}", registry_addr(&d));
    Served {
        d,
        base,
        app,
        other,
        sig,
        sbom,
    }
}

impl Served {
    fn get(&self, path: &str) -> Reply {
        get(&format!("{}{path}", self.base))
    }

    fn ask(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(method, &format!("{}{path}", self.base), headers)
    }
}

fn refused(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.code(), code, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn base_and_manifests_by_tag_and_digest_with_their_headers() {
    let s = served().await;
    let base = s.get("/v2/");
    assert_eq!((base.status, base.body.as_slice()), (200, &b"{}"[..]));
    assert_eq!(
        base.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    let digest = sha(&s.app.manifest);
    let length = s.app.manifest.len().to_string();
    for path in [
        "/v2/app/manifests/1".to_owned(),
        "/v2/library/app/manifests/10".to_owned(),
        "/v2/docker.io/library/app/manifests/2".to_owned(),
        "/v2/library/app/manifests/1?ns=docker.io".to_owned(),
        format!("/v2/app/manifests/{digest}"),
    ] {
        let r = s.get(&path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.body, s.app.manifest, "{path}");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(r.header("content-length"), Some(length.as_str()));
        let head = s.ask("HEAD", &path, &[]);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(head.header("content-length"), Some(length.as_str()));
    }
    // Mirror mode: containerd's ns, podman's path prefix.
    let other = sha(&s.other.manifest);
    for path in [
        "/v2/other/manifests/1?ns=made.up.example",
        "/v2/made.up.example/other/manifests/1",
    ] {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("docker-content-digest"), Some(other.as_str()));
    }
}

#[tokio::test]
async fn manifests_refused_with_the_spec_codes() {
    let s = served().await;
    let accept = |types: &str| s.ask("GET", "/v2/app/manifests/1", &[("Accept", types)]);
    assert_eq!(
        accept(&format!("{DOCKER_MANIFEST}, {OCI_MANIFEST}")).status,
        200
    );
    assert_eq!(accept("*/*").status, 200);
    refused(&accept(DOCKER_MANIFEST), 404, "MANIFEST_UNKNOWN");

    refused(&s.get("/v2/app/manifests/3"), 404, "MANIFEST_UNKNOWN");
    refused(&s.get("/v2/nothing/manifests/1"), 404, "NAME_UNKNOWN");
    refused(&s.get("/v2/other/manifests/1"), 404, "NAME_UNKNOWN");
    // Stored, but not used by this repository; a config is no manifest.
    let other = sha(&s.other.manifest);
    refused(
        &s.get(&format!("/v2/app/manifests/{other}")),
        404,
        "MANIFEST_UNKNOWN",
    );
    let config = s.app.id();
    refused(
        &s.get(&format!("/v2/app/manifests/{config}")),
        404,
        "MANIFEST_UNKNOWN",
    );
    refused(
        &s.get("/v2/app/manifests/sha256:xyz"),
        400,
        "DIGEST_INVALID",
    );
    refused(&s.get("/v2/App/manifests/1"), 400, "NAME_INVALID");
    refused(&s.get("/v2/app/manifests/1?ns=a/b"), 400, "NAME_INVALID");
    let head = s.ask("HEAD", "/v2/app/manifests/3", &[]);
    assert_eq!((head.status, head.body.len()), (404, 0));
}

#[tokio::test]
async fn blobs_whole_ranged_and_only_to_repositories_that_use_them() {
    let s = served().await;
    let layer = &s.app.layers[1].0;
    let path = format!("/v2/app/blobs/{}", sha(layer));
    let whole = s.get(&path);
    assert_eq!(whole.status, 200);
    assert_eq!(&whole.body, layer);
    assert_eq!(
        whole.header("docker-content-digest"),
        Some(sha(layer).as_str())
    );
    assert_eq!(
        whole.header("content-length"),
        Some(layer.len().to_string().as_str())
    );
    let head = s.ask("HEAD", &path, &[]);
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(
        head.header("content-length"),
        Some(layer.len().to_string().as_str())
    );

    let size = layer.len();
    let part = s.ask("GET", &path, &[("Range", "bytes=1-4")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, layer[1..=4]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 1-4/{size}").as_str())
    );
    let tail = s.ask("GET", &path, &[("Range", "bytes=-3")]);
    assert_eq!(
        (tail.status, tail.body.as_slice()),
        (206, &layer[size - 3..])
    );
    let past = s.ask("GET", &path, &[("Range", &format!("bytes={size}-"))]);
    refused(&past, 416, "RANGE_INVALID");
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{size}").as_str())
    );

    // The config, and the blobs of a referrer that travels with the image.
    assert_eq!(
        s.get(&format!("/v2/app/blobs/{}", s.app.id())).body,
        s.app.config
    );
    let sig_blob = &s.sig.blobs[1];
    assert_eq!(
        &s.get(&format!("/v2/app/blobs/{}", sha(sig_blob))).body,
        sig_blob
    );
    // Stored, but another repository's; unknown; malformed; a path that walks.
    let others = sha(&s.other.layers[0].0);
    refused(
        &s.get(&format!("/v2/app/blobs/{others}")),
        404,
        "BLOB_UNKNOWN",
    );
    let ok = s.get(&format!("/v2/other/blobs/{others}?ns=made.up.example"));
    assert_eq!(ok.status, 200);
    refused(
        &s.get(&format!("/v2/app/blobs/{}", sha(b"nothing"))),
        404,
        "BLOB_UNKNOWN",
    );
    refused(&s.get("/v2/app/blobs/sha256:ABC"), 400, "DIGEST_INVALID");
    refused(&s.get("/v2/app/blobs/sha512:abc"), 404, "BLOB_UNKNOWN");
    refused(
        &s.get(&format!("/v2/nothing/blobs/{}", sha(layer))),
        404,
        "NAME_UNKNOWN",
    );
    for walk in [
        "/v2/app/blobs/../../../../etc/passwd",
        "/v2/app/blobs/sha256:..%2f..%2fmeta.redb",
    ] {
        let r = s.get(walk);
        assert!(r.status == 400 || r.status == 404, "{walk}: {r:?}");
    }
}

#[tokio::test]
async fn tags_and_catalog_are_paged_with_links() {
    let s = served().await;
    let all = s.get("/v2/app/tags/list").json();
    assert_eq!(
        all,
        serde_json::json!({"name": "app", "tags": ["1", "10", "2"]})
    );
    let first = s.get("/v2/app/tags/list?n=2");
    assert_eq!(first.json()["tags"], serde_json::json!(["1", "10"]));
    assert_eq!(
        first.header("link"),
        Some("</v2/app/tags/list?n=2&last=10>; rel=\"next\"")
    );
    let rest = s.get("/v2/app/tags/list?n=2&last=10");
    assert_eq!(rest.json()["tags"], serde_json::json!(["2"]));
    assert_eq!(rest.header("link"), None);
    let mirrored = s.get("/v2/other/tags/list?ns=made.up.example").json();
    assert_eq!(
        mirrored,
        serde_json::json!({"name": "other", "tags": ["1"]})
    );
    refused(
        &s.get("/v2/app/tags/list?n=x"),
        400,
        "PAGINATION_NUMBER_INVALID",
    );
    refused(&s.get("/v2/nothing/tags/list"), 404, "NAME_UNKNOWN");

    let repositories = ["docker.io/library/app", "made.up.example/other"];
    assert_eq!(
        s.get("/v2/_catalog").json()["repositories"],
        serde_json::json!(repositories)
    );
    let first = s.get("/v2/_catalog?n=1");
    assert_eq!(
        first.json()["repositories"],
        serde_json::json!(&repositories[..1])
    );
    let link = format!(
        "</v2/_catalog?n=1&last={}>; rel=\"next\"",
        repositories[0].replace('/', "%2F")
    );
    assert_eq!(first.header("link"), Some(link.as_str()));
    let rest = s.get(&format!("/v2/_catalog?n=1&last={}", repositories[0]));
    assert_eq!(
        rest.json()["repositories"],
        serde_json::json!(&repositories[1..])
    );
    assert_eq!(rest.header("link"), None);
    let hub = s.get("/v2/_catalog?ns=docker.io").json();
    assert_eq!(hub["repositories"], serde_json::json!(["library/app"]));
}

#[tokio::test]
async fn referrers_are_listed_filtered_and_never_404() {
    let s = served().await;
    let subject = sha(&s.app.manifest);
    let r = s.get(&format!("/v2/app/referrers/{subject}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(INDEX));
    let mut listed: Vec<String> = r.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = vec![s.sig.digest(), s.sbom.digest()];
    expected.sort();
    assert_eq!(listed, expected);
    let spdx = s.get(&format!(
        "/v2/app/referrers/{subject}?artifactType={}",
        SPDX.replace('+', "%2B")
    ));
    assert_eq!(spdx.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(
        spdx.json()["manifests"][0]["digest"],
        s.sbom.digest().as_str()
    );
    assert_eq!(spdx.json()["manifests"].as_array().unwrap().len(), 1);
    // A signature is fetched by digest like any manifest.
    let sig = s.get(&format!("/v2/app/manifests/{}", s.sig.digest()));
    assert_eq!((sig.status, &sig.body), (200, &s.sig.manifest));

    let empty = |path: &str| {
        let r = s.get(path);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.json()["manifests"], serde_json::json!([]), "{path}");
    };
    empty(&format!("/v2/app/referrers/{}", sha(b"nothing")));
    empty(&format!("/v2/other/referrers/{subject}?ns=made.up.example"));
    refused(&s.get("/v2/app/referrers/sha256:00"), 400, "DIGEST_INVALID");
    refused(
        &s.get(&format!("/v2/nothing/referrers/{subject}")),
        404,
        "NAME_UNKNOWN",
    );
}

#[tokio::test]
async fn writes_are_refused_while_push_is_not_served() {
    let s = served().await;
    for (method, path) in [
        ("PUT", "/v2/app/manifests/1"),
        ("DELETE", "/v2/app/manifests/1"),
        ("POST", "/v2/app/blobs/uploads/"),
        ("PATCH", "/v2/app/blobs/uploads/1"),
        ("DELETE", "/v2/app/blobs/sha256:00"),
    ] {
        let r = s.ask(method, path, &[]);
        refused(&r, 405, "UNSUPPORTED");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    refused(&s.get("/v2/app/other/1"), 404, "UNSUPPORTED");
    // Still serving after all that.
    assert_eq!(s.get("/v2/app/manifests/1").status, 200);
    drop(s.d);
}

#[test]
fn an_exposed_address_needs_tls_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin("hyperd"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .args(["--registry-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
    assert!(!dir.path().join("s.sock").exists());
}

#[test]
fn tls_is_served_with_the_given_certificate() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, key.cert.pem()).unwrap();
    std::fs::write(&pem, key.signing_key.serialize_pem()).unwrap();
    let d = TestDaemon::start_with_args(&[
        "--registry-listen",
        "127.0.0.1:0",
        "--registry-tls-cert",
        p(&cert),
        "--registry-tls-key",
        p(&pem),
    ]);
    let r = get(&format!("https://{}/v2/", registry_addr(&d)));
    assert_eq!(r.status, 200);
    // Plain HTTP to a TLS port gets no answer as a registry.
    let plain = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/v2/", registry_addr(&d)))
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout), "200");
}
