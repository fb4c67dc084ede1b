//! What a review of the first mirror support found: hosts whose API root is no registry's, a
//! dead mirror reached once per waiting fetch, referrers a mirror does not know, a login
//! advised to a host never sent a credential, `ca` files that are not certificates, a host's
//! `header` sent to its token realm too, a walk's refusal that named the registry for what a
//! mirror sent.

use integration::fake_registry::{FakeRegistry, Fault};
use integration::fixtures::{Image, index_json, sha};
use integration::tools::p;

use super::*;

/// Serves `image` as `app:1` (and by its digest) under `root` in place of `/v2`.
fn serve_under(reg: &FakeRegistry, root: &str, image: &Image) {
    let json: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    let media_type = json["mediaType"].as_str().unwrap();
    for tail in ["1".to_owned(), sha(&image.manifest)] {
        let path = format!("{root}/app/manifests/{tail}");
        reg.put_raw(&path, &image.manifest, media_type);
    }
    let layers = image.layers.iter().map(|(layer, _)| layer);
    for blob in std::iter::once(&image.config).chain(layers) {
        let path = format!("{root}/app/blobs/{}", sha(blob));
        reg.put_raw(&path, blob, "application/octet-stream");
    }
}

/// containerd never asks a listed host's API root, so `/custom/root/` answering 404 must not
/// make hyperd pass the host over.
#[test]
fn a_host_with_override_path_serves_though_its_api_root_is_no_registrys() {
    let (mirror, image) = fake_mirror("elsewhere", 2);
    serve_under(&mirror, "/custom/root", &image);
    let dir = tempfile::tempdir().unwrap();
    let table = host_table(&format!("{}/custom/root", mirror.url()), &[]);
    let certs = certs_dir(dir.path(), &format!("{table}  override_path = true\n"));
    let d = daemon(&certs);

    let out = ok(pull(
        &d,
        &dir.path().join("none"),
        &format!("{UPSTREAM}/app:1"),
    ));
    assert!(out.contains(&sha(&image.manifest)), "{out}");
    let manifest = format!("/custom/root/app/manifests/1?ns={UPSTREAM}");
    assert_eq!(
        mirror.count("GET", &manifest),
        1,
        "{:#?}",
        mirror.requests()
    );
}

/// A mirror that may only pull is first used by the blob fetches, three at a time; its token
/// realm fails. The fetches waiting for that first attempt make none of their own.
#[test]
fn a_mirror_that_cannot_be_reached_is_tried_once_however_many_fetches_wait() {
    let (registry, image) = fake_mirror("app", 5);
    let mirror = FakeRegistry::start();
    let realm = format!("{}/token", mirror.url());
    mirror.challenge(&format!("Bearer realm=\"{realm}\",service=\"mirror\""));
    mirror.fault("/token", Fault::Status(503));
    let dir = tempfile::tempdir().unwrap();
    let table = host_table(&mirror.url(), &["pull"]);
    let certs = certs_dir_for(dir.path(), &registry.host(), &table);
    let d = daemon(&certs);

    let name = format!("{}/app:1", registry.host());
    let out = ok(pull(&d, &dir.path().join("none"), &name));
    assert!(out.contains(&sha(&image.manifest)), "{out}");
    let asked = mirror.requests();
    let pings = asked.iter().filter(|(_, path)| path == "/v2/").count();
    let tokens = asked
        .iter()
        .filter(|(_, path)| path.starts_with("/token"))
        .count();
    assert_eq!((pings, tokens), (1, 1), "{asked:#?}");
    assert!(registry.count("GET", &FakeRegistry::blob_path("app", &sha(&image.config))) >= 1);
}

/// A mirror without the referrers API or the tag schema's index knows nothing of referrers:
/// the listing goes on to the registry, which has them.
#[tokio::test(flavor = "multi_thread")]
async fn referrers_a_mirror_does_not_know_come_from_the_registry() {
    use integration::artifacts::{MANIFEST, cosign_signature};
    use integration::fixtures::Comp;
    let (registry, mirror) =
        tokio::task::spawn_blocking(|| (FakeRegistry::start(), FakeRegistry::start()))
            .await
            .unwrap();
    let app = Image::new(&["unknown referrers"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, MANIFEST, "unknown referrers");
    for reg in [&registry, &mirror] {
        reg.put_image("app", "v1", &app);
    }
    registry.put_manifest("app", &sig.digest(), &sig.manifest);
    for blob in &sig.blobs {
        registry.put_blob("app", blob);
    }
    registry.put_referrers("app", &sig.digest(), &[vec![]]);
    let app_digest = sha(&app.manifest);
    registry.put_referrers("app", &app_digest, &[vec![sig.descriptor()]]);
    let dir = tempfile::tempdir().unwrap();
    let table = host_table(&mirror.url(), &[]);
    let certs = certs_dir_for(dir.path(), &registry.host(), &table);
    let d = tokio::task::spawn_blocking(move || daemon(&certs))
        .await
        .unwrap();

    let name = format!("{}/app:v1", registry.host());
    let out = d.ok_with_config(dir.path(), &["pull", "--referrers", &name]);
    assert!(out.contains("Referrers: 1"), "{out}");
    let ns = registry.host().replace(':', "%3A");
    let listing = format!("/v2/app/referrers/{app_digest}");
    let asked_mirror = format!("{listing}?ns={ns}");
    assert_eq!(
        mirror.count("GET", &asked_mirror),
        1,
        "{:#?}",
        mirror.requests()
    );
    assert_eq!(
        registry.count("GET", &listing),
        1,
        "{:#?}",
        registry.requests()
    );
}

/// A mirror is never sent the registry's credential, so its 401 is no reason to log in to it.
#[test]
fn a_mirrors_refusal_for_want_of_a_credential_advises_no_login() {
    let (mirror, _) = fake_mirror("app", 1);
    mirror.fault(&FakeRegistry::manifest_path("app", "1"), Fault::Status(401));
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_dir(dir.path(), &host_table(&mirror.url(), &[]));
    let d = daemon(&certs);

    let out = pull(&d, &dir.path().join("none"), &format!("{UPSTREAM}/app:1"));
    let err = failed(&out, REGISTRY_UNAVAILABLE);
    assert!(err.contains("gets none"), "{err}");
    assert!(!err.contains(&format!("login {}", mirror.host())), "{err}");
    assert_eq!(err.matches(&mirror.host()).count(), 1, "{err}");
}

/// A `ca` file that holds no certificate (or is over 1 MiB) is the operator's mistake, said
/// with the file's name; the pull does not pass over the mirror as if it were down.
#[test]
fn a_ca_file_without_a_certificate_fails_the_pull_and_names_the_file() {
    let (mirror, _) = fake_mirror("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let https = mirror.url().replace("http://", "https://");
    let table = format!("{}  ca = \"mirror-ca.pem\"\n", host_table(&https, &[]));
    let certs = certs_dir(dir.path(), &table);
    let ca = certs.join(UPSTREAM).join("mirror-ca.pem");
    let d = daemon(&certs);
    let name = format!("{UPSTREAM}/app:1");

    let texts = [
        b"not a certificate\n".to_vec(),
        b"-----BEGIN CERTIFICATE-----\n!!\n".to_vec(),
        vec![b'\n'; 2 << 20],
    ];
    for text in texts {
        std::fs::write(&ca, text).unwrap();
        let err = failed(&pull(&d, &dir.path().join("none"), &name), 1);
        assert!(err.contains(p(&ca)), "{err}");
        assert!(!err.contains("mirrors tried first"), "{err}");
    }
    assert!(mirror.requests().is_empty(), "{:#?}", mirror.requests());
}

/// A document a mirror sent that fails a check is the mirror's, and messages say so.
#[test]
fn a_bad_document_from_a_mirror_names_the_mirror() {
    let (mirror, image) = fake_mirror("app", 1);
    let json: serde_json::Value = serde_json::from_slice(&image.manifest).unwrap();
    let lying = serde_json::json!({
        "mediaType": json["mediaType"],
        "digest": sha(&image.manifest),
        "size": image.manifest.len() + 1,
        "platform": {"architecture": "amd64", "os": "linux"},
    });
    mirror.put_manifest("app", "1", &index_json(vec![lying]));
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_dir(dir.path(), &host_table(&mirror.url(), &[]));
    let d = daemon(&certs);

    let name = format!("{UPSTREAM}/app:1");
    let out = d.run_with_config(
        &dir.path().join("none"),
        &["pull", "--platform", "linux/amd64", &name],
    );
    assert!(!out.status.success());
    let err = stderr_of(&out);
    let from = format!("from {} (a mirror of {UPSTREAM})", mirror.host());
    assert!(
        err.contains(&from) && err.contains("the index says"),
        "{err}"
    );
}

/// A mirror that sends a blob's body other than its digest says is passed over for that blob:
/// the registry sends it instead, and the pull succeeds.
#[test]
fn a_bad_blob_body_from_a_mirror_is_fetched_again_from_the_next_host() {
    let (registry, image) = fake_mirror("app", 2);
    let mirror = FakeRegistry::start();
    mirror.put_image("app", "1", &image);
    let layer = &image.layers[1].0;
    let path = FakeRegistry::blob_path("app", &sha(layer));
    mirror.fault(&path, Fault::Body(vec![b'x'; layer.len()]));
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_dir_for(
        dir.path(),
        &registry.host(),
        &host_table(&mirror.url(), &[]),
    );
    let d = daemon(&certs);

    let name = format!("{}/app:1", registry.host());
    let out = ok(pull(&d, &dir.path().join("none"), &name));
    assert!(out.contains(&sha(&image.manifest)), "{out}");
    let ns = registry.host().replace(':', "%3A");
    let from_mirror = format!("{path}?ns={ns}");
    assert_eq!(
        mirror.count("GET", &from_mirror),
        1,
        "{:#?}",
        mirror.requests()
    );
    assert_eq!(
        registry.count("GET", &path),
        1,
        "{:#?}",
        registry.requests()
    );
    let other = FakeRegistry::blob_path("app", &sha(&image.layers[0].0));
    assert_eq!(
        registry.count("GET", &other),
        0,
        "{:#?}",
        registry.requests()
    );
    assert!(d.log().contains("a mirror sent a bad body"), "{}", d.log());
}

/// A host's `header` (here a credential meant for the mirror alone) goes to that host, never to
/// the token realm it names, another host: containerd applies it to the host alone.
#[test]
fn a_hosts_headers_are_not_sent_to_its_token_realm() {
    let (mirror, image) = fake_mirror("app", 1);
    let realm = FakeRegistry::start();
    realm.put_raw(
        "/token",
        br#"{"token":"from-the-realm"}"#,
        "application/json",
    );
    let challenge = format!("Bearer realm=\"{}/token\",service=\"mirror\"", realm.url());
    mirror.challenge(&challenge);
    let dir = tempfile::tempdir().unwrap();
    let header = "Basic bWlycm9yLW9ubHk=";
    let table = format!(
        "{}  header = {{ Authorization = {header:?} }}\n",
        host_table(&mirror.url(), &[])
    );
    let certs = certs_dir(dir.path(), &table);
    let d = daemon(&certs);

    let out = ok(pull(
        &d,
        &dir.path().join("none"),
        &format!("{UPSTREAM}/app:1"),
    ));
    assert!(out.contains(&sha(&image.manifest)), "{out}");
    let tokens = realm.requests();
    assert!(
        tokens.iter().any(|(_, path)| path.starts_with("/token")),
        "{tokens:#?}"
    );
    assert!(realm.authorized().is_empty(), "{:#?}", realm.authorized());
    let to_mirror = mirror.authorized();
    assert!(
        to_mirror
            .iter()
            .any(|(path, auth)| path == "/v2/" && auth == header),
        "{to_mirror:#?}"
    );
}

/// A document the walk refuses names the mirror that sent it, not the registry it stands in for.
#[test]
fn a_document_the_walk_refuses_names_the_mirror_that_sent_it() {
    let (mirror, _) = fake_mirror("app", 1);
    let broken = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": "not a descriptor",
        "layers": [],
    }))
    .unwrap();
    mirror.put_manifest("app", &sha(&broken), &broken);
    let child = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": sha(&broken),
        "size": broken.len(),
        "platform": {"architecture": "amd64", "os": "linux"},
    });
    mirror.put_manifest("app", "1", &index_json(vec![child]));
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_dir(dir.path(), &host_table(&mirror.url(), &[]));
    let d = daemon(&certs);

    let name = format!("{UPSTREAM}/app:1");
    let out = d.run_with_config(
        &dir.path().join("none"),
        &["pull", "--all-platforms", &name],
    );
    assert!(!out.status.success());
    let err = stderr_of(&out);
    let from = format!("{name} from {} (a mirror of {UPSTREAM})", mirror.host());
    assert!(err.contains(&from), "{err}");
}

/// A push-capable mirror that refuses the push for want of a credential is named as the host
/// that refused; no login to the registry is advised, as the mirror never gets its credential.
#[test]
fn a_push_refused_by_a_mirror_names_the_mirror() {
    let (mirror, _) = fake_mirror("app", 1);
    let dir = tempfile::tempdir().unwrap();
    let certs = certs_dir(dir.path(), &host_table(&mirror.url(), &[]));
    let d = daemon(&certs);
    let name = format!("{UPSTREAM}/app:1");
    ok(pull(&d, &dir.path().join("none"), &name));
    mirror.fault(&FakeRegistry::manifest_path("app", "1"), Fault::Status(401));

    let out = d.run_with_config(&dir.path().join("none"), &["push", &name]);
    // hyperctl's exit code for a registry's refusal of the credential (hyperctl/src/exit.rs).
    let err = failed(&out, 5);
    let refused = format!("{} asks for a credential, and gets none", mirror.host());
    assert!(err.contains(&refused), "{err}");
    assert!(!err.contains("hyperctl login"), "{err}");
    assert!(err.contains("never to a mirror"), "{err}");
}
