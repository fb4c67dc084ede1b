//! Last use and pins against the real hyperd: a load, then a tag, a save and registry GETs of
//! the manifest (by tag and by digest) and of a blob each move `LastUsed` forward, a HEAD does
//! not, and the
//! last of them survives a restart (written at shutdown); a push and a pull move it on both
//! hyperds. A pinned image outlives `image prune
//! -a`, and `system df` counts none of its bytes as reclaimable. `image prune --filter label=`
//! and `label!=` pick by the config's labels. Times are compared as ordered,
//! never as durations: RFC 3339 with nine digits of nanoseconds in UTC sorts as it reads.

use hyperd_proto::v1::DiskUsageRequest;
use integration::TestDaemon;
use integration::fixtures::*;
use integration::grpc;
use integration::serve::{registry_addr, request, taking_pushes};
use integration::tools::p;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json";

/// `LastUsed` of `image` as inspect shows it, checked to be the sortable form.
fn last_used(d: &TestDaemon, image: &str) -> String {
    let t = d.inspect(image)["LastUsed"]
        .as_str()
        .unwrap_or_else(|| panic!("no LastUsed for {image}"))
        .to_owned();
    assert!(t.len() == 30 && t.ends_with('Z'), "{t}");
    t
}

/// `LastUsed` must have moved forward from `before`; returns it.
fn moved(d: &TestDaemon, before: &str, by: &str) -> String {
    let now = last_used(d, "lu:1");
    assert!(now.as_str() > before, "{by}: {now} is not after {before}");
    now
}

fn manifest_get(d: &TestDaemon, method: &str, reference: &str) {
    let url = format!("http://{}/v2/lu/manifests/{reference}", registry_addr(d));
    let reply = request(method, &url, &[("Accept", ACCEPT)]);
    assert_eq!(reply.status, 200, "{method} {url}: {reply:?}");
}

#[tokio::test]
async fn every_use_moves_last_used_forward_and_a_restart_keeps_it() {
    let mut d = TestDaemon::start_with_args(&["--registry-listen", "127.0.0.1:0"]);
    let img = Image::new(&["lastused one"], "amd64", Comp::Gzip).await;
    let archive = oci_archive(&[(&img, &[("io.containerd.image.name", "lu:1")])]).await;
    d.ok(&["load", "-q", "-i", p(&d.write_file("lu.tar", &archive))]);
    let loaded = last_used(&d, "lu:1");
    assert_eq!(d.inspect("lu:1")["Pinned"], false);

    d.ok(&["tag", "lu:1", "lu:2"]);
    let tagged = moved(&d, &loaded, "tag");
    d.ok(&["save", "-o", p(&d.path("lu-out.tar")), "lu:2"]);
    let saved = moved(&d, &tagged, "save");
    manifest_get(&d, "GET", "1");
    let by_tag = moved(&d, &saved, "GET by tag");
    manifest_get(&d, "GET", &sha(&img.manifest));
    let by_digest = moved(&d, &by_tag, "GET by digest");
    // A blob GET is a use too (a client pulling layers keeps the image recent); HEADs are not.
    let blob = format!("http://{}/v2/lu/blobs/{}", registry_addr(&d), img.id());
    assert_eq!(request("GET", &blob, &[]).status, 200);
    let by_blob = moved(&d, &by_digest, "blob GET");
    manifest_get(&d, "HEAD", "1");
    assert_eq!(request("HEAD", &blob, &[]).status, 200);
    assert_eq!(last_used(&d, "lu:1"), by_blob, "a HEAD is no use");

    let listed: serde_json::Value =
        serde_json::from_str(&d.ok(&["images", "--format", "json"])).unwrap();
    for row in listed.as_array().unwrap() {
        assert_eq!(row["LastUsed"], by_blob.as_str(), "{row}");
        assert_eq!(row["Pinned"], false, "{row}");
    }
    let df = d.ok(&["system", "df", "-v"]);
    assert!(df.contains("LAST USED") && df.contains("ago"), "{df}");
    assert!(!df.contains("never"), "{df}");

    // The GETs' uses waited in memory: SIGTERM writes them.
    assert!(d.terminate().success());
    d.restart();
    assert_eq!(last_used(&d, "lu:1"), by_blob);
}

#[tokio::test]
async fn a_pinned_image_outlives_prune_and_df_calls_none_of_it_reclaimable() {
    let d = TestDaemon::start();
    let img = Image::new(&["lastused pinned"], "amd64", Comp::Gzip).await;
    let archive = oci_archive(&[(&img, &[("org.opencontainers.image.ref.name", "x")])]).await;
    d.ok(&["load", "-q", "-i", p(&d.write_file("pin.tar", &archive))]);
    let digest = sha(&img.manifest);
    let mut images = grpc::images(&d.socket).await;
    let df = || {
        let mut images = images.clone();
        async move {
            images
                .disk_usage(DiskUsageRequest::default())
                .await
                .unwrap()
                .into_inner()
        }
    };
    let before = df().await;
    assert!(before.reclaimable > 0);

    assert_eq!(d.ok(&["pin", &digest]).trim(), digest);
    assert_eq!(d.inspect(&digest)["Pinned"], true);
    let pinned = df().await;
    assert_eq!(pinned.reclaimable, 0);
    assert!(pinned.images[0].pinned);
    d.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(d.inspect(&digest)["Pinned"], true);

    d.ok(&["unpin", &digest]);
    assert_eq!(d.inspect(&digest)["Pinned"], false);
    let told = d.logged_events(&["type=pin", "type=unpin"]);
    let said: Vec<(&str, &str)> = told
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(said, [("pin", digest.as_str()), ("unpin", digest.as_str())]);
    let pruned = images
        .prune(hyperd_proto::v1::PruneRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pruned.freed, before.reclaimable);
    // Unknown images fail, by the usual exit code.
    assert!(!d.run(&["pin", "nothing:1"]).status.success());
}

#[tokio::test]
async fn prune_filters_by_label() {
    let d = TestDaemon::start();
    // Each fixture's config has the label `label` = its seeds.
    let a = Image::new(&["lastused label a"], "amd64", Comp::None).await;
    let b = Image::new(&["lastused label b"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&a, &[]), (&b, &[])]).await;
    d.ok(&["load", "-q", "-i", p(&d.write_file("labels.tar", &archive))]);
    let dry = |filters: &[&str]| {
        let mut args = vec!["image", "prune", "--dry-run"];
        args.extend(filters.iter().flat_map(|f| ["--filter", f]));
        let out = d.ok(&args);
        out.lines()
            .filter_map(|l| l.strip_prefix("Would delete: "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(dry(&[]).len(), 2);
    assert_eq!(dry(&["label=label=lastused label a"]), [sha(&a.manifest)]);
    assert_eq!(dry(&["label!=label=lastused label a"]), [sha(&b.manifest)]);
    assert!(dry(&["label=nothing"]).is_empty());
    let refused = d.run(&["image", "prune", "--filter", "dangling=true"]);
    assert!(!refused.status.success());

    d.ok(&[
        "image",
        "prune",
        "-f",
        "--filter",
        "label=label=lastused label b",
    ]);
    assert_eq!(dry(&[]), [sha(&a.manifest)]);
}

#[tokio::test]
async fn push_and_pull_move_last_used_on_both_sides() {
    let target = taking_pushes();
    let addr = registry_addr(&target);
    let source = TestDaemon::start();
    let img = Image::new(&["lastused push"], "amd64", Comp::Gzip).await;
    let archive = oci_archive(&[(&img, &[("io.containerd.image.name", "lu:1")])]).await;
    source.ok(&[
        "load",
        "-q",
        "-i",
        p(&source.write_file("lu.tar", &archive)),
    ]);
    let name = format!("{addr}/team/lu:1");
    source.ok(&["tag", "lu:1", &name]);
    source.ok(&["login", &addr, "-u", "ann", "-p", "secret"]);
    let tagged = last_used(&source, &name);

    source.ok(&["push", &name]);
    let pushed = moved(&source, &tagged, "push");
    // The push made the image on the target: a use there too.
    let made = last_used(&target, "team/lu:1");

    source.ok(&["pull", "-q", &name]);
    moved(&source, &pushed, "pull");
    let served = last_used(&target, "team/lu:1");
    assert!(
        served > made,
        "the pull's manifest GET: {served} after {made}"
    );
}
