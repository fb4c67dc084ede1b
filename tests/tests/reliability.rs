//! Crashes, a full disk, hostile input on stdin and many clients at once: nothing half-done is
//! ever visible, and the daemon keeps serving.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use hyperd_proto::v1;
use integration::TestDaemon;
use integration::fixtures::*;
use integration::grpc::{images, load_messages};
use integration::tools::p;

fn assert_clean(d: &TestDaemon) {
    let out = d.ok(&["check"]);
    assert!(out.contains(": 0 problems, 0 unreferenced"), "{out}");
}

#[tokio::test]
async fn a_full_disk_fails_the_load_cleanly_and_frees_its_space() {
    let d = TestDaemon::start_on_small_disk(24);
    let big = noise_image("full-big", 4, 8 << 10, None).await;
    let small = noise_image("full-small", 2, 8 << 10, None).await;
    let big_f = d.write_file(
        "big.tar",
        &oci_archive(&[(&big, &[("io.containerd.image.name", "big:1")])]).await,
    );
    let small_f = d.write_file(
        "small.tar",
        &oci_archive(&[(&small, &[("io.containerd.image.name", "small:1")])]).await,
    );

    let out = d.run(&["load", "-i", p(&big_f)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_clean(&d);
    // 16 of 24 MiB fit only if the failed load's 32 MiB left nothing behind.
    assert_eq!(
        d.ok(&["load", "-i", p(&small_f)]),
        "Loaded image: small:1\n"
    );
    assert_clean(&d);
}

/// A tiny deterministic generator, so a failing round can be replayed from its seed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn sigkill_at_random_points_never_leaves_a_half_image() {
    let mut d = TestDaemon::start();
    let keep = noise_image("crash-keep", 2, 1 << 10, None).await;
    let keep_f = d.write_file(
        "keep.tar",
        &oci_archive(&[(&keep, &[("io.containerd.image.name", "keep:1")])]).await,
    );
    d.ok(&["load", "-i", p(&keep_f)]);
    let seed = 0x5eed_u64;
    let mut rng = Lcg(seed);
    for round in 0..12 {
        let img = noise_image(&format!("crash-{round}"), 4, 4 << 10, None).await;
        let name = format!("crash{round}:1");
        let f = d.write_file(
            &format!("r{round}.tar"),
            &oci_archive(&[(&img, &[("io.containerd.image.name", &name)])]).await,
        );
        // Rounds kill a load, a save, or a removal (and the collection it runs), in turn.
        let mut client = match round % 4 {
            3 => d
                .ctl()
                .args([
                    "save",
                    "-f",
                    "oci",
                    "-o",
                    d.path("s.tar").to_str().unwrap(),
                    "keep:1",
                ])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
            2 => {
                d.ok(&["load", "-q", "-i", p(&f)]);
                d.ctl()
                    .args(["rmi", &name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            }
            _ => d
                .ctl()
                .args(["load", "-q", "-i", p(&f)])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        };
        let delay = rng.below(250);
        std::thread::sleep(Duration::from_millis(delay));
        d.kill();
        let _ = client.wait();
        d.restart();

        let listed = d.ok(&["images", "--format", "json"]);
        let context = format!("round {round} (seed {seed:#x}, killed after {delay} ms): {listed}");
        assert!(listed.contains("keep"), "{context}");
        assert_clean(&d);
        if listed.contains(&format!("crash{round}")) {
            // Listed means whole: every blob is there and verifies.
            let out = d.run(&[
                "save",
                "-f",
                "oci",
                "-o",
                d.path("check.tar").to_str().unwrap(),
                &name,
            ]);
            assert!(out.status.success(), "{context}");
            d.ok(&["rmi", &name]);
        }
    }
    d.ok(&["rmi", "keep:1"]);
    assert_clean(&d);
}

#[tokio::test]
async fn hostile_input_on_stdin_is_refused_and_the_daemon_serves_on() {
    let d = TestDaemon::start();
    let img = noise_image("hostile", 1, 16, None).await;
    let mut entries = oci_entries(&[(&img, &[("io.containerd.image.name", "hostile:1")])]);
    entries.push(Entry::file("../../../../tmp/escaped", b"pwned"));
    let mut child = d
        .ctl()
        .args(["load"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&tar(&entries).await)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaves the archive with '..'"));
    assert!(!std::path::Path::new("/tmp/escaped").exists());
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_clean(&d);
}

type Client = integration::grpc::Images;

async fn load(
    client: &mut Client,
    archive: bytes::Bytes,
) -> Result<v1::LoadResponse, hyperd_proto::tonic::Status> {
    client
        .load(tokio_stream::iter(load_messages(&archive)))
        .await
        .map(|r| r.into_inner())
}

async fn save(client: &mut Client, image: &str) -> Result<Vec<u8>, hyperd_proto::tonic::Status> {
    use futures_util::StreamExt;
    let req = v1::SaveRequest {
        images: vec![v1::SaveImage {
            image: image.into(),
            ref_name: String::new(),
        }],
        format: v1::ArchiveFormat::Oci as i32,
        ..v1::SaveRequest::default()
    };
    let mut stream = client.save(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        out.extend_from_slice(&msg?.chunk);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_at_once_lose_nothing() {
    let d = TestDaemon::start();
    let base = big_layer_tar("concurrency-base", 512 << 10).await;
    let base_path = format!("blobs/sha256/{}", hex_of(&sha(&base)));
    let shared = noise_image("shared", 1, 256, Some(base.as_slice())).await;
    let shared_tar = bytes::Bytes::from(
        oci_archive(&[(&shared, &[("io.containerd.image.name", "shared:1")])]).await,
    );
    let mut tasks = Vec::new();
    for i in 0..16 {
        let own = noise_image(&format!("own-{i}"), 1, 256, Some(base.as_slice())).await;
        let own_tar = bytes::Bytes::from(
            oci_archive(&[(&own, &[("io.containerd.image.name", &format!("own{i}:1"))])]).await,
        );
        let shared_tar = shared_tar.clone();
        let base_path = base_path.clone();
        let socket = d.socket.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = images(&socket).await.max_decoding_message_size(4 << 20);
            for round in 0..3 {
                let loaded = load(&mut c, own_tar.clone()).await.unwrap();
                assert_eq!(loaded.images[0].id, own.id());
                load(&mut c, shared_tar.clone()).await.unwrap();
                let names: Vec<String> = c
                    .list(v1::ListRequest::default())
                    .await
                    .unwrap()
                    .into_inner()
                    .images
                    .into_iter()
                    .map(|i| i.name)
                    .collect();
                assert!(
                    names.contains(&format!("docker.io/library/own{i}:1")),
                    "client {i} round {round}: {names:?}"
                );
                assert!(names.contains(&"docker.io/library/shared:1".to_owned()));
                c.tag(v1::TagRequest {
                    source: format!("own{i}:1"),
                    target: format!("alias{i}:{round}"),
                })
                .await
                .unwrap();
                let own_saved = save(&mut c, &format!("alias{i}:{round}")).await.unwrap();
                let files = untar(&own_saved).await;
                for e in own.blob_entries() {
                    assert_eq!(
                        files[&e.path], e.data,
                        "client {i} round {round}: {}",
                        e.path
                    );
                }
                let shared_saved = save(&mut c, "shared:1").await.unwrap();
                assert!(untar(&shared_saved).await.contains_key(&base_path));
                c.remove(v1::RemoveRequest {
                    image: format!("alias{i}:{round}"),
                    force: false,
                })
                .await
                .unwrap();
                let removed = c
                    .remove(v1::RemoveRequest {
                        image: format!("own{i}:1"),
                        force: false,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(removed.deleted, [own.id()], "client {i} round {round}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let names: Vec<String> = d
        .ok(&["images", "--format", "json"])
        .lines()
        .filter(|l| l.contains("\"Name\""))
        .map(str::to_owned)
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].contains("docker.io/library/shared:1"));
    assert_clean(&d);
}

/// The files the loads in flight have staged under `ingest/` (content writes aside).
fn staged_files(d: &TestDaemon) -> usize {
    let Ok(loads) = std::fs::read_dir(d.root.join("ingest")) else {
        return 0;
    };
    loads
        .flatten()
        .filter(|l| l.file_name() != "content")
        .filter_map(|l| std::fs::read_dir(l.path()).ok())
        .map(Iterator::count)
        .sum()
}

/// A load of many images (synced with one syncfs, published, then committed in one
/// transaction) killed while it stages its blobs, then once its blobs begin to appear in
/// `blobs/sha256/`: after the restart all of its images are there or none is, and none of its
/// blobs without them.
#[tokio::test]
async fn sigkill_during_a_bulk_load_leaves_all_of_it_or_nothing() {
    const IMAGES: usize = 1000;
    let shared = layer_tar("bulk-shared").await;
    let mut images = Vec::with_capacity(IMAGES);
    for k in 0..IMAGES {
        let label = format!("bulk-{k}");
        images.push(Image::from_layers(vec![shared.clone()], &label, "amd64", Comp::None).await);
    }
    let names: Vec<[(&str, String); 1]> = (0..IMAGES)
        .map(|k| [("io.containerd.image.name", format!("bulk{k}:1"))])
        .collect();
    let annotations: Vec<[(&str, &str); 1]> =
        names.iter().map(|[(k, v)]| [(*k, v.as_str())]).collect();
    let tagged: Vec<(&Image, &[(&str, &str)])> = images
        .iter()
        .zip(&annotations)
        .map(|(i, a)| (i, &a[..]))
        .collect();
    let archive = oci_archive(&tagged).await;
    let of_the_load: std::collections::BTreeSet<String> = images
        .iter()
        .flat_map(Image::blob_entries)
        .map(|e| e.path.trim_start_matches("blobs/sha256/").to_owned())
        .collect();

    for round in 0..2 {
        let mut d = TestDaemon::start();
        let keep = noise_image("bulk-keep", 1, 1, None).await;
        let keep_f = d.write_file(
            "keep.tar",
            &oci_archive(&[(&keep, &[("io.containerd.image.name", "keep:1")])]).await,
        );
        d.ok(&["load", "-q", "-i", p(&keep_f)]);
        let before = d.blob_files().len();
        let f = d.write_file("bulk.tar", &archive);
        let mut client = d
            .ctl()
            .args(["load", "-q", "-i", p(&f)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Round 0 kills it halfway through staging; round 1 once it publishes (or has committed).
        let reached = |d: &TestDaemon| match round {
            0 => staged_files(d) >= IMAGES,
            _ => d.blob_files().len() > before,
        };
        while client.try_wait().unwrap().is_none() && !reached(&d) {
            std::thread::sleep(Duration::from_millis(1));
        }
        d.kill();
        let _ = client.wait();
        d.restart();

        let ids = d.ok(&["images", "-q"]);
        assert!(
            ids.contains(&hex_of(&keep.id())[..12]),
            "round {round}: {ids}"
        );
        let listed = ids.lines().count() - 1;
        assert!(
            listed == 0 || listed == IMAGES,
            "round {round}: {listed} listed"
        );
        let blobs = d.blob_files();
        if listed == 0 {
            let left: Vec<_> = blobs.intersection(&of_the_load).collect();
            assert!(
                left.is_empty(),
                "round {round}: blobs of the load left: {left:?}"
            );
        } else {
            assert!(of_the_load.is_subset(&blobs), "round {round}");
        }
        assert_clean(&d);
    }
}
