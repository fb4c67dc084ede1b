//! hyperd as a registry (`--registry-listen`), beside Debian's `docker-registry` 2.8 holding the
//! same image and `cat` of the same blob file, in one run:
//! - `skopeo copy docker://… oci:DIR` of the image from each (with `sync`): hyperd's speed-up;
//! - one layer by `curl -o /dev/null` against `cat BLOB > /dev/null` (both from the page cache),
//!   and the same from docker-registry, which sends it with `sendfile(2)`;
//! - many clients pulling the whole image at once (manifest, then each blob by curl): all must
//!   succeed, and hyperd's peak RSS meanwhile.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration::registry::TestRegistry;

use crate::measure::{Daemon, median, run, sync};

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

struct Bench<'a> {
    bin_dir: &'a Path,
    work: &'a Path,
    mb: f64,
}

/// What the served image is made of, from its manifest.
struct Served {
    base: String,
    blobs: Vec<(String, u64)>,
}

pub(crate) fn bench(bin_dir: &Path, big: &Path, runs: usize, work: &Path, clients: usize) {
    for tool in [
        "/usr/bin/docker-registry",
        "/usr/bin/skopeo",
        "/usr/bin/curl",
    ] {
        if !Path::new(tool).exists() {
            eprintln!("no {tool}: no registry-endpoint figures");
            return;
        }
    }
    let b = Bench {
        bin_dir,
        work,
        mb: std::fs::metadata(big).unwrap().len() as f64 / 1e6,
    };
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let daemon = Daemon::start_with(
        bin_dir,
        &work.join("serve-store"),
        &["--registry-listen", &listen],
    );
    b.ctl(&daemon, &["load", "-q", "-i", big.to_str().unwrap()]);
    let served = Served::read(&format!("http://{listen}"), "big", "1");

    eprintln!("serve: putting the same image in docker-registry");
    let registry = TestRegistry::plain_in(work);
    let upstream = format!("{}/bench/big:1", registry.host());
    b.ctl(&daemon, &["tag", "big:1", &upstream]);
    b.ctl(&daemon, &["push", "-q", &upstream]);

    let blob = served.largest();
    let blob_file = work
        .join("serve-store/root/blobs/sha256")
        .join(blob.0.trim_start_matches("sha256:"));
    let upstream_blob = format!("http://{}/v2/bench/big/blobs/{}", registry.host(), blob.0);
    let (mut hyperd, mut distribution, mut cat) = (vec![], vec![], vec![]);
    let (mut curl, mut curl_distribution) = (vec![], vec![]);
    for r in 0..runs {
        eprintln!("serve run {}/{runs}", r + 1);
        hyperd.push(b.skopeo_copy(&format!("docker://{listen}/big:1")));
        distribution.push(b.skopeo_copy(&registry.docker_ref("bench/big:1")));
        cat.push(timed(
            Command::new("sh")
                .arg("-c")
                .arg(format!("cat {} > /dev/null", blob_file.display())),
        ));
        curl.push(curl_secs(&format!("{}/blobs/{}", served.base, blob.0)));
        curl_distribution.push(curl_secs(&upstream_blob));
    }
    daemon.reset_peak();
    let (ok, secs) = b.concurrent_pulls(&served, clients);
    let rss_mib = daemon.peak_rss_kib() as f64 / 1024.0;

    Figures {
        mb: b.mb,
        runs,
        clients,
        hyperd: median(hyperd),
        distribution: median(distribution),
        curl: median(curl),
        curl_distribution: median(curl_distribution),
        cat: median(cat),
        blob_mb: blob.1 as f64 / 1e6,
        ok,
        all_secs: secs,
        rss_mib,
    }
    .print();
}

/// Seconds of `curl -o /dev/null URL`.
fn curl_secs(url: &str) -> f64 {
    timed(Command::new("curl").args(["-sf", "-o", "/dev/null", url]))
}

/// The medians of one run, and the concurrent pulls.
struct Figures {
    mb: f64,
    runs: usize,
    clients: usize,
    hyperd: f64,
    distribution: f64,
    curl: f64,
    /// The same blob from docker-registry, which sends it with `sendfile(2)`.
    curl_distribution: f64,
    cat: f64,
    blob_mb: f64,
    ok: usize,
    all_secs: f64,
    rss_mib: f64,
}

impl Figures {
    fn print(&self) {
        let (h, d, c, k) = (self.hyperd, self.distribution, self.curl, self.cat);
        let (mb, blob_mb, runs) = (self.mb, self.blob_mb, self.runs);
        println!("\nregistry endpoint on loopback, {mb:.0} MB image: medians of {runs} runs\n");
        println!("{:<58} {:>8} {:>8} {:>8}", "case", "s", "MB/s", "ratio");
        let row = |case: &str, secs: f64, mbps: f64, ratio: f64| {
            println!("{case:<58} {secs:>8.3} {mbps:>8.0} {ratio:>7.2}x");
        };
        row(
            "skopeo copy docker: oci: + sync, from docker-registry 2.8",
            d,
            mb / d,
            1.0,
        );
        row(
            "skopeo copy docker: oci: + sync, from hyperd",
            h,
            mb / h,
            d / h,
        );
        row("cat BLOB > /dev/null (one layer)", k, blob_mb / k, 1.0);
        row(
            "curl -o /dev/null of that blob from hyperd",
            c,
            blob_mb / c,
            k / c,
        );
        let cd = self.curl_distribution;
        row(
            "curl -o /dev/null of that blob from docker-registry 2.8",
            cd,
            blob_mb / cd,
            k / cd,
        );
        println!(
            "{:<58} {:>8.3} {:>8.0} {}/{} ok, hyperd peak RSS {:.1} MiB",
            format!("{} clients pulling the image at once", self.clients),
            self.all_secs,
            mb * self.clients as f64 / self.all_secs,
            self.ok,
            self.clients,
            self.rss_mib
        );
    }
}

impl Bench<'_> {
    fn ctl(&self, d: &Daemon, args: &[&str]) {
        run(Command::new(self.bin_dir.join("hyperctl"))
            .arg("--socket")
            .arg(&d.socket)
            .args(args));
    }

    /// Seconds of `skopeo copy SOURCE oci:DIR` and the sync after it.
    fn skopeo_copy(&self, source: &str) -> f64 {
        let dir = self.work.join("serve-copy");
        sync();
        let t = Instant::now();
        run(Command::new("skopeo")
            .args([
                "copy",
                "-q",
                "--preserve-digests",
                "--src-tls-verify=false",
                source,
            ])
            .arg(format!("oci:{}:x", dir.display())));
        sync();
        let secs = t.elapsed().as_secs_f64();
        std::fs::remove_dir_all(&dir).unwrap();
        secs
    }

    /// `clients` shells at once, each fetching the manifest and every blob; how many got every
    /// one, and the wall time of them all.
    fn concurrent_pulls(&self, served: &Served, clients: usize) -> (usize, f64) {
        let mut script = format!(
            "set -e; curl -sf -o /dev/null -H 'Accept: {MANIFEST_ACCEPT}' {}/manifests/1",
            served.base
        );
        for (digest, _) in &served.blobs {
            script.push_str(&format!(
                "; curl -sf -o /dev/null {}/blobs/{digest}",
                served.base
            ));
        }
        let t = Instant::now();
        let children: Vec<_> = (0..clients)
            .map(|_| {
                Command::new("sh")
                    .args(["-c", &script])
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let ok = children
            .into_iter()
            .filter_map(|mut c| c.wait().ok())
            .filter(|s| s.success())
            .count();
        (ok, t.elapsed().as_secs_f64())
    }
}

impl Served {
    /// The manifest of `repo:tag` at `base` (`http://HOST:PORT`), its blobs listed.
    fn read(base: &str, repo: &str, tag: &str) -> Served {
        let base = format!("{base}/v2/{repo}");
        let url = format!("{base}/manifests/{tag}");
        let mut body = None;
        // The endpoint listens once hyperd is ready; a few tries cover a slow first accept.
        for _ in 0..50 {
            let out = Command::new("curl")
                .args(["-sf", "-H", &format!("Accept: {MANIFEST_ACCEPT}"), &url])
                .output()
                .unwrap();
            if out.status.success() {
                body = Some(out.stdout);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let manifest: serde_json::Value =
            serde_json::from_slice(&body.unwrap_or_else(|| panic!("{url} never answered")))
                .unwrap();
        let blob = |d: &serde_json::Value| {
            (
                d["digest"].as_str().unwrap().to_owned(),
                d["size"].as_u64().unwrap(),
            )
        };
        let mut blobs = vec![blob(&manifest["config"])];
        blobs.extend(manifest["layers"].as_array().unwrap().iter().map(blob));
        Served { base, blobs }
    }

    fn largest(&self) -> (String, u64) {
        self.blobs.iter().max_by_key(|b| b.1).unwrap().clone()
    }
}

fn timed(cmd: &mut Command) -> f64 {
    run(cmd).secs
}

/// A port nothing listens on now, for hyperd to take.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
