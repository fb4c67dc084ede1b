//! OCI 1.1 referrers against the real daemon: signatures, SBOMs and a signature of an SBOM load
//! with their image and never as images, show in inspect and the Referrers RPC, travel in OCI
//! saves that skopeo and umoci read, go with their image, and never arrive without it. Buildx
//! attestations and artifacts without a subject are in `artifacts.rs`.

use hyperd_proto::tonic::Code;
use hyperd_proto::v1;
use integration::artifacts::*;
use integration::fixtures::*;
use integration::tools::{cmd, p, sh, skopeo_digests};
use integration::{TestDaemon, damage};
use serde_json::Value;

mod artifacts;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image named `art/app:v1`, its cosign signature, its SBOM and a signature of the SBOM.
struct Signed {
    app: Image,
    sig: Artifact,
    sbom: Artifact,
    sbom_sig: Artifact,
}

async fn signed(seed: &str) -> Signed {
    let app = Image::new(&[seed], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, MANIFEST, seed);
    let sbom = spdx_sbom(&app.manifest, MANIFEST);
    let sbom_sig = cosign_signature(&sbom.manifest, MANIFEST, &format!("{seed} sbom"));
    Signed {
        app,
        sig,
        sbom,
        sbom_sig,
    }
}

async fn write(d: &TestDaemon, name: &str, entries: &[Entry]) -> std::path::PathBuf {
    d.write_file(name, &tar(entries).await)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

fn referrer_digests(d: &TestDaemon, image: &str) -> Vec<String> {
    let refs = d.inspect(image)["Referrers"].clone();
    let refs = refs.as_array().unwrap();
    refs.iter()
        .map(|r| r["Digest"].as_str().unwrap().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn client(d: &TestDaemon) -> integration::grpc::Images {
    integration::grpc::images(&d.socket).await
}

#[tokio::test]
async fn signatures_and_sboms_travel_with_their_image_through_save_rmi_and_load() {
    let d = TestDaemon::start();
    let s = signed("art app").await;
    let name = [(REF_NAME, "art/app:v1")];
    let entries = layout(&[(&s.app, &name)], &[&s.sig, &s.sbom, &s.sbom_sig]);
    let f = write(&d, "art.tar", &entries).await;
    assert_eq!(d.ok(&["load", "-i", p(&f)]), "Loaded image: art/app:v1\n");

    // One image; no artifact is ever listed.
    let listed = json(&d.ok(&["images", "--format", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["ID"], s.app.id());

    let direct = sorted(vec![s.sig.digest(), s.sbom.digest()]);
    let all = [direct.clone(), vec![s.sbom_sig.digest()]].concat();
    let before = referrer_digests(&d, "art/app:v1");
    assert_eq!(before, all);
    let info = d.inspect("art/app:v1");
    let sbom = info["Referrers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["Digest"] == s.sbom.digest())
        .unwrap()
        .clone();
    assert_eq!(sbom["ArtifactType"], SPDX);
    assert_eq!(sbom["Size"], s.sbom.manifest.len());
    assert_eq!(sbom["Subject"], sha(&s.app.manifest));
    assert_eq!(sbom["Annotations"]["org.example.sbom.format"], "spdx");
    let sig = &info["Referrers"][2];
    assert_eq!(sig["ArtifactType"], EMPTY);
    assert_eq!(sig["Subject"], s.sbom.digest());

    // The OCI save carries all three, unnamed, with their artifactType.
    let saved = d.path("saved.tar");
    d.ok(&[
        "save",
        "-f",
        "oci",
        "-r",
        "art/app:v1=v1",
        "-o",
        p(&saved),
        "art/app:v1",
    ]);
    let files = untar(&std::fs::read(&saved).unwrap()).await;
    let index = json(std::str::from_utf8(&files["index.json"]).unwrap());
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 4, "{index}");
    assert_eq!(manifests[0]["annotations"][REF_NAME], "v1");
    let listed: Vec<String> = manifests[1..]
        .iter()
        .map(|m| {
            assert!(
                m.get("annotations")
                    .is_none_or(|a| a.get(REF_NAME).is_none()),
                "{m}"
            );
            let want = if m["digest"] == s.sbom.digest() {
                SPDX
            } else {
                EMPTY
            };
            assert_eq!(m["artifactType"], want, "{m}");
            m["digest"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(listed, all);
    for a in [&s.sig, &s.sbom, &s.sbom_sig] {
        for e in a.blob_entries() {
            assert_eq!(files[&e.path], e.data, "{}", e.path);
        }
    }

    // skopeo and umoci read the layout as before.
    let archive = format!("oci-archive:{}:v1", p(&saved));
    assert_eq!(skopeo_digests(&archive), (sha(&s.app.manifest), s.app.id()));
    let unpacked = d.path("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    sh(&mut cmd("tar", &["-xf", p(&saved), "-C", p(&unpacked)]));
    sh(&mut cmd(
        "umoci",
        &["stat", "--image", &format!("{}:v1", p(&unpacked))],
    ));

    // Removing the image removes its referrers and every blob with them.
    let out = d.ok(&["rmi", "art/app:v1"]);
    for r in &all {
        assert!(out.contains(&format!("Deleted referrer: {r}")), "{out}");
    }
    assert!(d.blob_files().is_empty(), "{:?}", d.blob_files());

    // Loaded back, every referrer is there with the same digest.
    assert_eq!(
        d.ok(&["load", "-i", p(&saved)]),
        "Loaded image: art/app:v1\n"
    );
    assert_eq!(referrer_digests(&d, "art/app:v1"), before);
    let out = d.ok(&["check"]);
    assert!(out.contains(": 0 problems, 0 unreferenced"), "{out}");

    // --no-referrers leaves them out; docker format cannot carry them and says so.
    let bare = d.path("bare.tar");
    d.ok(&[
        "save",
        "-f",
        "oci",
        "--no-referrers",
        "-o",
        p(&bare),
        "art/app:v1",
    ]);
    let files = untar(&std::fs::read(&bare).unwrap()).await;
    let index = json(std::str::from_utf8(&files["index.json"]).unwrap());
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert!(!files.contains_key(&format!("blobs/sha256/{}", hex_of(&s.sbom.digest()))));
    let docker = d.path("docker.tar");
    let out = d.run(&["save", "-o", p(&docker), "art/app:v1"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("3 referrers of art/app:v1 left out"), "{err}");
}

#[tokio::test]
async fn a_referrer_may_follow_its_image_but_never_arrive_without_it() {
    let d = TestDaemon::start();
    let s = signed("later").await;
    let name = [(REF_NAME, "art/app:v1")];
    let f = write(&d, "app.tar", &layout(&[(&s.app, &name)], &[])).await;
    d.ok(&["load", "-i", p(&f)]);
    assert!(referrer_digests(&d, "art/app:v1").is_empty());

    // The SBOM alone: its subject is stored.
    let f = write(&d, "sbom.tar", &layout(&[], &[&s.sbom])).await;
    assert_eq!(d.ok(&["load", "-i", p(&f)]), "");
    assert_eq!(referrer_digests(&d, "art/app:v1"), [s.sbom.digest()]);

    // A signature of an SBOM that is neither stored nor in the archive is refused, and so is
    // the whole archive with it: nothing changes.
    let other = spdx_sbom(b"some other manifest", MANIFEST);
    let stray = cosign_signature(&other.manifest, MANIFEST, "stray");
    let new = Image::new(&["later new"], "amd64", Comp::None).await;
    let new_name = [(REF_NAME, "art/new:v1")];
    let f = write(&d, "stray.tar", &layout(&[(&new, &new_name)], &[&stray])).await;
    let blobs = d.blob_files();
    let out = d.run(&["load", "-i", p(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&stray.digest())
            && err.contains(&other.digest())
            && err.contains("neither stored nor in the archive"),
        "{err}"
    );
    assert_eq!(d.blob_files(), blobs);
    let listed = json(&d.ok(&["images", "--format", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(referrer_digests(&d, "art/app:v1"), [s.sbom.digest()]);

    // With its SBOM in the archive, the same signature loads.
    let f = write(&d, "chain.tar", &layout(&[], &[&s.sbom, &s.sbom_sig])).await;
    d.ok(&["load", "-i", p(&f)]);
    assert_eq!(
        referrer_digests(&d, "art/app:v1"),
        [s.sbom.digest(), s.sbom_sig.digest()]
    );
    // -r picks images, and their referrers come along; a referrer takes no name.
    let mut entries = layout(&[(&s.app, &name)], &[&s.sig]);
    let mut index = json(std::str::from_utf8(&entries[1].data).unwrap());
    index["manifests"][1]["annotations"] = serde_json::json!({REF_NAME: "sig"});
    entries[1] = Entry::file("index.json", &serde_json::to_vec(&index).unwrap());
    let f = write(&d, "named.tar", &entries).await;
    let out = d.run(&["load", "-i", p(&f), "-r", "s:1=sig"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is a referrer"),
        "{err}"
    );
    d.ok(&["load", "-i", p(&f), "-r", "picked:1=art/app:v1"]);
    assert_eq!(referrer_digests(&d, "picked:1").len(), 3);
}

#[tokio::test]
async fn the_referrers_rpc_answers_as_the_distribution_spec_does() {
    let d = TestDaemon::start();
    let s = signed("rpc").await;
    let name = [(REF_NAME, "art/app:v1")];
    let entries = layout(&[(&s.app, &name)], &[&s.sig, &s.sbom, &s.sbom_sig]);
    d.ok(&["load", "-i", p(&write(&d, "rpc.tar", &entries).await)]);
    let mut c = client(&d).await;
    let mut ask = async |digest: &str, artifact_type: &str| {
        let req = v1::ReferrersRequest {
            digest: digest.into(),
            artifact_type: artifact_type.into(),
        };
        c.referrers(req)
            .await
            .map(|r| json(std::str::from_utf8(&r.into_inner().index).unwrap()))
    };
    let app = sha(&s.app.manifest);
    let index = ask(&app, "").await.unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], INDEX);
    let digests: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, sorted(vec![s.sig.digest(), s.sbom.digest()]));
    let sboms = ask(&app, SPDX).await.unwrap();
    assert_eq!(
        sboms["manifests"],
        serde_json::json!([{
            "mediaType": MANIFEST,
            "digest": s.sbom.digest(),
            "size": s.sbom.manifest.len(),
            "artifactType": SPDX,
            "annotations": {"org.example.sbom.format": "spdx"},
        }])
    );
    let sigs = ask(&app, EMPTY).await.unwrap();
    assert_eq!(sigs["manifests"][0]["digest"], s.sig.digest());
    assert_eq!(sigs["manifests"].as_array().unwrap().len(), 1);
    let of_sbom = ask(&s.sbom.digest(), "").await.unwrap();
    assert_eq!(of_sbom["manifests"][0]["digest"], s.sbom_sig.digest());
    let none = ask(&s.sig.digest(), "").await.unwrap();
    assert_eq!(none["manifests"], serde_json::json!([]));
    let absent = ask(&sha(b"never stored"), "").await.unwrap_err();
    assert_eq!(absent.code(), Code::NotFound, "{absent:?}");
    // A layer is no manifest.
    let layer = ask(&sha(&s.app.layers[0].0), "").await.unwrap_err();
    assert_eq!(layer.code(), Code::NotFound, "{layer:?}");
    let bad = ask("sha256:nope", "").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
}

#[tokio::test]
async fn check_reports_a_referrer_whose_subject_is_gone_and_rmi_of_the_tag_repairs_it() {
    let mut d = TestDaemon::start();
    let s = signed("damaged").await;
    let name = [(REF_NAME, "art/app:v1")];
    let entries = layout(&[(&s.app, &name)], &[&s.sig]);
    d.ok(&["load", "-i", p(&write(&d, "damaged.tar", &entries).await)]);
    d.kill();
    damage::drop_record(&d.root, "docker.io/art/app:v1");
    d.restart();
    let out = d.run(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    let want = format!(
        "problem: referrer {} describes {}, which is no longer stored",
        s.sig.digest(),
        sha(&s.app.manifest)
    );
    assert!(text.contains(&want), "{text}");
    let out = d.ok(&["rmi", "art/app:v1"]);
    assert!(
        out.contains(&format!("Deleted referrer: {}", s.sig.digest())),
        "{out}"
    );
    let out = d.ok(&["check"]);
    assert!(out.contains(": 0 problems, 0 unreferenced"), "{out}");
    assert!(d.blob_files().is_empty());
}
