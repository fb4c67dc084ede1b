//! Load and save throughput and peak memory, end to end through hyperctl and hyperd, as ratios
//! to floors measured in the same run. Run it with `scripts/bench` (release binaries).
//!
//! Cases: a first load, a load of an image the store already holds, a save, and an image of many
//! small files; skopeo's figures beside them where it is installed (`cases.rs`). Then re-loads as
//! speed-ups over the first load: from the file, from a pipe, from a pipe sending every byte, and
//! an image that adds one 1 MiB layer to the stored one (`reload.rs`). Then pulls and pushes
//! through a registry on loopback (`registry.rs`; `--registry-only` measures those alone).
//! Medians of `--runs` runs. `--scale` measures a store of many tiny images instead (`scale/`);
//! `--serve` hyperd as a registry beside docker-registry (`serve.rs`). `--observe` what the
//! metrics page and an events subscriber cost a first load (`observe.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Parser;
use integration::fixtures::*;

mod archive;
mod cases;
mod local;
mod measure;
mod observe;
mod registry;
mod reload;
mod scale;
mod serve;

use archive::{make_layer, write_archive};
use cases::{Inputs, Samples};
use measure::{Daemon, median};
use reload::Reloads;

/// Load, save, pull and push through hyperctl and hyperd, beside `cp + sync` of the same archive
/// and skopeo where installed.
#[derive(Parser)]
struct Args {
    /// Runs of each case; the figures are their medians [default: 3, 15 with --scale]
    #[arg(long)]
    runs: Option<usize>,
    /// Layers of the big image.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// MiB of incompressible data in each layer of the big image.
    #[arg(long, default_value_t = 256)]
    layer_mib: usize,
    /// Files in the image of many small files.
    #[arg(long, default_value_t = 2000)]
    small_files: usize,
    /// Where the work directory goes.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    dir: PathBuf,
    /// Only write the big archive here and stop: for measuring by hand.
    #[arg(long)]
    make_archive: Option<PathBuf>,
    /// Measure only pulls and pushes through a registry on loopback.
    #[arg(long)]
    registry_only: bool,
    /// Measure a store of many tiny images against one of 1,000 instead (issue 24).
    #[arg(long)]
    scale: bool,
    /// With --scale: images in the big store.
    #[arg(long, default_value_t = 100_000)]
    scale_images: usize,
    /// With --scale: images per archive loaded into the big store.
    #[arg(long, default_value_t = 5_000)]
    scale_batch: usize,
    /// With --scale: also import 10,000 images into containerd and time `ctr images ls` (minutes).
    #[arg(long)]
    scale_containerd_ls: bool,
    /// Measure only hyperd as a registry (`--registry-listen`) against docker-registry (issue 25).
    #[arg(long)]
    serve: bool,
    /// With --serve: clients pulling the image at once.
    #[arg(long, default_value_t = 50)]
    serve_clients: usize,
    /// Measure only what watching hyperd costs: a first load with the metrics page scraped and
    /// `hyperctl events` following, against one with neither (issue 26).
    #[arg(long)]
    observe: bool,
}

/// The uncompressed layer files of the big image: `layers` of `layer_mib` MiB each.
async fn big_layers(args: &Args, work: &Path) -> Vec<(PathBuf, String, u64)> {
    eprintln!(
        "making a {} x {} MiB image of incompressible layers in {}",
        args.layers,
        args.layer_mib,
        work.display()
    );
    let mut layers = Vec::new();
    for i in 0..args.layers {
        let tar = big_layer_tar(&format!("bench-{i}"), args.layer_mib << 20).await;
        layers.push(make_layer(work, tar, i).await);
    }
    layers
}

/// The big image plus one 1 MiB layer, tagged `next:1`; the layer files are removed.
async fn next_archive(work: &Path, layers: &[(PathBuf, String, u64)]) -> PathBuf {
    let mut plus_one = layers.to_vec();
    let new = make_layer(
        work,
        big_layer_tar("bench-new", 1 << 20).await,
        layers.len(),
    )
    .await;
    plus_one.push(new);
    let next = work.join("next.tar");
    write_archive(&next, &plus_one, "next:1").await;
    for (p, _, _) in &plus_one {
        std::fs::remove_file(p).unwrap();
    }
    next
}

/// An image of `files` small files, tagged `small:1`.
async fn small_archive(files: usize, work: &Path) -> PathBuf {
    let entries: Vec<Entry> = (0..files)
        .map(|i| {
            Entry::file(
                &format!("usr/share/f{i:05}"),
                &noise(&format!("small-{i}"), 512 + (i * 37) % 8192),
            )
        })
        .collect();
    let small_layer = make_layer(work, tar(&entries).await, 999).await;
    let small = work.join("small.tar");
    write_archive(&small, std::slice::from_ref(&small_layer), "small:1").await;
    small
}

fn megabytes(path: &Path) -> f64 {
    std::fs::metadata(path).unwrap().len() as f64 / 1e6
}

fn scale_of(args: &Args) -> scale::Scale {
    scale::Scale {
        images: args.scale_images,
        batch: args.scale_batch,
        runs: args.runs.unwrap_or(15),
        containerd_ls: args.scale_containerd_ls,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let bin_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let work = tempfile::Builder::new()
        .prefix("hyperd-bench-")
        .tempdir_in(&args.dir)
        .unwrap();
    let w = work.path();
    if args.scale {
        return scale::bench(&bin_dir, w, scale_of(&args)).await;
    }
    let runs = args.runs.unwrap_or(3);
    let has_skopeo = Command::new("skopeo")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());

    let layers = big_layers(&args, w).await;
    let big = args
        .make_archive
        .clone()
        .unwrap_or_else(|| w.join("big.tar"));
    write_archive(&big, &layers, "big:1").await;
    if args.make_archive.is_some() {
        return;
    }
    if args.serve || args.observe {
        for (p, _, _) in &layers {
            std::fs::remove_file(p).unwrap();
        }
        match args.serve {
            true => serve::bench(&bin_dir, &big, runs, w, args.serve_clients),
            false => observe::bench(&bin_dir, &big, runs, w),
        }
        return;
    }
    if args.registry_only {
        for (p, _, _) in &layers {
            std::fs::remove_file(p).unwrap();
        }
        registry::bench(&bin_dir, &big, runs, w, has_skopeo);
        return;
    }
    let next = next_archive(w, &layers).await;
    let small = small_archive(args.small_files, w).await;
    let inputs = Inputs {
        big_mb: megabytes(&big),
        small_mb: megabytes(&small),
        big,
        next,
        small,
    };

    let daemon = Daemon::start(&bin_dir, w);
    let mut samples = Samples::default();
    let mut reloads = Reloads::default();
    let mut locals = local::Locals::default();
    for r in 0..runs {
        eprintln!("run {}/{runs}", r + 1);
        samples.measure(&bin_dir, &daemon, &inputs, w, &mut reloads);
        locals.measure(&bin_dir.join("hyperctl"), &daemon, &inputs.big, w);
        if has_skopeo {
            samples.measure_skopeo(&inputs, w);
        }
    }
    println!(
        "\nmedians of {runs} runs; image {} x {} MiB incompressible layers\n",
        args.layers, args.layer_mib
    );
    let first_secs = median(samples.first_secs.clone());
    cases::print(&samples.cases(&inputs, args.small_files, has_skopeo));
    reloads.print(first_secs);
    locals.print(w);
    registry::bench(&bin_dir, &inputs.big, runs, w, has_skopeo);
}
