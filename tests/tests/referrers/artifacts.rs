//! Buildx attestations stay inside their index and are never the host's image; an artifact
//! without a subject is kept only under a name.

use super::*;

#[tokio::test]
async fn buildx_attestations_stay_in_their_index_and_are_never_the_host_image() {
    let d = TestDaemon::start();
    // The attestation comes first in both indexes; a signature describes the image inside one.
    let (index, image, attestation, mut entries) = buildx_index("art/multi:1", "amd64").await;
    let sig = cosign_signature(&image.manifest, MANIFEST, "child");
    let mut top = json(std::str::from_utf8(&entries[1].data).unwrap());
    top["manifests"]
        .as_array_mut()
        .unwrap()
        .push(sig.descriptor());
    entries[1] = Entry::file("index.json", &serde_json::to_vec(&top).unwrap());
    entries.extend(sig.blob_entries());
    d.ok(&["load", "-i", p(&write(&d, "multi.tar", &entries).await)]);
    let (_, s390x, _, other) = buildx_index("art/s390x:1", "s390x").await;
    d.ok(&["load", "-i", p(&write(&d, "s390x.tar", &other).await)]);

    let listed = json(&d.ok(&["images", "--format", "json"]));
    let row = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["Name"] == format!("docker.io/{name}"))
            .unwrap()
            .clone()
    };
    assert_eq!(row("art/multi:1")["ID"], image.id());
    assert_eq!(
        row("art/multi:1")["Platforms"],
        serde_json::json!(["linux/amd64"])
    );
    assert_eq!(row("art/s390x:1")["ID"], s390x.id());
    assert_eq!(
        row("art/s390x:1")["Platforms"],
        serde_json::json!(["linux/s390x"])
    );
    assert_eq!(referrer_digests(&d, "art/multi:1"), [sig.digest()]);

    let mut c = client(&d).await;
    let req = v1::ReferrersRequest {
        digest: sha(&image.manifest),
        artifact_type: String::new(),
    };
    let answer = c.referrers(req).await.unwrap().into_inner().index;
    assert_eq!(
        json(std::str::from_utf8(&answer).unwrap())["manifests"][0]["digest"],
        sig.digest()
    );

    // The attestation stays inside the index, byte for byte; docker format takes the image.
    let saved = d.path("saved.tar");
    d.ok(&["save", "-f", "oci", "-o", p(&saved), "art/multi:1"]);
    let files = untar(&std::fs::read(&saved).unwrap()).await;
    assert_eq!(
        files[&format!("blobs/sha256/{}", hex_of(&sha(&index)))],
        index
    );
    assert!(files.contains_key(&format!("blobs/sha256/{}", hex_of(&sha(&attestation)))));
    assert!(files.contains_key(&format!("blobs/sha256/{}", hex_of(&sig.digest()))));
    let docker = d.path("docker.tar");
    d.ok(&[
        "save",
        "--platform",
        "linux/amd64",
        "-o",
        p(&docker),
        "art/multi:1",
    ]);
    let files = untar(&std::fs::read(&docker).unwrap()).await;
    let manifest = json(std::str::from_utf8(&files["manifest.json"]).unwrap());
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", hex_of(&image.id()))
    );
    let out = d.run(&[
        "save",
        "--platform",
        "unknown/unknown",
        "-o",
        p(&docker),
        "art/s390x:1",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("(it has: linux/s390x)"),
        "{err}"
    );

    d.ok(&["rmi", "art/multi:1"]);
    let out = d.ok(&["check"]);
    assert!(out.contains(": 0 problems, 0 unreferenced"), "{out}");
    assert!(!d.blob_files().contains(hex_of(&sig.digest())));
}

#[tokio::test]
async fn an_artifact_without_a_subject_is_kept_only_under_a_name() {
    let d = TestDaemon::start();
    let app = Image::new(&["beside chart"], "amd64", Comp::None).await;
    let chart = standalone_artifact("chart");
    let mut entries = layout(&[(&app, &[(REF_NAME, "art/app:v1")])], &[&chart]);
    let mut index = json(std::str::from_utf8(&entries[1].data).unwrap());
    index["manifests"][1]["annotations"] = serde_json::json!({REF_NAME: "chart"});
    entries[1] = Entry::file("index.json", &serde_json::to_vec(&index).unwrap());
    let f = write(&d, "chart.tar", &entries).await;
    let out = d.run(&["load", "-i", p(&f)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&chart.digest()) && err.contains("no name"),
        "{err}"
    );
    assert_eq!(d.ok(&["images", "-q"]), "");

    // Named, it is listed under that name with its own digest as ID, and goes with it.
    d.ok(&["load", "-i", p(&f), "-r", "chart:1=chart"]);
    let listed = json(&d.ok(&["images", "--format", "json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["ID"], chart.digest());
    assert_eq!(d.inspect("chart:1")["Config"], serde_json::json!({}));
    let out = d.run(&["save", "-o", p(&d.path("chart-docker.tar")), "chart:1"]);
    assert!(!out.status.success());
    let out = d.ok(&["rmi", "chart:1"]);
    assert!(
        out.contains(&format!("Deleted: {}", chart.digest())),
        "{out}"
    );
}
