//! `--registry-htpasswd`: only the file's users, by basic auth, on every endpoint; skopeo pulls
//! with their credentials; only the users `--registry-push-user` names push; a file with other
//! than bcrypt entries stops hyperd at start.

use integration::fixtures::*;
use integration::serve::{registry_addr, request, send};
use integration::tools::{cmd, p, sh};
use integration::{TestDaemon, bin};

fn htpasswd(args: &[&str]) -> String {
    sh(&mut cmd("htpasswd", args))
}

#[tokio::test]
async fn only_users_of_the_htpasswd_file_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, htpasswd(&["-nbB", "ann", "secret"])).unwrap();
    let d = TestDaemon::start_with_args(&[
        "--registry-listen",
        "127.0.0.1:0",
        "--registry-htpasswd",
        p(&file),
    ]);
    let app = Image::new(&["serve auth"], "amd64", Comp::Gzip).await;
    let archive = oci_archive(&[(&app, &[("org.opencontainers.image.ref.name", "app:1")])]).await;
    d.ok(&["load", "-i", p(&d.write_file("app.tar", &archive))]);
    let addr = registry_addr(&d);
    let manifest = format!("http://{addr}/v2/app/manifests/1");
    for (url, auth) in [
        (format!("http://{addr}/v2/"), None),
        (manifest.clone(), None),
        (manifest.clone(), Some(basic("ann:wrong"))),
        (manifest.clone(), Some(basic("bob:secret"))),
    ] {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        let r = request("GET", &url, &headers);
        assert_eq!(r.status, 401, "{url} {auth:?}");
        assert_eq!(r.code(), "UNAUTHORIZED");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"hyperd\""));
    }
    let ok = request("GET", &manifest, &[("Authorization", &basic("ann:secret"))]);
    assert_eq!((ok.status, &ok.body), (200, &app.manifest));

    let inspect = sh(&mut cmd(
        "skopeo",
        &[
            "inspect",
            "--no-tags",
            "--tls-verify=false",
            "--creds",
            "ann:secret",
            &format!("docker://{addr}/app:1"),
        ],
    ));
    let inspect: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspect["Digest"], sha(&app.manifest).as_str());
}

fn basic(creds: &str) -> String {
    let out = sh(&mut cmd(
        "sh",
        &["-c", &format!("printf %s '{creds}' | base64 -w0")],
    ));
    format!("Basic {out}")
}

#[tokio::test]
async fn only_the_named_users_push() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    let users = [
        htpasswd(&["-nbB", "ann", "secret"]),
        htpasswd(&["-nbB", "bob", "secret"]),
    ];
    std::fs::write(&file, users.concat()).unwrap();
    let d = TestDaemon::start_with_args(&[
        "--registry-listen",
        "127.0.0.1:0",
        "--registry-htpasswd",
        p(&file),
        "--registry-push",
        "--registry-push-user",
        "ann",
    ]);
    let blob = b"pushed with rights".to_vec();
    let url = format!(
        "http://{}/v2/app/blobs/uploads/?digest={}",
        registry_addr(&d),
        sha(&blob)
    );
    let none = send("POST", &url, &[], &blob);
    assert_eq!((none.status, none.code().as_str()), (401, "UNAUTHORIZED"));
    let bob = send(
        "POST",
        &url,
        &[("Authorization", &basic("bob:secret"))],
        &blob,
    );
    assert_eq!((bob.status, bob.code().as_str()), (403, "DENIED"));
    let ann = send(
        "POST",
        &url,
        &[("Authorization", &basic("ann:secret"))],
        &blob,
    );
    assert_eq!(ann.status, 201, "{ann:?}");
    // bob still reads what ann pushed, as every user of the file may.
    let read = request(
        "GET",
        &url.replace("/uploads/", "/").replace("?digest=", ""),
        &[("Authorization", &basic("bob:secret"))],
    );
    assert_eq!((read.status, read.body), (200, blob));
}

#[test]
fn an_htpasswd_file_with_other_hashes_stops_hyperd_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("htpasswd");
    std::fs::write(&file, htpasswd(&["-nbm", "ann", "secret"])).unwrap();
    let out = std::process::Command::new(bin("hyperd"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .args([
            "--registry-listen",
            "127.0.0.1:0",
            "--registry-htpasswd",
            p(&file),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("htpasswd -B"), "{stderr}");
}
