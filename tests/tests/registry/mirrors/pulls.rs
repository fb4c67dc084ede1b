//! Pulls and pushes through the mirrors a `hosts.toml` lists.

use integration::fake_registry::FakeRegistry;
use integration::fixtures::{Image, sha};
use integration::registry::{TestRegistry, write_docker_config};
use integration::tools::p;

use super::*;

#[test]
fn a_made_up_registry_is_pulled_through_its_mirror_by_tag_and_digest() {
    let reg = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let manifest = image_in(&reg, dir.path());
    let certs = certs_dir(
        dir.path(),
        &format!(
            "server = \"https://{UPSTREAM}\"\n\n{}",
            host_table(&format!("http://{}", reg.host()), &["pull", "resolve"])
        ),
    );
    let d = daemon(&certs);
    let none = dir.path().join("none");
    let mark = reg.mark();

    let out = ok(pull(&d, &none, &format!("{UPSTREAM}/app:1")));
    assert!(out.contains(&format!("Digest: {manifest}")), "{out}");
    let listed = d.ok(&["images", "--format", "json"]);
    assert!(listed.contains(&format!("{UPSTREAM}/app")), "{listed}");
    // containerd's way of telling a mirror which registry it stands for, on every request.
    let asked: Vec<_> = reg
        .requests_since(mark)
        .into_iter()
        .filter(|r| r.uri.starts_with("/v2/app/"))
        .collect();
    assert!(!asked.is_empty());
    for r in &asked {
        assert!(r.uri.ends_with(&format!("?ns={UPSTREAM}")), "{r:?}");
    }
    assert!(
        asked
            .iter()
            .any(|r| r.uri == format!("/v2/app/manifests/1?ns={UPSTREAM}")),
        "{asked:#?}"
    );
    let log = d.log();
    assert!(
        log.contains("a mirror serves the pull") && log.contains(&reg.host()),
        "{log}"
    );

    d.ok(&["rmi", &format!("{UPSTREAM}/app:1")]);
    let by_digest = format!("{UPSTREAM}/app@{manifest}");
    assert_eq!(
        ok(d.run_with_config(&none, &["pull", "-q", &by_digest])).trim(),
        by_digest
    );
}

#[test]
fn a_mirror_that_may_only_pull_serves_digests_never_tags() {
    let reg = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let manifest = image_in(&reg, dir.path());
    let certs = certs_dir(
        dir.path(),
        &host_table(&format!("http://{}", reg.host()), &["pull"]),
    );
    let d = daemon(&certs);
    let none = dir.path().join("none");
    let mark = reg.mark();

    // The tag goes to the registry itself, which does not resolve.
    let err = failed(
        &pull(&d, &none, &format!("{UPSTREAM}/app:1")),
        REGISTRY_UNAVAILABLE,
    );
    assert!(err.contains(UPSTREAM), "{err}");
    assert_eq!(
        reg.count_since(mark, "GET", "/manifests/1"),
        0,
        "{:#?}",
        reg.requests()
    );

    let by_digest = format!("{UPSTREAM}/app@{manifest}");
    ok(pull(&d, &none, &by_digest));
    assert!(
        reg.count_since(mark, "GET", &format!("/manifests/{manifest}?ns={UPSTREAM}")) > 0,
        "{:#?}",
        reg.requests()
    );
    assert!(!d.ok(&["images", "-q", "--all"]).trim().is_empty());
}

#[test]
fn a_dead_mirror_and_one_without_the_image_pass_the_pull_to_the_next() {
    let reg = TestRegistry::plain();
    let empty = FakeRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = image_in(&reg, dir.path());
    let certs = certs_dir(
        dir.path(),
        &format!(
            "[host.\"http://127.0.0.1:{}\"]\n[host.\"{}\"]\n[host.\"http://{}\"]\n",
            dead_port(),
            empty.url(),
            reg.host()
        ),
    );
    let d = daemon(&certs);

    let out = ok(pull(
        &d,
        &dir.path().join("none"),
        &format!("{UPSTREAM}/app:1"),
    ));
    assert!(out.contains(&format!("Digest: {manifest}")), "{out}");
    // The empty mirror was asked, told which registry it stands for (colon and all encoded as
    // containerd encodes them), and answered 404.
    let manifest_request = format!("/v2/app/manifests/1?ns={UPSTREAM}");
    assert_eq!(
        empty.count("GET", &manifest_request),
        1,
        "{:#?}",
        empty.requests()
    );
    assert!(reg.count("GET", "/blobs/") >= 2, "{:#?}", reg.requests());
    let log = d.log();
    assert!(
        log.contains("a mirror failed; trying the next host"),
        "{log}"
    );
}

#[test]
fn the_registrys_credential_never_goes_to_a_mirror() {
    let (mirror, image) = fake_mirror("team/app", 2);
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_dir(dir.path(), &host_table(&mirror.url(), &["pull", "resolve"]));
    let d = daemon(&certs);
    let docker = dir.path().join("docker");
    write_docker_config(&docker, UPSTREAM, "alice", "s3cret");

    let out = ok(pull(&d, &docker, &format!("{UPSTREAM}/team/app:1")));
    assert!(out.contains(&sha(&image.manifest)), "{out}");
    assert_eq!(mirror.authorized(), Vec::<(String, String)>::new());
    let asked: Vec<_> = mirror
        .requests()
        .into_iter()
        .filter(|(_, path)| path.starts_with("/v2/team/"))
        .collect();
    assert_eq!(
        asked.len(),
        4,
        "a manifest, a config, two layers: {asked:#?}"
    );
    for (_, path) in &asked {
        assert!(path.ends_with("?ns=made.up.example"), "{path}");
    }
}

#[test]
fn a_port_in_the_registrys_name_is_encoded_in_ns() {
    let (mirror, _) = fake_mirror("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let registry = "made.up.example:5601";
    let certs = dir.path().join("certs.d");
    // containerd's other name for a host:port directory.
    let host_dir = certs.join("made.up.example_5601_");
    std::fs::create_dir_all(&host_dir).unwrap();
    let hosts = format!("[host.\"{}\"]\n", mirror.url());
    std::fs::write(host_dir.join("hosts.toml"), hosts).unwrap();
    let d = daemon(&certs);

    ok(pull(
        &d,
        &dir.path().join("none"),
        &format!("{registry}/app:1"),
    ));
    let expected = "/v2/app/manifests/1?ns=made.up.example%3A5601";
    assert_eq!(mirror.count("GET", expected), 1, "{:#?}", mirror.requests());
}

#[test]
fn a_malformed_hosts_toml_fails_the_pull_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_dir(
        dir.path(),
        "[host.\"http://127.0.0.1:5000\"\ncapabilities = 1\n",
    );
    let d = daemon(&certs);
    let out = pull(&d, &dir.path().join("none"), &format!("{UPSTREAM}/app:1"));
    assert!(!out.status.success());
    let err = stderr_of(&out);
    let file = certs.join(UPSTREAM).join("hosts.toml");
    assert!(err.contains(p(&file)) && err.contains("line 1"), "{err}");

    std::fs::write(
        &file,
        "[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pul\"]\n",
    )
    .unwrap();
    let err = stderr_of(&pull(
        &d,
        &dir.path().join("none"),
        &format!("{UPSTREAM}/app:1"),
    ));
    assert!(
        err.contains(p(&file)) && err.contains("unknown capability \"pul\""),
        "{err}"
    );
}

#[test]
fn a_push_never_goes_to_a_mirror_that_may_not_push() {
    let reg = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    image_in(&reg, dir.path());
    let certs = certs_dir(
        dir.path(),
        &host_table(&format!("http://{}", reg.host()), &["pull", "resolve"]),
    );
    let d = daemon(&certs);
    let none = dir.path().join("none");
    ok(pull(&d, &none, &format!("{UPSTREAM}/app:1")));
    let mark = reg.mark();

    let out = d.run_with_config(&none, &["push", &format!("{UPSTREAM}/app:1")]);
    failed(&out, REGISTRY_UNAVAILABLE);
    let asked = reg.requests_since(mark);
    assert!(asked.is_empty(), "{asked:#?}");

    // With the push capability the mirror takes it, as containerd would send it.
    let pusher = host_table(&format!("http://{}", reg.host()), &["push"]);
    std::fs::write(certs.join(UPSTREAM).join("hosts.toml"), pusher).unwrap();
    let (one, two) = (format!("{UPSTREAM}/app:1"), format!("{UPSTREAM}/app:2"));
    d.ok(&["tag", &one, &two]);
    ok(d.run_with_config(&none, &["push", &two]));
    assert_eq!(
        reg.count_since(mark, "PUT", "/v2/app/manifests/2"),
        1,
        "{:#?}",
        reg.requests_since(mark)
    );
    // containerd's pusher asks the host with no `ns`: the push is to that host itself.
    let pushed = reg.requests_since(mark);
    assert!(pushed.iter().all(|r| !r.uri.contains("ns=")), "{pushed:#?}");
}

#[test]
fn a_tls_mirror_is_trusted_through_its_ca_file_or_skip_verify_and_else_refused() {
    let reg = TestRegistry::with_tls();
    let dir = tempfile::tempdir().unwrap();
    let manifest = image_in(&reg, dir.path());
    // `ca` is relative to the directory of hosts.toml.
    let mirror = format!("[host.\"https://{}\"]\n", reg.host());
    let certs = certs_dir(dir.path(), &format!("{mirror}  ca = \"mirror-ca.pem\"\n"));
    let hosts_toml = certs.join(UPSTREAM).join("hosts.toml");
    std::fs::write(certs.join(UPSTREAM).join("mirror-ca.pem"), reg.ca_pem()).unwrap();
    let d = daemon(&certs);
    let none = dir.path().join("none");
    let name = format!("{UPSTREAM}/app:1");

    let out = ok(pull(&d, &none, &name));
    assert!(out.contains(&format!("Digest: {manifest}")), "{out}");

    d.ok(&["rmi", &name]);
    std::fs::write(&hosts_toml, format!("{mirror}  skip_verify = true\n")).unwrap();
    ok(pull(&d, &none, &name));

    // Trusted by nothing: the mirror is passed over, and the registry itself does not resolve.
    d.ok(&["rmi", &name]);
    std::fs::write(&hosts_toml, &mirror).unwrap();
    let err = failed(&pull(&d, &none, &name), REGISTRY_UNAVAILABLE);
    // The registry's failure, and the mirror's before it.
    assert!(err.contains(UPSTREAM), "{err}");
    assert!(
        err.contains("mirrors tried first") && err.contains("certificate"),
        "{err}"
    );
    let log = d.log();
    assert!(
        log.contains("a mirror failed; trying the next host"),
        "{log}"
    );
}

#[test]
fn a_mirror_on_the_registrys_own_host_gets_its_credential_and_no_ns() {
    let reg = TestRegistry::with_auth("alice", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let manifest = image_in(&reg, dir.path());
    let mirror = host_table(&format!("http://{}", reg.host()), &["pull", "resolve"]);
    let certs = certs_dir_for(dir.path(), &reg.host(), &mirror);
    let d = daemon(&certs);
    let name = format!("{}/app:1", reg.host());

    failed(&pull(&d, &dir.path().join("none"), &name), 5);

    let docker = dir.path().join("docker");
    write_docker_config(&docker, &reg.host(), "alice", "s3cret");
    let mark = reg.mark();
    let out = ok(pull(&d, &docker, &name));
    assert!(out.contains(&format!("Digest: {manifest}")), "{out}");
    let asked = reg.requests_since(mark);
    assert!(
        asked
            .iter()
            .any(|r| r.status == 200 && r.uri.contains("/blobs/")),
        "{asked:#?}"
    );
    assert!(asked.iter().all(|r| !r.uri.contains("ns=")), "{asked:#?}");
}

/// Referrers are listed by a host that may resolve (a listing names digests, as a tag does),
/// and fetched by digest, both from the mirror with `ns`.
#[tokio::test(flavor = "multi_thread")]
async fn referrers_come_through_the_mirror_too() {
    use integration::artifacts::{MANIFEST, cosign_signature, spdx_sbom};
    use integration::fixtures::Comp;
    // The fake runs a runtime of its own, which cannot start inside this one.
    let mirror = tokio::task::spawn_blocking(FakeRegistry::start)
        .await
        .unwrap();
    let app = Image::new(&["mirrored referrers"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, MANIFEST, "mirrored referrers");
    let sbom = spdx_sbom(&app.manifest, MANIFEST);
    mirror.put_image("app", "v1", &app);
    for a in [&sig, &sbom] {
        mirror.put_manifest("app", &a.digest(), &a.manifest);
        for blob in &a.blobs {
            mirror.put_blob("app", blob);
        }
        mirror.put_referrers("app", &a.digest(), &[vec![]]);
    }
    let app_digest = sha(&app.manifest);
    mirror.put_referrers(
        "app",
        &app_digest,
        &[vec![sig.descriptor(), sbom.descriptor()]],
    );
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_dir(dir.path(), &format!("[host.\"{}\"]\n", mirror.url()));
    let d = tokio::task::spawn_blocking(move || daemon(&certs))
        .await
        .unwrap();

    let name = format!("{UPSTREAM}/app:v1");
    let out = d.ok_with_config(dir.path(), &["pull", "--referrers", &name]);
    assert!(out.contains("Referrers: 2"), "{out}");
    let listed = format!("/v2/app/referrers/{app_digest}?ns={UPSTREAM}");
    assert_eq!(mirror.count("GET", &listed), 1, "{:#?}", mirror.requests());
    let by_digest = format!("/v2/app/manifests/{}?ns={UPSTREAM}", sig.digest());
    assert_eq!(
        mirror.count("GET", &by_digest),
        1,
        "{:#?}",
        mirror.requests()
    );
}
