//! Pull-through (`--registry-pull-through`), with Debian's docker-registry 2.8 as the upstream:
//! another hyperd pulls through this one named as its mirror (hosts.toml, `?ns=HOST`), the
//! blobs cross from upstream once however many ask at once, digests are served from the store,
//! a tag is looked up upstream again after its age, an upstream that fails leaves the
//! stored tag served, and an image's referrers come through with it.

use std::path::Path;

use integration::TestDaemon;
use integration::registry::TestRegistry;
use integration::serve::{get, registry_addr, request};
use integration::tools::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A one-layer image, different for each `seed`, pushed to `reg` as `team/app:1`; its manifest
/// digest.
fn pushed(reg: &TestRegistry, dir: &Path, seed: &str) -> String {
    let layout = umoci_image(
        &dir.join(seed),
        "v1",
        &[&[("etc/seed", &format!("{seed}\n")[..])]],
    );
    let source = format!("oci:{}:v1", p(&layout));
    reg.skopeo_copy_to(&source, "team/app:1");
    skopeo_digests(&source).0
}

fn through(extra: &[&str]) -> (TestDaemon, String) {
    let mut args = vec![
        "--registry-listen",
        "127.0.0.1:0",
        "--registry-pull-through",
    ];
    args.extend_from_slice(extra);
    let d = TestDaemon::start_with_args(&args);
    let addr = registry_addr(&d);
    (d, addr)
}

/// The manifest URL of `team/app` at `reference` on `addr`, mirroring `upstream`.
fn manifest_url(addr: &str, upstream: &str, reference: &str) -> String {
    let ns = upstream.replace(':', "%3A");
    format!("http://{addr}/v2/team/app/manifests/{reference}?ns={ns}")
}

fn manifest(url: &str) -> integration::serve::Reply {
    request("GET", url, &[("Accept", OCI_MANIFEST)])
}

/// `clients` requests of `url` at once, each answered with the manifest `digest`.
fn all_answer(clients: usize, url: &str, digest: &str) {
    let asking: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.to_owned();
            std::thread::spawn(move || manifest(&url))
        })
        .collect();
    for a in asking {
        let reply = a.join().unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.header("Docker-Content-Digest"), Some(digest));
    }
}

#[test]
fn another_hyperd_pulls_through_this_one_and_blobs_cross_once() {
    let upstream = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let digest = pushed(&upstream, dir.path(), "first");
    let (mirror, addr) = through(&[]);

    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join(upstream.host())).unwrap();
    std::fs::write(
        certs.join(upstream.host()).join("hosts.toml"),
        format!(
            "server = \"http://{}\"\n[host.\"http://{addr}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            upstream.host()
        ),
    )
    .unwrap();
    let client = TestDaemon::start_with_args(&["--certs-dir", p(&certs)]);
    let name = format!("{}/team/app:1", upstream.host());
    let mark = upstream.mark();
    client.ok(&["pull", "-q", &name]);
    assert_eq!(client.inspect(&name)["Digest"], digest.as_str());
    // The mirror stored what it pulled, under the upstream's name.
    assert_eq!(mirror.inspect(&name)["Digest"], digest.as_str());
    let fetched = upstream.count_since(mark, "GET", "/blobs/");
    assert_eq!(fetched, 2, "config and layer, once each");

    // Five more clients at once, and a pull by digest: all from the store.
    let mark = upstream.mark();
    all_answer(5, &manifest_url(&addr, &upstream.host(), "1"), &digest);
    let by_digest = manifest(&manifest_url(&addr, &upstream.host(), &digest));
    assert_eq!(by_digest.status, 200, "{by_digest:?}");
    assert!(
        upstream.requests_since(mark).is_empty(),
        "within its age a tag is not looked up"
    );
}

#[test]
fn concurrent_first_requests_share_one_pull() {
    let upstream = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let digest = pushed(&upstream, dir.path(), "shared");
    let (_mirror, addr) = through(&[]);
    let mark = upstream.mark();
    all_answer(8, &manifest_url(&addr, &upstream.host(), "1"), &digest);
    assert_eq!(upstream.count_since(mark, "GET", "/blobs/"), 2);
}

#[test]
fn a_tag_is_looked_up_again_after_its_age_and_a_failing_upstream_leaves_it_served() {
    let upstream = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let first = pushed(&upstream, dir.path(), "old");
    let (_mirror, addr) = through(&["--registry-pull-through-age", "0"]);
    let url = manifest_url(&addr, &upstream.host(), "1");
    assert_eq!(
        manifest(&url).header("Docker-Content-Digest"),
        Some(first.as_str())
    );

    let second = pushed(&upstream, dir.path(), "new");
    assert_ne!(first, second);
    assert_eq!(
        manifest(&url).header("Docker-Content-Digest"),
        Some(second.as_str())
    );

    // A digest the upstream never had: 404 MANIFEST_UNKNOWN, nothing stored.
    let missing = format!("sha256:{}", "0".repeat(64));
    let reply = manifest(&manifest_url(&addr, &upstream.host(), &missing));
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );

    let host = upstream.host();
    drop(upstream);
    let reply = manifest(&url);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("Docker-Content-Digest"), Some(second.as_str()));
    // Not stored and the upstream gone: the client is told, with the spec's error body.
    let other = manifest(&manifest_url(&addr, &host, "2"));
    assert_eq!(other.status, 502, "{other:?}");
    assert_eq!(other.code(), "UNKNOWN");
}

#[test]
fn without_pull_through_what_is_not_stored_is_unknown() {
    let upstream = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    pushed(&upstream, dir.path(), "off");
    let d = TestDaemon::start_with_args(&["--registry-listen", "127.0.0.1:0"]);
    let addr = registry_addr(&d);
    let mark = upstream.mark();
    let reply = get(&manifest_url(&addr, &upstream.host(), "1"));
    assert_eq!((reply.status, reply.code().as_str()), (404, "NAME_UNKNOWN"));
    assert!(upstream.requests_since(mark).is_empty());
}

#[test]
fn a_digest_pulled_through_is_served_with_its_blobs_under_its_repository_only() {
    let upstream = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let digest = pushed(&upstream, dir.path(), "by-digest");
    let (mirror, addr) = through(&[]);
    let reply = manifest(&manifest_url(&addr, &upstream.host(), &digest));
    assert_eq!(reply.status, 200, "{reply:?}");
    // Stored untagged; its blobs are this repository's, not another's.
    assert_eq!(mirror.ok(&["images", "-q"]).lines().count(), 1);
    let layer = reply.json()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let ns = upstream.host().replace(':', "%3A");
    let blob = get(&format!("http://{addr}/v2/team/app/blobs/{layer}?ns={ns}"));
    assert_eq!(blob.status, 200, "{blob:?}");
    let elsewhere = get(&format!(
        "http://{addr}/v2/team/other/blobs/{layer}?ns={ns}"
    ));
    assert_eq!(
        (elsewhere.status, elsewhere.code().as_str()),
        (404, "BLOB_UNKNOWN")
    );
}

#[tokio::test]
async fn an_images_referrers_come_through_with_it() {
    use integration::artifacts::{cosign_signature, layout};
    use integration::fixtures::{Comp, Image, sha, tar};
    let upstream = TestRegistry::plain();
    let app = Image::new(&["through referrers"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, OCI_MANIFEST, "through");
    let source = TestDaemon::start();
    let entries = layout(
        &[(&app, &[("org.opencontainers.image.ref.name", "team/app:1")])],
        &[&sig],
    );
    source.ok(&[
        "load",
        "-i",
        p(&source.write_file("app.tar", &tar(&entries).await)),
    ]);
    let name = format!("{}/team/app:1", upstream.host());
    source.ok(&["tag", "team/app:1", &name]);
    source.ok(&["push", &name]);

    let (_mirror, addr) = through(&[]);
    let url = manifest_url(&addr, &upstream.host(), "1");
    assert_eq!(manifest(&url).status, 200);
    let ns = upstream.host().replace(':', "%3A");
    let listed = get(&format!(
        "http://{addr}/v2/team/app/referrers/{}?ns={ns}",
        sha(&app.manifest)
    ));
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(
        listed.json()["manifests"][0]["digest"],
        sig.digest().as_str()
    );
}
