//! `hyperctl events` and `EventService/Subscribe` against the real hyperd: a load, tag, push,
//! pull, rmi (untag, delete, a referrer removed with its image) and the collection that follows
//! are told in order with the uid that caused them and the bytes freed; a restart keeps them
//! (`--since` replays the log); filters by type and image pick; a live subscriber gets what
//! happens after it subscribed; pushes to the registry endpoint (an image, a referrer), a save
//! and a prune are told too; another local user sees its own events whole, others' without
//! their uid, and no one else's save. Every read is bounded by `--until` or by the events expected.

use hyperd_proto::v1::SubscribeRequest;
use hyperd_proto::v1::event_service_client::EventServiceClient;
use integration::TestDaemon;
use integration::artifacts::{MANIFEST, cosign_signature, layout};
use integration::fixtures::*;
use integration::registry::TestRegistry;
use integration::serve::{PUSHER, registry_addr, send, taking_pushes};
use integration::tools::{p, skopeo_digests, umoci_image};
use integration::users::OtherUser;
use serde_json::Value;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The bytes the `gc` events among `events` say they freed.
fn gc_bytes<'a>(events: impl IntoIterator<Item = &'a Value>) -> u64 {
    events
        .into_iter()
        .filter(|e| e["type"] == "gc")
        .map(|e| {
            e["attributes"]["bytes"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn blob_bytes(d: &TestDaemon) -> u64 {
    let dir = d.root.join("blobs/sha256");
    let files = d.blob_files();
    files
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_day_of_work_is_told_in_order_and_kept_across_a_restart() {
    let reg = TestRegistry::plain();
    let mut d = TestDaemon::start();
    let creds = d.dir.path().join("docker");
    let app = Image::new(&["events app"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, MANIFEST, "events app");
    let (one, two) = (
        format!("{}/ev/app:1", reg.host()),
        format!("{}/ev/app:2", reg.host()),
    );
    let entries = layout(
        &[(&app, &[("org.opencontainers.image.ref.name", &one)])],
        &[&sig],
    );
    let archive = d.write_file("app.tar", &tar(&entries).await);
    d.ok(&["load", "-q", "-i", p(&archive)]);
    d.ok(&["tag", &one, &two]);
    d.ok_with_config(&creds, &["push", &two]);
    d.ok(&["rmi", &two]);
    d.ok_with_config(&creds, &["pull", &two]);
    d.ok(&["rmi", &one]);
    let stored = blob_bytes(&d);
    d.ok(&["rmi", &two]);

    let events = d.logged_events(&[]);
    let told: Vec<&str> = types(&events).into_iter().filter(|t| *t != "gc").collect();
    assert_eq!(
        told,
        [
            "load", "tag", "push", "untag", "pull", "untag", "untag", "delete", "referrer"
        ],
        "{events:#?}"
    );
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "{sequences:?}"
    );
    let digest = sha(&app.manifest);
    let load = &events[0];
    assert_eq!(
        (load["name"].as_str(), load["digest"].as_str()),
        (Some(one.as_str()), Some(digest.as_str()))
    );
    assert_eq!(load["id"], app.id());
    assert!(
        events
            .iter()
            .filter(|e| e["type"] != "gc")
            .all(|e| e["uid"] == 0),
        "{events:#?}"
    );
    let push = events.iter().find(|e| e["type"] == "push").unwrap();
    assert_eq!(
        (push["name"].as_str(), push["digest"].as_str()),
        (Some(two.as_str()), Some(digest.as_str()))
    );
    let delete = events.iter().find(|e| e["type"] == "delete").unwrap();
    assert_eq!(delete["id"], app.id());
    let referrer = events.iter().find(|e| e["type"] == "referrer").unwrap();
    assert_eq!(referrer["digest"], sig.digest());
    assert_eq!(referrer["attributes"]["action"], "removed");
    // The last rmi freed every blob: the collections it caused say so, and no uid caused them.
    let gcs: Vec<&Value> = events.iter().filter(|e| e["type"] == "gc").collect();
    let freed = gc_bytes(gcs.iter().copied());
    assert_eq!((freed, blob_bytes(&d)), (stored, 0), "{gcs:#?}");
    assert!(gcs.iter().all(|e| e["uid"].is_null()));

    // The text lines read like docker's.
    let text = d.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "type=load",
    ]);
    assert!(
        text.trim_end().ends_with(&format!(
            "image load {digest} (name={one}, id={}, uid=0)",
            app.id()
        )),
        "{text}"
    );

    // Killed (what a crash leaves) and started again, the log still tells all of it, and what
    // happens next follows it.
    d.restart();
    assert_eq!(d.logged_events(&[]), events);
    d.ok(&["load", "-q", "-i", p(&archive)]);
    let after = d.logged_events(&[]);
    assert_eq!(after.len(), events.len() + 1);
    assert_eq!(
        after.last().unwrap()["sequence"],
        sequences.last().unwrap() + 1
    );

    // Filters: by type (either of two), by image (a tag, a repository, a digest).
    assert_eq!(
        types(&d.logged_events(&["type=untag", "type=delete"])),
        ["untag", "untag", "untag", "delete"]
    );
    assert_eq!(
        types(&d.logged_events(&[&format!("image={one}")])),
        ["load", "untag", "load"]
    );
    let repository = format!("image={}/ev/app", reg.host());
    assert_eq!(types(&d.logged_events(&[&repository, "type=tag"])), ["tag"]);
    // Every event about the image carries its digest: the tag, the untags and the delete too.
    assert_eq!(
        types(&d.logged_events(&[&format!("image={digest}")])),
        [
            "load", "tag", "push", "untag", "pull", "untag", "untag", "delete", "load"
        ]
    );
    let refused = d.run(&["events", "--filter", "type=bogus"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown event type"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_subscriber_gets_what_happens_after_it_subscribed() {
    let d = TestDaemon::start();
    let app = Image::new(&["events live"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&app, &[("io.containerd.image.name", "live:1")])]).await;
    d.ok(&["load", "-q", "-i", p(&d.write_file("live.tar", &archive))]);
    let channel = hyperd_proto::connect(&d.socket).await.unwrap();
    let mut events = EventServiceClient::new(channel);
    let request = SubscribeRequest {
        types: vec!["tag".into()],
        ..SubscribeRequest::default()
    };
    // Subscribed once the answer's headers are back: what follows reaches it.
    let mut live = events.subscribe(request).await.unwrap().into_inner();
    d.ok(&["tag", "live:1", "live:2"]);
    let tag = live.message().await.unwrap().unwrap();
    assert_eq!((tag.r#type.as_str(), tag.name.as_str()), ("tag", "live:2"));
    assert_eq!(tag.attributes["source"], "live:1");
    assert_eq!(tag.uid, Some(0));

    // With `since`, the log first, then live, nothing twice.
    let request = SubscribeRequest {
        since_unix_nano: Some(0),
        ..SubscribeRequest::default()
    };
    let mut both = events.subscribe(request).await.unwrap().into_inner();
    d.ok(&["rmi", "live:2"]);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let e = both.message().await.unwrap().unwrap();
        seen.push((e.r#type, e.sequence));
    }
    assert_eq!(
        seen,
        [
            ("load".to_owned(), 1),
            ("tag".to_owned(), 2),
            ("untag".to_owned(), 3)
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_user_sees_its_own_events_whole_others_without_uid_and_no_saves() {
    let user = OtherUser::create();
    let gid = user.gid.to_string();
    let d = TestDaemon::start_with_args(&["--group", &gid]);
    user.may_traverse(d.dir.path());
    let app = Image::new(&["events users"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&app, &[("io.containerd.image.name", "users:1")])]).await;
    d.ok(&["load", "-q", "-i", p(&d.write_file("users.tar", &archive))]);
    d.ok(&["save", "-o", p(&d.path("users-out.tar")), "users:1"]);
    let as_user = |args: &[&str]| {
        let out = user
            .command(integration::daemon::bin("hyperctl"))
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    as_user(&["tag", "users:1", "users:2"]);
    let all = [
        "events", "--since", "0", "--until", "0s", "--format", "json",
    ];
    let seen: Vec<Value> = as_user(&all)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(types(&seen), ["load", "tag"], "{seen:#?}");
    assert!(seen[0]["uid"].is_null(), "{seen:#?}");
    assert_eq!(seen[1]["uid"], user.uid);
    // Root sees all of it, with every uid.
    let everything = d.logged_events(&[]);
    assert_eq!(types(&everything), ["load", "save", "tag"]);
    assert_eq!(everything[1]["uid"], 0);
    assert_eq!(everything[2]["uid"], user.uid);
}

/// `POST` then `PUT` of a whole blob to hyperd's registry endpoint at `base`.
fn upload(base: &str, bytes: &[u8]) {
    let started = send("POST", &format!("{base}/v2/app/blobs/uploads/"), &[], b"");
    let location = started.header("location").unwrap();
    let url = format!("{base}{location}?digest={}", sha(bytes));
    assert_eq!(send("PUT", &url, &[], bytes).status, 201);
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_to_the_endpoint_a_save_and_a_prune_are_told() {
    let d = taking_pushes();
    // curl sends the URL's credentials as basic auth.
    let base = format!("http://{PUSHER}@{}", registry_addr(&d));
    let app = Image::new(&["events endpoint"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&app.manifest, OCI_MANIFEST, "events endpoint");
    let blobs = app.layers.iter().map(|(b, _)| b).chain(&sig.blobs);
    std::iter::once(&app.config)
        .chain(blobs)
        .for_each(|b| upload(&base, b));
    let put = |reference: &str, body: &[u8]| {
        let url = format!("{base}/v2/app/manifests/{reference}");
        let r = send("PUT", &url, &[("Content-Type", OCI_MANIFEST)], body);
        assert_eq!(r.status, 201, "{r:?}");
    };
    put("1", &app.manifest);
    put(&sig.digest(), &sig.manifest);
    d.ok(&["save", "-o", p(&d.path("app.tar")), "app:1"]);
    // Another image, loaded: what the endpoint's pushes wrote stays leased for the hour, so a
    // prune frees this one's blobs alone.
    let other = Image::new(&["events other"], "amd64", Comp::None).await;
    let archive = oci_archive(&[(&other, &[("io.containerd.image.name", "other:1")])]).await;
    d.ok(&["load", "-q", "-i", p(&d.write_file("other.tar", &archive))]);
    let stored = blob_bytes(&d);
    d.ok(&["image", "prune", "-a", "-f"]);
    let freed = stored - blob_bytes(&d);
    assert!(freed > 0);

    let events = d.logged_events(&[]);
    let told: Vec<&str> = types(&events).into_iter().filter(|t| *t != "gc").collect();
    assert_eq!(
        told[..4],
        ["create", "referrer", "save", "load"],
        "{events:#?}"
    );
    let mut pruning = told[4..].to_vec();
    assert_eq!(pruning.pop(), Some("prune"), "{events:#?}");
    pruning.sort();
    assert_eq!(pruning, ["delete", "delete", "referrer", "untag", "untag"]);
    let (create, added) = (&events[0], &events[1]);
    assert_eq!(
        (create["name"].as_str(), create["id"].as_str()),
        (Some("app:1"), Some(app.id().as_str()))
    );
    assert_eq!(create["digest"], sha(&app.manifest));
    // Pushes to the endpoint come from no local user, but from the htpasswd user.
    assert!(create["uid"].is_null() && added["uid"].is_null());
    assert_eq!(
        (&create["attributes"]["user"], &added["attributes"]["user"]),
        (&Value::from("ann"), &Value::from("ann"))
    );
    assert_eq!(added["digest"], sig.digest());
    let attributes = &added["attributes"];
    assert_eq!(
        (
            attributes["action"].as_str(),
            attributes["subject"].as_str()
        ),
        (Some("added"), Some(sha(&app.manifest).as_str()))
    );
    let save = events.iter().find(|e| e["type"] == "save").unwrap();
    assert_eq!(
        (save["name"].as_str(), save["uid"].as_u64()),
        (Some("app:1"), Some(0))
    );
    assert_eq!(save["digest"], sha(&app.manifest));
    // A prune's removals carry the digest of the image each removed.
    let mut removed: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "untag" || e["type"] == "delete")
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    removed.sort();
    removed.dedup();
    let mut images = [sha(&app.manifest), sha(&other.manifest)];
    images.sort();
    assert_eq!(removed, images);
    let prune = events.iter().find(|e| e["type"] == "prune").unwrap();
    assert_eq!(prune["attributes"]["images"], "2");
    assert_eq!(prune["attributes"]["bytes"], freed.to_string());
    assert_eq!(gc_bytes(&events), freed);
}

#[test]
fn a_pull_through_is_told_as_hyperd_s_own_pull() {
    let upstream = TestRegistry::plain();
    let dir = tempfile::tempdir().unwrap();
    let files: &[(&str, &str)] = &[("etc/seed", "through\n")];
    let layout = umoci_image(&dir.path().join("app"), "v1", &[files]);
    let source = format!("oci:{}:v1", p(&layout));
    upstream.skopeo_copy_to(&source, "team/app:1");
    let digest = skopeo_digests(&source).0;
    let args = [
        "--registry-listen",
        "127.0.0.1:0",
        "--registry-pull-through",
    ];
    let d = TestDaemon::start_with_args(&args);
    let ns = upstream.host().replace(':', "%3A");
    let url = format!(
        "http://{}/v2/team/app/manifests/1?ns={ns}",
        registry_addr(&d)
    );
    let accept = [("Accept", OCI_MANIFEST)];
    assert_eq!(
        integration::serve::request("GET", &url, &accept).status,
        200
    );

    let pulls = d.logged_events(&["type=pull"]);
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    let name = format!("{}/team/app:1", upstream.host());
    assert_eq!(
        (pulls[0]["name"].as_str(), pulls[0]["digest"].as_str()),
        (Some(name.as_str()), Some(digest.as_str()))
    );
    assert!(pulls[0]["uid"].is_null());
}
