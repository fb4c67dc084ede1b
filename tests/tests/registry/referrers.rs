//! Referrers over a registry: a signed image with an SBOM (and a signature of the SBOM) pushed
//! by hyperd to distribution 2.8, which has no referrers API, so they go through the tag schema;
//! a second hyperd pulls them back with `--referrers` with every digest unchanged.

use std::collections::BTreeSet;

use integration::TestDaemon;
use integration::artifacts::*;
use integration::fake_registry::FakeRegistry;
use integration::fixtures::*;
use integration::registry::TestRegistry;
use integration::tools::p;
use serde_json::Value;

/// A stored image `REG/app:v1` with its signature, its SBOM and a signature of the SBOM;
/// the digests of the three referrers.
async fn signed_image(d: &TestDaemon, reg: &TestRegistry) -> (Image, BTreeSet<String>) {
    let app = Image::new(&["registry referrers"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, MANIFEST, "registry referrers");
    let sbom = spdx_sbom(&app.manifest, MANIFEST);
    let sbom_sig = cosign_signature(&sbom.manifest, MANIFEST, "registry referrers sbom");
    let name = format!("{}/team/app:v1", reg.host());
    let entries = layout(&[(&app, &[(REF_NAME, &name)])], &[&sig, &sbom, &sbom_sig]);
    let archive = d.path("signed.tar");
    std::fs::write(&archive, tar(&entries).await).unwrap();
    d.ok(&["load", "-i", p(&archive)]);
    let digests = [&sig, &sbom, &sbom_sig].map(|a| a.digest()).into();
    (app, digests)
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn referrers(d: &TestDaemon, image: &str) -> BTreeSet<String> {
    d.inspect(image)["Referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Digest"].as_str().unwrap().to_owned())
        .collect()
}

/// The digests the tag schema's index for `subject` lists at the registry.
fn schema_listing(reg: &TestRegistry, repo: &str, subject: &str) -> BTreeSet<String> {
    let tag = format!("{repo}:sha256-{}", hex_of(subject));
    let index: Value = serde_json::from_str(&reg.skopeo_inspect_raw(&tag)).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_travel_through_a_registry_without_the_referrers_api() {
    let reg = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path();
    let sender = TestDaemon::start();
    let (app, sent) = signed_image(&sender, &reg).await;
    let name = format!("{}/team/app:v1", reg.host());
    assert_eq!(referrers(&sender, &name), sent);

    let out = sender.ok_with_config(creds, &["push", &name]);
    assert!(out.contains("Pushed 3 referrers"), "{out}");
    let app_digest = sha(&app.manifest);
    let sbom = spdx_sbom(&app.manifest, MANIFEST);
    let on_app = schema_listing(&reg, "team/app", &app_digest);
    let on_sbom = schema_listing(&reg, "team/app", &sbom.digest());
    assert_eq!(on_app.len(), 2, "{on_app:?}");
    assert!(on_app.contains(&sbom.digest()), "{on_app:?}");
    assert_eq!(on_sbom.len(), 1, "{on_sbom:?}");
    assert_eq!(
        on_app.union(&on_sbom).cloned().collect::<BTreeSet<_>>(),
        sent
    );
    assert!(
        reg.count("GET", "/referrers/") > 0,
        "the referrers API was not asked first"
    );

    // A second push changes no tag-schema index: each lists its referrers already.
    let mark = reg.mark();
    sender.ok_with_config(creds, &["push", &name]);
    assert_eq!(reg.count_since(mark, "PUT", "/manifests/sha256-"), 0);

    let receiver = TestDaemon::start();
    let out = receiver.ok_with_config(creds, &["pull", &name]);
    assert!(!out.contains("Referrers"), "{out}");
    assert!(referrers(&receiver, &name).is_empty());
    let out = receiver.ok_with_config(creds, &["pull", "--referrers", &name]);
    assert!(out.contains("Referrers: 3"), "{out}");
    assert_eq!(referrers(&receiver, &name), sent);
    let listed = receiver.ok(&["images", "-q"]);
    assert_eq!(
        listed.lines().count(),
        1,
        "a referrer listed as an image: {listed}"
    );

    // They travel on from the receiver as from the sender: a save holds the same manifests.
    let saved = receiver.path("saved.tar");
    receiver.ok(&["save", "-o", p(&saved), "-f", "oci", &name]);
    let files = untar(&std::fs::read(&saved).unwrap()).await;
    for digest in &sent {
        assert!(
            files.contains_key(&format!("blobs/sha256/{}", hex_of(digest))),
            "{digest} is not in the save"
        );
    }

    // With --no-referrers a push to another repository leaves them out.
    let elsewhere = format!("{}/other/app:v1", reg.host());
    receiver.ok(&["tag", &name, &elsewhere]);
    let mark = reg.mark();
    let out = receiver.ok_with_config(creds, &["push", "--no-referrers", &elsewhere]);
    assert!(!out.contains("referrers"), "{out}");
    assert_eq!(reg.count_since(mark, "PUT", "/manifests/sha256-"), 0);
    assert_eq!(reg.count_since(mark, "PUT", "/manifests/"), 1);
    assert_eq!(reg.count_since(mark, "GET", "/referrers/"), 0);
}

/// A registry with the referrers API (a fake: distribution 2.8 has none) that pages its
/// listing, and lists one manifest that refers to something else.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_follows_the_referrers_api_across_pages_and_skips_what_refers_elsewhere() {
    // The fake runs a runtime of its own, which cannot start inside this one.
    let reg = tokio::task::spawn_blocking(FakeRegistry::start)
        .await
        .unwrap();
    let app = Image::new(&["referrers api"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, MANIFEST, "referrers api");
    let sbom = spdx_sbom(&app.manifest, MANIFEST);
    let elsewhere = cosign_signature(b"another manifest", MANIFEST, "stale");
    reg.put_image("app", "v1", &app);
    for a in [&sig, &sbom, &elsewhere] {
        reg.put_manifest("app", &a.digest(), &a.manifest);
        for blob in &a.blobs {
            reg.put_blob("app", blob);
        }
    }
    let app_digest = sha(&app.manifest);
    let pages = [
        vec![sig.descriptor()],
        vec![elsewhere.descriptor(), sbom.descriptor()],
    ];
    reg.put_referrers("app", &app_digest, &pages);
    for a in [&sig, &sbom] {
        reg.put_referrers("app", &a.digest(), &[vec![]]);
    }

    let d = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{}/app:v1", reg.host());
    let out = d.ok_with_config(dir.path(), &["pull", "--referrers", &name]);
    assert!(out.contains("Referrers: 2"), "{out}");
    assert_eq!(referrers(&d, &name), [sig.digest(), sbom.digest()].into());
    let requests = reg.requests();
    let asked = |what: &str| requests.iter().filter(|(_, p)| p.contains(what)).count();
    assert_eq!(asked("?page=1"), 1, "{requests:#?}");
    assert_eq!(asked("/manifests/sha256-"), 0, "the tag schema was asked");
}
