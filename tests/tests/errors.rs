//! What the CLI says and exits with when things go wrong; the daemon keeps serving.

use integration::TestDaemon;
use integration::fixtures::*;
use integration::tools::stderr;

#[test]
fn a_daemon_that_is_not_running_is_reported_with_exit_code_4() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(integration::bin("hyperctl"))
        .args([
            "--socket",
            dir.path().join("none.sock").to_str().unwrap(),
            "images",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.starts_with("Error: cannot connect to hyperd at") && err.contains("Is hyperd running?"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[tokio::test]
async fn rmi_goes_on_past_missing_images_and_exits_3() {
    let d = TestDaemon::start();
    let img = Image::new(&["rmi"], "amd64", Comp::None).await;
    let f = d.path("a.tar");
    std::fs::write(&f, docker_archive(&[(&img, &["a:1"])]).await).unwrap();
    d.ok(&["load", "-i", f.to_str().unwrap()]);
    let out = d.run(&["rmi", "nope:1", "a:1"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "Error: no such image: nope:1\n");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Untagged: a:1"));
    assert_eq!(d.ok(&["images", "-q"]), "");
}

#[tokio::test]
async fn a_bad_archive_names_the_cause_and_changes_nothing() {
    let d = TestDaemon::start();
    let img = Image::new(&["bad"], "amd64", Comp::None).await;
    let mut entries = oci_entries(&[(&img, &[("io.containerd.image.name", "bad:1")])]);
    entries.last_mut().unwrap().data[700] ^= 1;
    let f = d.path("bad.tar");
    std::fs::write(&f, tar(&entries).await).unwrap();
    let out = d.run(&["load", "-i", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("digest mismatch") && err.contains(&sha(&img.layers[0].0)),
        "{err}"
    );
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(
        std::fs::read_dir(d.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(std::fs::read_dir(d.root.join("ingest")).unwrap().count(), 0);
    // Still serving.
    d.ok(&["images"]);
}

#[tokio::test]
async fn usage_errors_exit_2_and_bad_names_are_refused() {
    let d = TestDaemon::start();
    assert_eq!(d.run(&["save"]).status.code(), Some(2));
    assert_eq!(d.run(&["frobnicate"]).status.code(), Some(2));
    let out = d.run(&["load", "-i", "/nonexistent/archive.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("opening /nonexistent/archive.tar"),
        "{}",
        stderr(&out)
    );
    let out = d.run(&["tag", "x:1", "NOT VALID"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid reference"),
        "{}",
        stderr(&out)
    );
    let out = d.run(&["save", "-o", d.path("x.tar").to_str().unwrap(), "missing:1"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !d.path("x.tar").exists(),
        "no file is left for a failed save"
    );
}

#[tokio::test]
async fn a_load_map_naming_an_absent_ref_is_not_found() {
    let d = TestDaemon::start();
    let img = Image::new(&["map"], "amd64", Comp::None).await;
    let f = d.path("m.tar");
    std::fs::write(
        &f,
        oci_archive(&[(&img, &[("org.opencontainers.image.ref.name", "hello")])]).await,
    )
    .unwrap();
    let out = d.run(&["load", "-i", f.to_str().unwrap(), "-r", "x:1=world"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("no image with ref name \"world\""),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn every_call_answers_a_store_whose_tag_points_at_a_missing_record() {
    let mut d = TestDaemon::start();
    let img = Image::new(&["dangling"], "amd64", Comp::None).await;
    let f = d.path("a.tar");
    std::fs::write(&f, docker_archive(&[(&img, &["a:1"])]).await).unwrap();
    d.ok(&["load", "-i", f.to_str().unwrap()]);
    d.kill();
    integration::damage::drop_record(&d.root, "docker.io/library/a:1");
    d.restart();
    let pid = d.pid();

    assert_eq!(d.ok(&["images", "-q"]), "");
    for args in [
        &["inspect", "a:1"][..],
        &["save", "-o", d.path("out.tar").to_str().unwrap(), "a:1"],
        &["tag", "a:1", "b:1"],
    ] {
        let out = d.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains("damaged store") && stderr(&out).contains("has no record"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let check = d.run(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("tag docker.io/library/a:1 points at missing image")
    );
    assert!(d.ok(&["version"]).contains("Server: hyperd"));
    let other = Image::new(&["other"], "amd64", Comp::None).await;
    let g = d.path("b.tar");
    std::fs::write(&g, docker_archive(&[(&other, &["c:1"])]).await).unwrap();
    d.ok(&["load", "-i", g.to_str().unwrap()]);

    // Removing the tag repairs the store.
    assert_eq!(d.ok(&["rmi", "a:1"]), "Untagged: a:1\n");
    assert!(d.ok(&["check"]).contains("0 problems"));
    assert_eq!(d.pid(), pid, "hyperd restarted");
    assert!(!d.log().contains("panicked"), "{}", d.log());
}
