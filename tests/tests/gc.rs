//! The daemon's GC policy against the real hyperd. On a small private tmpfs pushed past
//! `--gc-high`, the least recently used images go first (a save counts as a use) until the
//! filesystem is under `--gc-low`, and never a pinned image or one a lease holds, though both
//! are older; each removal is an event with its rule, one `prune` event sums the pass, and the
//! metrics count the images and bytes. `--gc-keep` keeps the tags of the newest images of each
//! repository (a pinned one keeps its own), and `--gc-max-unused` removes what went unused.
//! A low mark at or over the high one is refused before anything is touched.

use std::collections::BTreeSet;

use integration::TestDaemon;
use integration::fixtures::*;
use integration::tools::p;
use integration::wait;

use crate::content::client::{content, lease, write};
use crate::metrics::{samples, scrape_tcp, value};

const MIB: usize = 1 << 20;

/// Loads `image` as `name`.
async fn load(d: &TestDaemon, name: &str, image: &Image) {
    let archive = oci_archive(&[(image, &[("io.containerd.image.name", name)])]).await;
    let file = d.write_file(&format!("{}.tar", name.replace([':', '/'], "-")), &archive);
    d.ok(&["load", "-q", "-i", p(&file)]);
}

/// The names of the images stored, `<none>:<none>` for an untagged one.
fn names(d: &TestDaemon) -> BTreeSet<String> {
    let rows: serde_json::Value =
        serde_json::from_str(&d.ok(&["images", "--format", "json"])).unwrap();
    let rows = rows.as_array().unwrap().iter();
    rows.map(|r| {
        format!(
            "{}:{}",
            r["Repository"].as_str().unwrap(),
            r["Tag"].as_str().unwrap()
        )
    })
    .collect()
}

/// The events the policy caused (those with a `policy` attribute), once the `n`th pass that
/// did something has told its `prune`.
fn policy_events(d: &TestDaemon, n: usize) -> Vec<serde_json::Value> {
    wait::until(60, "the GC policy's prune event", || {
        let prunes = d.logged_events(&["type=prune"]);
        prunes
            .iter()
            .filter(|e| e["attributes"]["policy"].is_string())
            .count()
            >= n
    });
    d.logged_events(&[])
        .into_iter()
        .filter(|e| e["attributes"]["policy"].is_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn past_the_high_mark_the_least_recently_used_go_first_never_pinned_or_leased_ones() {
    let d = TestDaemon::start_on_small_disk_with_args(
        64,
        &[
            "--gc-high",
            "60",
            "--gc-low",
            "45",
            "--gc-min-age",
            "0s",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let mut images = Vec::new();
    for label in ["pinned", "leased", "saved", "older", "newest"] {
        images.push(noise_image(&format!("gc-{label}"), 1, 8 << 10, None).await);
    }
    // 32 of 64 MiB: under the high mark (60 %).
    for (name, image) in ["pinned:1", "leased:1", "saved:1", "older:1"]
        .iter()
        .zip(&images)
    {
        load(&d, name, image).await;
    }
    d.ok(&["pin", "pinned:1"]);
    let mut c = content(&d.socket).await;
    let held = lease(&mut c, 600).await;
    let layer = &images[1].layers[0].0;
    let answer = write(&mut c, "hold", layer, &held.id).await.unwrap();
    assert!(answer.already_stored, "{answer:?}");
    d.ok(&["save", "-o", p(&d.path("saved.tar")), "saved:1"]);
    assert_eq!(
        names(&d),
        set(&["pinned:1", "leased:1", "saved:1", "older:1"])
    );
    // The arithmetic below holds while what is not blobs (the database, the event log) takes
    // under 4 MiB of the tmpfs.
    let page = samples(&scrape_tcp(&d));
    let used = value(&page, "hyperd_store_filesystem_size_bytes")
        - value(&page, "hyperd_store_filesystem_available_bytes");
    let blobs = value(&page, "hyperd_store_blob_bytes");
    assert!(
        used - blobs < (4 * MIB) as f64,
        "{used} used, {blobs} of it blobs"
    );

    // 40 MiB is past 60 %: 45 % (28.8 MiB) needs two images gone. pinned and leased are the
    // oldest, but spared; older goes before saved, whose save made it more recent.
    load(&d, "newest:1", &images[4]).await;
    let events = policy_events(&d, 1);
    assert_eq!(names(&d), set(&["pinned:1", "leased:1", "newest:1"]));
    let deleted: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["type"] == "delete")
        .map(|e| {
            let digest = e["digest"].as_str().unwrap();
            (digest, e["attributes"]["policy"].as_str().unwrap())
        })
        .collect();
    let digest = |i: usize| sha(&images[i].manifest);
    assert_eq!(
        deleted,
        [
            (digest(3).as_str(), "watermark"),
            (digest(2).as_str(), "watermark")
        ]
    );
    let prune = events.iter().find(|e| e["type"] == "prune").unwrap();
    let attributes = &prune["attributes"];
    assert_eq!(attributes["policy"], "watermark", "{prune}");
    assert_eq!(attributes["images"], "2", "{prune}");
    let freed: u64 = attributes["bytes"].as_str().unwrap().parse().unwrap();
    let own = |i: usize| {
        let image = &images[i];
        (image.config.len() + image.manifest.len() + image.layers[0].0.len()) as u64
    };
    assert_eq!(freed, own(2) + own(3), "{prune}");

    let page = samples(&scrape_tcp(&d));
    let removed = r#"hyperd_gc_policy_removed_images_total{rule="watermark"}"#;
    assert_eq!(value(&page, removed), 2.0);
    let bytes = r#"hyperd_gc_policy_freed_bytes_total{rule="watermark"}"#;
    assert_eq!(value(&page, bytes), freed as f64);
    let size = value(&page, "hyperd_store_filesystem_size_bytes");
    let available = value(&page, "hyperd_store_filesystem_available_bytes");
    assert_eq!(size, (64 * MIB) as f64);
    assert!((size - available) / size <= 0.60, "{available} of {size}");

    // Once the lease is gone, the leased image is the oldest the policy may take: 40 MiB
    // again, and it goes first, then newest.
    c.delete_lease(hyperd_proto::v1::DeleteLeaseRequest { id: held.id })
        .await
        .unwrap();
    let big = noise_image("gc-big", 2, 8 << 10, None).await;
    load(&d, "big:1", &big).await;
    let events = policy_events(&d, 2);
    assert_eq!(names(&d), set(&["pinned:1", "big:1"]));
    let deleted: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "delete")
        .map(|e| e["digest"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deleted[2..], [digest(1), digest(4)]);
}

#[tokio::test]
async fn keep_holds_the_newest_images_of_each_repository_and_max_unused_the_recent_ones() {
    let d = TestDaemon::start_with_args(&["--gc-keep", "2", "--gc-min-age", "0s"]);
    let mut images = Vec::new();
    for i in 0..4 {
        images.push(Image::new(&[&format!("keep {i}")], "amd64", Comp::Gzip).await);
    }
    load(&d, "app:1", &images[0]).await;
    d.ok(&["pin", "app:1"]);
    load(&d, "app:2", &images[1]).await;
    d.ok(&["tag", "app:2", "other:2"]);
    load(&d, "app:3", &images[2]).await;
    // latest and 3 name one image: the repository holds three images, not four tags.
    d.ok(&["tag", "app:3", "app:latest"]);
    load(&d, "app:4", &images[3]).await;
    // app:2's image is the third most recently used in app: its app tag goes, and it stays as
    // other:2. app:1 is older still, but pinned.
    let events = policy_events(&d, 1);
    assert_eq!(
        names(&d),
        set(&["app:1", "app:3", "app:latest", "app:4", "other:2"])
    );
    let untagged: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "untag")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(untagged, ["app:2"]);
    assert!(events.iter().all(|e| e["type"] != "delete"), "{events:?}");

    // max-unused: what was not used for 3 s goes at the next pass; a pinned image stays.
    drop(d);
    let d = TestDaemon::start_with_args(&["--gc-max-unused", "3s", "--gc-min-age", "0s"]);
    let archive = oci_archive(&[
        (&images[0], &[("io.containerd.image.name", "old:1")]),
        (&images[1], &[("io.containerd.image.name", "kept:1")]),
    ])
    .await;
    d.ok(&["load", "-q", "-i", p(&d.write_file("two.tar", &archive))]);
    d.ok(&["pin", "kept:1"]);
    std::thread::sleep(std::time::Duration::from_secs(4));
    load(&d, "fresh:1", &images[2]).await;
    let events = policy_events(&d, 1);
    assert_eq!(names(&d), set(&["kept:1", "fresh:1"]));
    let deleted = events.iter().find(|e| e["type"] == "delete").unwrap();
    assert_eq!(deleted["attributes"]["policy"], "unused");
    assert_eq!(deleted["digest"], sha(&images[0].manifest));
}

#[test]
fn a_low_mark_at_or_over_the_high_one_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(integration::bin("hyperd"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .args(["--gc-high", "50", "--gc-low", "50"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--gc-low (50) must be under --gc-high (50)"),
        "{err}"
    );
    assert!(!dir.path().join("root").exists(), "{err}");
}
