//! The operations measured at one store size: hyperctl's listings and single-image commands
//! (each a process, as a user runs it), Referrers and Info as gRPC calls on one connection, and
//! `check` once; with hyperd's peak RSS while listing, removing (and collecting) and checking.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hyperd_proto::v1::content_service_client::ContentServiceClient;
use hyperd_proto::v1::image_service_client::ImageServiceClient;
use hyperd_proto::v1::{InfoRequest, ReferrersRequest};

use integration::fixtures::sha;
use integration::scale::tiny_image;

use super::tiny_name;
use crate::measure::{Daemon, Run, try_run};

/// Every run of one operation, or why it failed (the first failure ends its runs).
pub(crate) struct Timing {
    pub(crate) name: String,
    pub(crate) secs: Vec<f64>,
    pub(crate) error: Option<String>,
}

/// Runs always made, and the time after which no further run starts: a slow store (today's at
/// 100,000 images takes minutes a run) still finishes, while a fast one gets every `--runs` run.
const MIN_RUNS: usize = 3;
const BUDGET: Duration = Duration::from_secs(120);

/// The figures at one store size.
pub(crate) struct AtSize {
    /// The runs made: `--runs`, or fewer past `BUDGET`.
    pub(crate) runs: usize,
    pub(crate) timings: Vec<Timing>,
    /// hyperd's and hyperctl's peak RSS (KiB) over the full listings.
    pub(crate) list_hyperd_kib: u64,
    pub(crate) list_ctl_kib: u64,
    /// hyperd's peak RSS over removing an image and collecting its blobs.
    pub(crate) gc_hyperd_kib: u64,
    pub(crate) check: Result<f64, String>,
    pub(crate) check_hyperd_kib: u64,
}

impl AtSize {
    pub(crate) fn record(&mut self, name: &str, result: Result<f64, String>) {
        let t = match self.timings.iter_mut().position(|t| t.name == name) {
            Some(i) => &mut self.timings[i],
            None => {
                self.timings.push(Timing {
                    name: name.to_owned(),
                    secs: Vec::new(),
                    error: None,
                });
                self.timings.last_mut().unwrap()
            }
        };
        match result {
            Ok(secs) => t.secs.push(secs),
            Err(e) => {
                t.error.get_or_insert(e);
            }
        }
    }

    pub(crate) fn timing(&self, name: &str) -> Option<&Timing> {
        self.timings.iter().find(|t| t.name == name)
    }
}

/// What the measurements run with.
pub(crate) struct Ctx<'a> {
    pub(crate) hyperctl: &'a Path,
    pub(crate) daemon: &'a Daemon,
    /// One 1-image archive per run, of an image no store holds, and that image's name.
    pub(crate) extras: &'a [(PathBuf, String)],
    /// Whether this hyperctl has docker's `--filter` and `--digests` for `images`.
    pub(crate) filters: bool,
}

pub(crate) const LIST: &str = "`hyperctl images`";
pub(crate) const LIST_Q: &str = "`hyperctl images -q`";
pub(crate) const LIST_DIGESTS: &str = "`hyperctl images --digests`";
pub(crate) const LIST_REF: &str = "`hyperctl images --filter reference=scale/imgK`";
pub(crate) const LIST_DANGLING: &str = "`hyperctl images --filter dangling=true`";
pub(crate) const INSPECT: &str = "`hyperctl inspect`";
pub(crate) const TAG: &str = "`hyperctl tag`";
pub(crate) const RMI_TAG: &str = "`hyperctl rmi` of a tag";
pub(crate) const LOAD_ONE: &str = "`hyperctl load` of one image";
pub(crate) const RMI_IMAGE: &str = "`hyperctl rmi` of an image (with its GC)";
pub(crate) const REFERRERS: &str = "Referrers (gRPC call)";
pub(crate) const INFO: &str = "Info of one blob (gRPC call)";

impl Ctx<'_> {
    fn ctl(&self, args: &[&str]) -> Result<Run, String> {
        try_run(
            Command::new(self.hyperctl)
                .arg("--socket")
                .arg(&self.daemon.socket)
                .args(args),
        )
        .map_err(|e| format!("`hyperctl {}` failed, {e}", args.join(" ")))
    }

    /// `runs` runs (fewer when slow) of every operation in a store of `images` tiny images
    /// (`scale/img0:v1`…), each run on another image, then `check` once.
    pub(crate) async fn measure(&self, images: usize, runs: usize) -> AtSize {
        let mut at = AtSize {
            runs: 0,
            timings: Vec::new(),
            list_hyperd_kib: 0,
            list_ctl_kib: 0,
            gc_hyperd_kib: 0,
            check: Err("not run".into()),
            check_hyperd_kib: 0,
        };
        let channel = hyperd_proto::connect(&self.daemon.socket).await.unwrap();
        let mut images_api = ImageServiceClient::new(channel.clone());
        let mut content_api = ContentServiceClient::new(channel);
        let start = Instant::now();
        for r in 0..runs {
            if r >= MIN_RUNS && start.elapsed() > BUDGET {
                eprintln!("  stopping after {r} runs, {BUDGET:?} spent");
                break;
            }
            at.runs = r + 1;
            eprintln!("  run {}/{runs}", r + 1);
            // Spread over the store, so that no run finds the last one's pages cached.
            let k = (r * 7919 + 13) % images;
            self.listings(&mut at, k);
            self.single_image(&mut at, k, r);
            let (config, manifest) = tiny_image(k);
            let t = Instant::now();
            let referrers = images_api
                .referrers(ReferrersRequest {
                    digest: sha(&manifest),
                    artifact_type: String::new(),
                })
                .await;
            at.record(REFERRERS, timed(t, referrers));
            let t = Instant::now();
            let info = content_api
                .info(InfoRequest {
                    digests: vec![sha(&config)],
                })
                .await;
            at.record(INFO, timed(t, info));
        }
        eprintln!("  check");
        self.daemon.reset_peak();
        at.check = self.ctl(&["check"]).map(|r| r.secs);
        at.check_hyperd_kib = self.daemon.peak_rss_kib();
        at
    }

    /// Runs hyperctl with `args` as a run of operation `name`, unless an earlier run of it
    /// failed (a repeat would only fail again, slowly when the store is big).
    fn attempt(&self, at: &mut AtSize, name: &str, args: &[&str]) -> Option<Run> {
        if at.timing(name).is_some_and(|t| t.error.is_some()) {
            return None;
        }
        let result = self.ctl(args);
        at.record(name, result.as_ref().map(|r| r.secs).map_err(Clone::clone));
        result.ok()
    }

    /// The full listings, with the peak RSS of both sides, and the filtered ones.
    fn listings(&self, at: &mut AtSize, k: usize) {
        self.daemon.reset_peak();
        let full = self.attempt(at, LIST, &["images"]);
        at.list_hyperd_kib = at.list_hyperd_kib.max(self.daemon.peak_rss_kib());
        if let Some(run) = full {
            at.list_ctl_kib = at.list_ctl_kib.max(run.max_rss_kib);
        }
        self.attempt(at, LIST_Q, &["images", "-q"]);
        if !self.filters {
            return;
        }
        let reference = format!("reference=scale/img{k}");
        self.attempt(at, LIST_DIGESTS, &["images", "--digests"]);
        self.attempt(at, LIST_REF, &["images", "--filter", &reference]);
        self.attempt(at, LIST_DANGLING, &["images", "--filter", "dangling=true"]);
    }

    /// inspect, tag, rmi of that tag, load of a new image and its removal, with its GC.
    fn single_image(&self, at: &mut AtSize, k: usize, r: usize) {
        let name = tiny_name(k);
        let tag = format!("scale/tag{k}:r{r}");
        self.attempt(at, INSPECT, &["inspect", &name]);
        self.attempt(at, TAG, &["tag", &name, &tag]);
        self.attempt(at, RMI_TAG, &["rmi", &tag]);
        let (extra, extra_name) = &self.extras[r];
        self.attempt(at, LOAD_ONE, &["load", "-q", "-i", path_str(extra)]);
        self.daemon.reset_peak();
        self.attempt(at, RMI_IMAGE, &["rmi", extra_name]);
        at.gc_hyperd_kib = at.gc_hyperd_kib.max(self.daemon.peak_rss_kib());
    }
}

fn timed<T>(start: Instant, result: Result<T, hyperd_proto::tonic::Status>) -> Result<f64, String> {
    let secs = start.elapsed().as_secs_f64();
    result
        .map(|_| secs)
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}
