//! `--registry-push`: skopeo copies into hyperd and `hyperctl images` lists what it pushed,
//! with the digests it had; an index travels whole, its children by digest first. Then the
//! spec's push category by hand: monolithic, chunked and mounted uploads, manifests by tag and
//! by digest, and what each refuses.

use integration::TestDaemon;
use integration::artifacts::*;
use integration::fixtures::*;
use integration::serve::{PUSHER, Reply, registry_addr, request, send, taking_pushes};
use integration::tools::{cmd, p, sh};
use serde_json::Value;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A daemon taking pushes, and its endpoint's base URL with the pusher's credentials in it
/// (curl sends them as basic auth).
fn pushing() -> (TestDaemon, String) {
    let d = taking_pushes();
    let base = format!("http://{PUSHER}@{}", registry_addr(&d));
    (d, base)
}

fn images(d: &TestDaemon) -> Vec<Value> {
    let json: Value = serde_json::from_str(&d.ok(&["images", "--format", "json"])).unwrap();
    json.as_array().unwrap().clone()
}

fn row<'a>(rows: &'a [Value], repository: &str, tag: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["Repository"] == repository && r["Tag"] == tag)
        .unwrap_or_else(|| panic!("no {repository}:{tag} in {rows:?}"))
}

fn skopeo_copy(args: &[&str]) {
    let mut all = vec![
        "copy",
        "-q",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--src-creds",
        PUSHER,
        "--dest-creds",
        PUSHER,
    ];
    all.extend(args);
    sh(&mut cmd("skopeo", &all));
}

#[tokio::test]
async fn skopeo_pushes_into_hyperd_and_hyperctl_lists_it() {
    let (d, _) = pushing();
    let addr = registry_addr(&d);
    let app = Image::new(&["push skopeo a", "push skopeo b"], "amd64", Comp::Gzip).await;
    let archive = d.write_file(
        "app.tar",
        &oci_archive(&[(&app, &[(REF_NAME, "app:1")])]).await,
    );
    skopeo_copy(&[
        &format!("oci-archive:{}:app:1", p(&archive)),
        &format!("docker://{addr}/pushed:1"),
    ]);
    let rows = images(&d);
    let pushed = row(&rows, "pushed", "1");
    assert_eq!(pushed["Digest"], sha(&app.manifest).as_str());
    assert_eq!(pushed["ID"], app.id().as_str());

    // An index: its children go first by digest, then the index by tag; one image is stored.
    let (entries, _, _, inner) = multi_platform("docker.io/library/multi:1").await;
    d.ok(&[
        "load",
        "-i",
        p(&d.write_file("multi.tar", &tar(&entries).await)),
    ]);
    skopeo_copy(&[
        "--all",
        &format!("docker://{addr}/multi:1"),
        &format!("docker://{addr}/copied:1"),
    ]);
    let rows = images(&d);
    assert_eq!(row(&rows, "copied", "1")["Digest"], sha(&inner).as_str());
    assert_eq!(rows.len(), 3, "no image of a child left behind: {rows:?}");

    // What was pushed is served back as it was sent.
    let back = d.path("back");
    skopeo_copy(&[
        &format!("docker://{addr}/pushed:1"),
        &format!("oci:{}:x", p(&back)),
    ]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], sha(&app.manifest).as_str());
}

/// `POST` then `PUT` with the whole blob.
fn upload(base: &str, name: &str, bytes: &[u8]) -> Reply {
    let started = send(
        "POST",
        &format!("{base}/v2/{name}/blobs/uploads/"),
        &[],
        b"",
    );
    assert_eq!(started.status, 202, "{started:?}");
    let location = started.header("location").unwrap();
    send(
        "PUT",
        &format!("{base}{location}?digest={}", sha(bytes)),
        &[],
        bytes,
    )
}

fn blob_status(base: &str, name: &str, bytes: &[u8]) -> u16 {
    request(
        "HEAD",
        &format!("{base}/v2/{name}/blobs/{}", sha(bytes)),
        &[],
    )
    .status
}

#[tokio::test]
async fn uploads_whole_in_chunks_and_mounted() {
    let (_d, base) = pushing();
    let url = |path: &str| format!("{base}{path}");

    // Monolithic: one POST with the digest.
    let one = b"a blob in one request".to_vec();
    let r = send(
        "POST",
        &url(&format!("/v2/a/blobs/uploads/?digest={}", sha(&one))),
        &[],
        &one,
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(sha(&one).as_str()));
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/a/blobs/{}", sha(&one)).as_str())
    );
    assert_eq!(blob_status(&base, "a", &one), 200);
    assert_eq!(
        blob_status(&base, "b", &one),
        404,
        "another name does not see it"
    );

    // POST, then PUT with all of it.
    let two = b"a blob in a PUT".to_vec();
    assert_eq!(upload(&base, "a", &two).status, 201);

    // Chunked: POST, PATCH, PATCH, status, PUT with no body.
    let three = noise("push chunks", 3 << 20);
    let r = send("POST", &url("/v2/a/blobs/uploads/"), &[], b"");
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(r.header("range"), Some("0-0"));
    let first = send(
        "PATCH",
        &url(&location),
        &[("Content-Range", "0-1048575")],
        &three[..1 << 20],
    );
    assert_eq!(
        (first.status, first.header("range")),
        (202, Some("0-1048575"))
    );
    let late = send(
        "PATCH",
        &url(&location),
        &[("Content-Range", "0-9")],
        &three[..10],
    );
    assert_eq!(
        (late.status, late.code().as_str()),
        (416, "BLOB_UPLOAD_INVALID")
    );
    let rest = send("PATCH", &url(&location), &[], &three[1 << 20..]);
    assert_eq!(rest.status, 202);
    let status = request("GET", &url(&location), &[]);
    assert_eq!(
        (status.status, status.header("range")),
        (204, Some("0-3145727"))
    );
    let other_name = location.replacen("/v2/a/", "/v2/b/", 1);
    let r = request("GET", &url(&other_name), &[]);
    assert_eq!((r.status, r.code().as_str()), (404, "BLOB_UPLOAD_UNKNOWN"));
    let done = send(
        "PUT",
        &url(&format!("{location}?digest={}", sha(&three))),
        &[],
        b"",
    );
    assert_eq!(done.status, 201, "{done:?}");
    let r = request("GET", &url(&format!("/v2/a/blobs/{}", sha(&three))), &[]);
    assert_eq!((r.status, r.body == three), (200, true));
    let r = request("GET", &url(&location), &[]);
    assert_eq!((r.status, r.code().as_str()), (404, "BLOB_UPLOAD_UNKNOWN"));

    // The wrong digest stores nothing; a cancelled upload is gone.
    let four = b"bytes that are not what they claim".to_vec();
    let r = send(
        "POST",
        &url(&format!("/v2/a/blobs/uploads/?digest={}", sha(b"x"))),
        &[],
        &four,
    );
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    assert_eq!(blob_status(&base, "a", &four), 404);
    let r = send("POST", &url("/v2/a/blobs/uploads/"), &[], b"");
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(request("DELETE", &url(&location), &[]).status, 204);
    let r = send("PATCH", &url(&location), &[], b"late");
    assert_eq!((r.status, r.code().as_str()), (404, "BLOB_UPLOAD_UNKNOWN"));

    // A mount from a repository that has the blob; from one that has not, an upload instead.
    let mount = |from: &str| {
        send(
            "POST",
            &url(&format!(
                "/v2/c/blobs/uploads/?mount={}&from={from}",
                sha(&one)
            )),
            &[],
            b"",
        )
    };
    let r = mount("b");
    assert_eq!(r.status, 202, "b never had it: {r:?}");
    assert_eq!(blob_status(&base, "c", &one), 404);
    let r = mount("a");
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(sha(&one).as_str()));
    assert_eq!(blob_status(&base, "c", &one), 200);
}

#[tokio::test]
async fn manifests_by_tag_and_by_digest() {
    let (d, base) = pushing();
    let url = |path: &str| format!("{base}{path}");
    let app = Image::new(&["push manifest"], "amd64", Comp::Gzip).await;
    let put = |reference: &str, body: &[u8]| {
        send(
            "PUT",
            &url(&format!("/v2/app/manifests/{reference}")),
            &[("Content-Type", OCI_MANIFEST)],
            body,
        )
    };
    // Before its blobs: refused, and nothing is named.
    let r = put("1", &app.manifest);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(["MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID"].contains(&r.code().as_str()));
    assert!(images(&d).is_empty());

    // Blobs stored, but pushed to another repository: naming them reaches nothing.
    assert_eq!(upload(&base, "elsewhere", &app.config).status, 201);
    for (layer, _) in &app.layers {
        assert_eq!(upload(&base, "elsewhere", layer).status, 201);
    }
    let r = put("1", &app.manifest);
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    assert_eq!(blob_status(&base, "app", &app.config), 404);

    assert_eq!(upload(&base, "app", &app.config).status, 201);
    for (layer, _) in &app.layers {
        assert_eq!(upload(&base, "app", layer).status, 201);
    }
    let r = put("1", &app.manifest);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.header("docker-content-digest"),
        Some(sha(&app.manifest).as_str())
    );
    let location = format!("/v2/app/manifests/{}", sha(&app.manifest));
    assert_eq!(r.header("location"), Some(location.as_str()));
    let got = request("GET", &url("/v2/app/manifests/1"), &[]);
    assert_eq!((got.status, got.body == app.manifest), (200, true));
    assert_eq!(row(&images(&d), "app", "1")["ID"], app.id().as_str());

    let r = put(&sha(b"other"), &app.manifest);
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    let r = put("-bad", &app.manifest);
    assert_eq!((r.status, r.code().as_str()), (400, "TAG_INVALID"));
    let r = put("2", b"{not json");
    assert_eq!((r.status, r.code().as_str()), (400, "MANIFEST_INVALID"));
    let r = put(&sha(&app.config), &app.config);
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "MANIFEST_INVALID"),
        "a config is no manifest"
    );
    let r = put("2", &vec![b' '; 5 << 20]);
    assert_eq!((r.status, r.code().as_str()), (413, "SIZE_INVALID"));

    // By digest with a subject: a referrer, found by the referrers API.
    let sig = cosign_signature(&app.manifest, OCI_MANIFEST, "push");
    for blob in &sig.blobs {
        assert_eq!(upload(&base, "app", blob).status, 201);
    }
    let r = put(&sig.digest(), &sig.manifest);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("oci-subject"), Some(sha(&app.manifest).as_str()));
    let listed = request(
        "GET",
        &url(&format!("/v2/app/referrers/{}", sha(&app.manifest))),
        &[],
    );
    assert_eq!(
        listed.json()["manifests"][0]["digest"],
        sig.digest().as_str()
    );
    assert_eq!(images(&d).len(), 1, "a referrer is no image");
}

#[tokio::test]
async fn another_hyperd_pushes_an_image_with_its_referrers() {
    let (target, _) = pushing();
    let addr = registry_addr(&target);
    let app = Image::new(&["push hyperd"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, OCI_MANIFEST, "push hyperd");
    let source = TestDaemon::start();
    let entries = layout(&[(&app, &[(REF_NAME, "team/app:1")])], &[&sig]);
    source.ok(&[
        "load",
        "-i",
        p(&source.write_file("app.tar", &tar(&entries).await)),
    ]);
    let name = format!("{addr}/team/app:1");
    source.ok(&["tag", "team/app:1", &name]);
    source.ok(&["login", &addr, "-u", "ann", "-p", "secret"]);
    let out = source.ok(&["push", &name]);
    assert!(out.contains("Pushed 1 referrer"), "{out}");

    let inspect = target.inspect("team/app:1");
    assert_eq!(inspect["Digest"], sha(&app.manifest).as_str());
    assert_eq!(inspect["Referrers"][0]["Digest"], sig.digest().as_str());
}
