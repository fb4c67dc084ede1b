//! `--scale`: hyperd with many tiny images (issue 24). A store of 1,000 images (one archive) and
//! one of `--scale-images` (archives of `--scale-batch`, loaded one after another into the same
//! store) get the same operations, whose medians are printed side by side with their ratio, and
//! beside a private containerd's import and listing of the same archives where it is installed.
//! hyperd's peak RSS (VmHWM) is read after loading and during listing, collecting and checking.
//! The images are `integration::scale`'s tiny images, named `scale/imgK:v1` here.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration::scale::tiny_images_layout;
use integration::tools::Containerd;

use crate::measure::{Daemon, try_run};

mod ctr;
mod ops;
mod policy;
mod report;

use ops::{AtSize, Ctx, path_str};

/// The images of the small store, the yardstick of every ratio.
const SMALL: usize = 1000;

/// Runs of containerd's listings at most: seconds each at 10,000 images.
const CTR_RUNS: usize = 5;

/// What `--scale` was asked for.
pub(crate) struct Scale {
    pub(crate) images: usize,
    pub(crate) batch: usize,
    pub(crate) runs: usize,
    /// Also import `ctr::LS_IMAGES` images into containerd and time its listing (minutes).
    pub(crate) containerd_ls: bool,
}

/// The archives, written once: the small store's, the big store's batches, one per run of a
/// single new image.
struct Archives {
    small: PathBuf,
    batches: Vec<PathBuf>,
    extras: Vec<(PathBuf, String)>,
}

/// Image `k`'s name in every archive.
fn tiny_name(k: usize) -> String {
    format!("scale/img{k}:v1")
}

async fn write_archives(s: &Scale, work: &Path) -> Archives {
    eprintln!(
        "scale: writing archives of tiny images: {SMALL}, and {} in batches of {}",
        s.images, s.batch
    );
    // A directory each, as an archive's file is named by its range only.
    let dirs = ["small", "batches", "extras"].map(|d| work.join(d));
    for dir in &dirs {
        std::fs::create_dir(dir).unwrap();
    }
    let [small, batches, extras] = &dirs;
    let small = tiny_images_layout(small, 0..SMALL, tiny_name).await;
    let mut batch_paths = Vec::new();
    for first in (0..s.images).step_by(s.batch) {
        let range = first..(first + s.batch).min(s.images);
        batch_paths.push(tiny_images_layout(batches, range, tiny_name).await);
    }
    let mut extra_paths = Vec::new();
    // Past the big store's images, and so the small one's.
    for k in s.images..s.images + s.runs {
        let path = tiny_images_layout(extras, k..k + 1, tiny_name).await;
        extra_paths.push((path, tiny_name(k)));
    }
    Archives {
        small,
        batches: batch_paths,
        extras: extra_paths,
    }
}

/// Everything measured, for the report.
pub(crate) struct Results {
    pub(crate) scale_images: usize,
    pub(crate) batch: usize,
    pub(crate) runs: usize,
    /// Loading the 1,000-image archive into an empty store: seconds, hyperd's peak RSS.
    pub(crate) small_load: Result<f64, String>,
    pub(crate) small_load_kib: u64,
    pub(crate) small: AtSize,
    /// Each batch's load into the growing store, in order.
    pub(crate) batch_loads: Vec<Result<f64, String>>,
    pub(crate) big_load_kib: u64,
    pub(crate) big: AtSize,
    pub(crate) ctr: Option<ctr::Figures>,
}

fn has_containerd() -> bool {
    Command::new("containerd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether this hyperctl's `images` has docker's `--filter` and `--digests`.
fn has_filters(hyperctl: &Path) -> bool {
    Command::new(hyperctl)
        .args(["images", "--help"])
        .output()
        .is_ok_and(|o| {
            let help = String::from_utf8_lossy(&o.stdout);
            help.contains("--filter") && help.contains("--digests")
        })
}

fn load(hyperctl: &Path, daemon: &Daemon, archive: &Path) -> Result<f64, String> {
    try_run(
        Command::new(hyperctl)
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["load", "-q", "-i", path_str(archive)]),
    )
    .map(|r| r.secs)
    .map_err(|e| format!("`hyperctl load` failed, {e}"))
}

/// What both stores' phases run with.
struct Env<'a> {
    bin_dir: &'a Path,
    hyperctl: PathBuf,
    archives: &'a Archives,
    filters: bool,
    runs: usize,
}

impl Env<'_> {
    fn ctx<'a>(&'a self, daemon: &'a Daemon) -> Ctx<'a> {
        Ctx {
            hyperctl: &self.hyperctl,
            daemon,
            extras: &self.archives.extras,
            filters: self.filters,
        }
    }
}

/// The store of 1,000 images: its load (and containerd's import of the same archive beside it),
/// then the operations.
async fn small_store(
    env: &Env<'_>,
    dir: &Path,
    containerd: Option<&Containerd>,
    ctr: &mut ctr::Figures,
) -> (Result<f64, String>, u64, AtSize) {
    eprintln!("scale: {SMALL} images");
    let daemon = Daemon::start(env.bin_dir, dir);
    let secs = load(&env.hyperctl, &daemon, &env.archives.small);
    let kib = daemon.peak_rss_kib();
    if let Some(c) = containerd {
        ctr.small(c, &env.archives.small, env.runs.min(CTR_RUNS));
    }
    let mut at = env.ctx(&daemon).measure(SMALL, env.runs).await;
    drop(daemon);
    let runs = at.runs;
    policy::time_passes(&dir.join("root"), &mut at, runs).await;
    (secs, kib, at)
}

/// The big store: its batches loaded one after another, then the operations.
async fn big_store(
    env: &Env<'_>,
    dir: &Path,
    images: usize,
) -> (Vec<Result<f64, String>>, u64, AtSize) {
    eprintln!("scale: {images} images");
    let daemon = Daemon::start(env.bin_dir, dir);
    let batches = &env.archives.batches;
    let mut loads = Vec::new();
    for (i, batch) in batches.iter().enumerate() {
        let secs = load(&env.hyperctl, &daemon, batch);
        match &secs {
            Ok(secs) => eprintln!("  batch {}/{}: {secs:.3} s", i + 1, batches.len()),
            Err(e) => eprintln!("  batch {}/{}: {e}", i + 1, batches.len()),
        }
        loads.push(secs);
    }
    let kib = daemon.peak_rss_kib();
    let mut at = env.ctx(&daemon).measure(images, env.runs).await;
    drop(daemon);
    let runs = at.runs;
    policy::time_passes(&dir.join("root"), &mut at, runs).await;
    (loads, kib, at)
}

pub(crate) async fn bench(bin_dir: &Path, work: &Path, s: Scale) {
    assert!(
        s.images >= SMALL && s.batch > 0 && s.runs > 0,
        "--scale-images must be at least {SMALL}, --scale-batch and --runs at least 1"
    );
    let archives = write_archives(&s, work).await;
    let hyperctl = bin_dir.join("hyperctl");
    let env = Env {
        bin_dir,
        filters: has_filters(&hyperctl),
        hyperctl,
        archives: &archives,
        runs: s.runs,
    };
    let containerd = has_containerd().then(|| Containerd::start(&work.join("containerd")));
    if containerd.is_none() {
        eprintln!("scale: no containerd installed: no containerd figures");
    }
    let mut ctr = ctr::Figures::default();
    let small_dir = work.join("small-store");
    let (small_load, small_load_kib, small) =
        small_store(&env, &small_dir, containerd.as_ref(), &mut ctr).await;
    std::fs::remove_dir_all(&small_dir).unwrap();
    let (batch_loads, big_load_kib, big) = big_store(&env, &work.join("big-store"), s.images).await;
    if let Some(c) = containerd.as_ref().filter(|_| s.containerd_ls) {
        let filling: Vec<&Path> = archives
            .batches
            .iter()
            .take(ctr::LS_IMAGES.div_ceil(s.batch))
            .map(PathBuf::as_path)
            .collect();
        let images = (filling.len() * s.batch).min(s.images);
        ctr.big(c, &filling, images, s.runs.min(CTR_RUNS));
    }
    report::print(&Results {
        scale_images: s.images,
        batch: s.batch,
        runs: s.runs,
        small_load,
        small_load_kib,
        small,
        batch_loads,
        big_load_kib,
        big,
        ctr: containerd.map(|_| ctr),
    });
}
