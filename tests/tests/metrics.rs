//! `--metrics-listen`: the Prometheus page, scraped over loopback TCP and a Unix socket, moves
//! by the bytes and calls of a known workload and passes Debian's `promtool check metrics`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Command, Stdio};

use integration::TestDaemon;
use integration::daemon::bin;
use integration::fixtures::*;
use integration::registry::TestRegistry;
use integration::tools::{p, umoci_image};

/// `name{labels}` to value, for every sample of a page.
type Samples = BTreeMap<String, f64>;

/// The answer to `GET /metrics` over `stream`: status line, head and body.
fn get(mut stream: impl Read + Write) -> (String, String) {
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.to_owned(), body.to_owned())
}

/// The TCP address hyperd logged for its page (it was given port 0).
pub(crate) fn logged_address(d: &TestDaemon) -> String {
    let log = d.log();
    let line = log
        .lines()
        .find(|l| l.contains("serving metrics"))
        .unwrap_or_else(|| panic!("no metrics address in the log: {log}"));
    let at = line.split("at=").nth(1).expect("at= in the log line");
    at.split_whitespace()
        .next()
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

pub(crate) fn scrape_tcp(d: &TestDaemon) -> String {
    let stream = std::net::TcpStream::connect(logged_address(d)).unwrap();
    let (head, body) = get(stream);
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body
}

pub(crate) fn samples(page: &str) -> Samples {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect()
}

pub(crate) fn value(s: &Samples, key: &str) -> f64 {
    s.get(key).copied().unwrap_or(0.0)
}

/// What `promtool check metrics` says of `page`; it must say nothing and exit 0.
fn promtool(page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{page}"
    );
}

fn stored_bytes(d: &TestDaemon) -> u64 {
    let dir = d.root.join("blobs/sha256");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

const LOAD: &str = "/hyperd.v1.ImageService/Load";
const REMOVE: &str = "/hyperd.v1.ImageService/Remove";

fn calls(method: &str, code: &str) -> String {
    format!("hyperd_grpc_requests_total{{method=\"{method}\",code=\"{code}\"}}")
}

#[tokio::test]
async fn a_workload_moves_the_counters_by_its_bytes_and_calls() {
    let d = TestDaemon::start_with_args(&["--metrics-listen", "127.0.0.1:0"]);
    let before = samples(&scrape_tcp(&d));
    assert_eq!(value(&before, "hyperd_store_blobs"), 0.0);

    let image = Image::new(&["metrics-a", "metrics-b"], "amd64", Comp::None).await;
    let archive = docker_archive(&[(&image, &["metrics:1"])]).await;
    let input = d.write_file("in.tar", &archive);
    d.ok(&["load", "--no-fd", "-q", "-i", input.to_str().unwrap()]);
    let out = d.path("out.tar");
    d.ok(&["save", "--no-fd", "-o", out.to_str().unwrap(), "metrics:1"]);
    let saved = std::fs::metadata(&out).unwrap().len();
    // The same through handed-over files (LoadFile, SaveFile): the load skips the blobs it holds
    // but passes over the whole archive.
    d.ok(&["load", "-q", "-i", input.to_str().unwrap()]);
    let out_fd = d.path("out-fd.tar");
    d.ok(&["save", "-o", out_fd.to_str().unwrap(), "metrics:1"]);
    let saved_fd = std::fs::metadata(&out_fd).unwrap().len();
    let failed = d.run(&["rmi", "no-such-image:1"]);
    assert!(!failed.status.success());

    let page = scrape_tcp(&d);
    promtool(&page);
    let after = samples(&page);
    let loaded = 2 * archive.len();
    assert_eq!(value(&after, "hyperd_load_bytes_total"), loaded as f64);
    assert_eq!(
        value(&after, "hyperd_save_bytes_total"),
        (saved + saved_fd) as f64
    );
    assert_eq!(value(&after, &calls(LOAD, "OK")), 1.0);
    let load_file = "/hyperd.v1.ImageService/LoadFile";
    assert_eq!(value(&after, &calls(load_file, "OK")), 1.0);
    assert_eq!(value(&after, &calls(REMOVE, "NotFound")), 1.0);
    let held = stored_bytes(&d);
    assert!(held > 0);
    assert_eq!(value(&after, "hyperd_store_blob_bytes"), held as f64);
    assert_eq!(
        value(&after, "hyperd_store_blobs"),
        d.blob_files().len() as f64
    );
    let timed = format!("hyperd_grpc_request_duration_seconds_count{{method=\"{LOAD}\"}}");
    assert_eq!(value(&after, &timed), 1.0);
    assert!(after.contains_key("hyperd_connections"));

    // Removing the only image collects every blob: the collection's bytes are all that was held.
    let runs = value(&after, "hyperd_gc_runs_total");
    d.ok(&["rmi", "metrics:1"]);
    let gone = samples(&scrape_tcp(&d));
    promtool(&scrape_tcp(&d));
    assert_eq!(value(&gone, "hyperd_store_blobs"), 0.0);
    assert_eq!(value(&gone, "hyperd_store_blob_bytes"), 0.0);
    assert!(value(&gone, "hyperd_gc_runs_total") > runs);
    assert_eq!(value(&gone, "hyperd_gc_freed_bytes_total"), held as f64);
    assert_eq!(value(&gone, &calls(REMOVE, "OK")), 1.0);
}

#[tokio::test]
async fn the_page_is_served_on_a_unix_socket_which_goes_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.sock");
    let mut d = TestDaemon::start_with_args(&["--metrics-listen", path.to_str().unwrap()]);
    d.ok(&["images"]);
    let (head, body) = get(std::os::unix::net::UnixStream::connect(&path).unwrap());
    assert!(head.contains(" 200 "), "{head}");
    promtool(&body);
    let s = samples(&body);
    let listed = calls("/hyperd.v1.ImageService/List", "OK");
    assert!(
        value(&s, &listed) + value(&s, &calls("/hyperd.v1.ImageService/ListStream", "OK")) >= 1.0,
        "{body}"
    );
    assert_eq!(value(&s, "hyperd_slots_in_use{kind=\"load\"}"), 0.0);
    assert!(d.terminate().success());
    assert!(!path.exists(), "the metrics socket is removed at exit");
}

/// The pull counters as (fetched bytes, present bytes, fetched blobs, present blobs).
fn pulled(s: &Samples) -> [f64; 4] {
    [
        "fetched_bytes",
        "present_bytes",
        "fetched_blobs",
        "present_blobs",
    ]
    .map(|what| value(s, &format!("hyperd_pull_{what}_total")))
}

#[test]
fn a_second_pull_counts_as_present_what_the_first_fetched() {
    let reg = TestRegistry::plain();
    let d = TestDaemon::start_with_args(&["--metrics-listen", "127.0.0.1:0"]);
    let dir = tempfile::tempdir().unwrap();
    let layout = umoci_image(
        dir.path(),
        "v1",
        &[&[("etc/a", "a\n")], &[("etc/b", "bb\n")]],
    );
    reg.skopeo_copy_to(&format!("oci:{}:v1", p(&layout)), "m/app:v1");
    let name = format!("{}/m/app:v1", reg.host());
    let creds = dir.path().join("docker");

    d.ok_with_config(&creds, &["pull", "-q", &name]);
    let [fetched, present, fetched_blobs, present_blobs] = pulled(&samples(&scrape_tcp(&d)));
    // The layers and the config, fetched whole; the manifest is a document, not counted.
    let manifest = &d.inspect(&name)["Manifest"];
    let layers = manifest["layers"].as_array().unwrap();
    let blobs = layers.len() as f64 + 1.0;
    let bytes: u64 = layers
        .iter()
        .chain([&manifest["config"]])
        .map(|b| b["size"].as_u64().unwrap())
        .sum();
    assert_eq!((fetched_blobs, present_blobs, present), (blobs, 0.0, 0.0));
    assert_eq!(fetched, bytes as f64);

    d.ok_with_config(&creds, &["pull", "-q", &name]);
    let page = scrape_tcp(&d);
    promtool(&page);
    assert_eq!(pulled(&samples(&page)), [fetched, fetched, blobs, blobs]);
}

#[test]
fn an_address_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin("hyperd"))
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--socket")
        .arg(dir.path().join("hyperd.sock"))
        .args(["--metrics-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("loopback"), "{said}");
}

#[tokio::test]
async fn leases_and_open_writes_are_counted() {
    use hyperd_proto::v1::{self, content_service_client::ContentServiceClient};
    let d = TestDaemon::start_with_args(&["--metrics-listen", "127.0.0.1:0"]);
    let channel = hyperd_proto::connect(d.socket.clone()).await.unwrap();
    let mut c = ContentServiceClient::new(channel);
    let request = v1::CreateLeaseRequest { ttl_seconds: 3600 };
    let lease = c.create_lease(request).await.unwrap().into_inner();
    // Half a blob, then the stream ends: the write stays open, to be resumed.
    let blob = noise("metrics-open-write", 1000);
    let half = v1::WriteRequest {
        r#ref: "half".into(),
        expected: sha(&blob),
        total: blob.len() as u64,
        lease: lease.id,
        offset: 0,
        data: blob[..500].to_vec().into(),
    };
    let written = c.write(tokio_stream::iter([half])).await.unwrap();
    assert_eq!(written.into_inner().offset, 500);

    let page = scrape_tcp(&d);
    promtool(&page);
    let s = samples(&page);
    assert_eq!(value(&s, "hyperd_leases"), 1.0);
    assert_eq!(value(&s, "hyperd_content_writes_open"), 1.0);
    assert_eq!(value(&s, "hyperd_slots_in_use{kind=\"write\"}"), 0.0);
    let write = "/hyperd.v1.ContentService/Write";
    assert_eq!(value(&s, &calls(write, "OK")), 1.0);
}

/// The load slots' gauges, as (in use, waiting).
fn load_slots(d: &TestDaemon) -> (f64, f64) {
    let s = samples(&scrape_tcp(d));
    let kind = "{kind=\"load\"}";
    (
        value(&s, &format!("hyperd_slots_in_use{kind}")),
        value(&s, &format!("hyperd_slots_waiting{kind}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_holding_and_waiting_for_slots_are_counted() {
    use integration::grpc::{images, load_messages};
    use integration::wait::eventually;
    let d = TestDaemon::start_with_args(&["--metrics-listen", "127.0.0.1:0"]);
    let img = noise_image("metrics-slots", 1, 3 << 10, None).await;
    let archive = bytes::Bytes::from(oci_archive(&[(&img, &[])]).await);
    // Three loads of one uid send their options and a chunk, then hold their streams open: two
    // take the slots one uid may hold, the third waits.
    let mut open = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..3 {
        let mut c = images(&d.socket).await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for m in load_messages(&archive).into_iter().take(2) {
            tx.send(m).await.unwrap();
        }
        open.push(tx);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        calls.push(tokio::spawn(async move { c.load(stream).await }));
    }
    eventually(30, "two loads holding slots and one waiting", async || {
        load_slots(&d) == (2.0, 1.0)
    })
    .await;
    // The clients end their streams short: the loads fail and give everything back.
    drop(open);
    for call in calls {
        assert!(call.await.unwrap().is_err());
    }
    assert_eq!(load_slots(&d), (0.0, 0.0));
}

#[tokio::test]
async fn connections_open_and_refused_are_counted() {
    use integration::wait::eventually;
    let d = TestDaemon::start_with_args(&[
        "--metrics-listen",
        "127.0.0.1:0",
        "--max-connections-per-uid",
        "1",
    ]);
    let count = |key: &str| value(&samples(&scrape_tcp(&d)), key);
    let _held = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    eventually(30, "the connection counted", async || {
        count("hyperd_connections") == 1.0
    })
    .await;
    let _refused = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    let refused = "hyperd_connections_refused_total{reason=\"uid\"}";
    eventually(30, "the second connection refused", async || {
        count(refused) == 1.0
    })
    .await;
    assert_eq!(count("hyperd_connections"), 1.0);
}
