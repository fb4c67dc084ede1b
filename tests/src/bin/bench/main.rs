//! Load and save throughput and peak memory, end to end through hyperctl and hyperd, as ratios
//! to floors measured in the same run. Run it with `scripts/bench` (release binaries).
//!
//! Cases: a first load, a load of an image the store already holds, a save, and an image of many
//! small files; skopeo's figures beside them where it is installed. Then re-loads as speed-ups over
//! the first load: from the file, from a pipe, from a pipe sending every byte, and an image that
//! adds one 1 MiB layer to the stored one. Then pulls and pushes through a registry on loopback
//! (`registry.rs`; `--registry-only` measures those alone). Medians of `--runs` runs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use integration::fixtures::*;

mod archive;
mod local;
mod measure;
mod registry;
mod reload;

use archive::{make_layer, write_archive};

use measure::{Daemon, median, run, sync};
use reload::Reloads;

struct Args {
    runs: usize,
    layers: usize,
    layer_mib: usize,
    small_files: usize,
    dir: PathBuf,
    /// Only write the big archive here and stop: for measuring by hand.
    make_archive: Option<PathBuf>,
    registry_only: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        runs: 3,
        layers: 4,
        layer_mib: 256,
        small_files: 2000,
        dir: std::env::temp_dir(),
        make_archive: None,
        registry_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--runs" => a.runs = value().parse().expect("--runs N"),
            "--layers" => a.layers = value().parse().expect("--layers N"),
            "--layer-mib" => a.layer_mib = value().parse().expect("--layer-mib N"),
            "--small-files" => a.small_files = value().parse().expect("--small-files N"),
            "--dir" => a.dir = PathBuf::from(value()),
            "--make-archive" => a.make_archive = Some(PathBuf::from(value())),
            "--registry-only" => a.registry_only = true,
            other => panic!(
                "unknown flag {other}; flags: --runs --layers --layer-mib --small-files --dir \
                 --make-archive --registry-only"
            ),
        }
    }
    a
}

struct Case {
    name: String,
    mb_per_s: f64,
    floor: Option<f64>,
    hyperd_kib: Option<u64>,
    client_kib: u64,
}

fn print(cases: &[Case]) {
    println!(
        "{:<44} {:>9} {:>8} {:>12} {:>13}",
        "case", "MB/s", "x floor", "hyperd RSS", "client RSS"
    );
    for c in cases {
        let ratio = c
            .floor
            .map_or("".into(), |f| format!("{:.2}", c.mb_per_s / f));
        let hyperd = c
            .hyperd_kib
            .map_or("".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
        println!(
            "{:<44} {:>9.0} {:>8} {:>12} {:>13}",
            c.name,
            c.mb_per_s,
            ratio,
            hyperd,
            format!("{:.1} MiB", c.client_kib as f64 / 1024.0)
        );
    }
}

#[tokio::main]
async fn main() {
    let args = parse_args();
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
    let ctl = |d: &Daemon| {
        let mut c = Command::new(bin_dir.join("hyperctl"));
        // These cases stream; local.rs measures the handed-over file beside streaming.
        c.arg("--socket").arg(&d.socket).env("HYPERCTL_NO_FD", "1");
        c
    };
    let has_skopeo = Command::new("skopeo")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());

    eprintln!(
        "making a {} x {} MiB image of incompressible layers in {}",
        args.layers,
        args.layer_mib,
        w.display()
    );
    let mut layers = Vec::new();
    for i in 0..args.layers {
        layers.push(
            make_layer(
                w,
                big_layer_tar(&format!("bench-{i}"), args.layer_mib << 20).await,
                i,
            )
            .await,
        );
    }
    let big = args
        .make_archive
        .clone()
        .unwrap_or_else(|| w.join("big.tar"));
    write_archive(&big, &layers, "big:1").await;
    if args.make_archive.is_some() {
        return;
    }
    if args.registry_only {
        for (p, _, _) in &layers {
            std::fs::remove_file(p).unwrap();
        }
        registry::bench(&bin_dir, &big, args.runs, w, has_skopeo);
        return;
    }
    let mut plus_one = layers.clone();
    plus_one.push(make_layer(w, big_layer_tar("bench-new", 1 << 20).await, args.layers).await);
    let next = w.join("next.tar");
    write_archive(&next, &plus_one, "next:1").await;
    std::fs::remove_file(&plus_one[args.layers].0).unwrap();
    for (p, _, _) in &layers {
        std::fs::remove_file(p).unwrap();
    }
    let big_mb = std::fs::metadata(&big).unwrap().len() as f64 / 1e6;

    let files: Vec<Entry> = (0..args.small_files)
        .map(|i| {
            Entry::file(
                &format!("usr/share/f{i:05}"),
                &noise(&format!("small-{i}"), 512 + (i * 37) % 8192),
            )
        })
        .collect();
    let small_layer = make_layer(w, tar(&files).await, 999).await;
    let small = w.join("small.tar");
    write_archive(&small, std::slice::from_ref(&small_layer), "small:1").await;
    let small_mb = std::fs::metadata(&small).unwrap().len() as f64 / 1e6;

    let daemon = Daemon::start(&bin_dir, w);
    let mut floors = Vec::new();
    let mut reloads = Reloads::default();
    let mut locals = local::Locals::default();
    let (mut first, mut again, mut save, mut small_load) = (vec![], vec![], vec![], vec![]);
    let mut first_secs = vec![];
    let (mut skopeo_big, mut skopeo_small) = (vec![], vec![]);
    let mut peaks = [0u64; 4];
    let mut client_peaks = [0u64; 4];
    let (mut skopeo_big_rss, mut skopeo_small_rss) = (0u64, 0u64);
    for r in 0..args.runs {
        eprintln!("run {}/{}", r + 1, args.runs);
        let dest = w.join("copy.tar");
        sync();
        let t = Instant::now();
        run(Command::new("cp").arg(&big).arg(&dest));
        sync();
        floors.push(big_mb / t.elapsed().as_secs_f64());
        std::fs::remove_file(&dest).unwrap();

        let mut measure = |slot: usize, out: &mut Vec<f64>, mb: f64, args: &[&str]| {
            sync();
            daemon.reset_peak();
            let run = run(ctl(&daemon).args(args));
            out.push(mb / run.secs);
            peaks[slot] = peaks[slot].max(daemon.peak_rss_kib());
            client_peaks[slot] = client_peaks[slot].max(run.max_rss_kib);
        };
        measure(
            0,
            &mut first,
            big_mb,
            &["load", "-q", "-i", big.to_str().unwrap()],
        );
        first_secs.push(big_mb / first.last().unwrap());
        measure(
            1,
            &mut again,
            big_mb,
            &["load", "-q", "-i", big.to_str().unwrap()],
        );
        reloads.measure(&bin_dir.join("hyperctl"), &daemon.socket, &big, &next);
        let out = w.join("saved.tar");
        measure(
            2,
            &mut save,
            big_mb,
            &[
                "save",
                "-q",
                "-f",
                "oci",
                "-o",
                out.to_str().unwrap(),
                "big:1",
            ],
        );
        std::fs::remove_file(&out).unwrap();
        run(ctl(&daemon).args(["rmi", "big:1"]));
        measure(
            3,
            &mut small_load,
            small_mb,
            &["load", "-q", "-i", small.to_str().unwrap()],
        );
        run(ctl(&daemon).args(["rmi", "small:1"]));
        locals.measure(&bin_dir.join("hyperctl"), &daemon, &big, w);

        if has_skopeo {
            for (archive, mb, out, rss) in [
                (&big, big_mb, &mut skopeo_big, &mut skopeo_big_rss),
                (&small, small_mb, &mut skopeo_small, &mut skopeo_small_rss),
            ] {
                let dir = w.join("skopeo-oci");
                sync();
                let t = Instant::now();
                let reference = if archive == &big { "big:1" } else { "small:1" };
                // Without --preserve-digests skopeo gzips uncompressed layers: a copy, not that.
                let r = run(Command::new("skopeo").args([
                    "copy",
                    "-q",
                    "--preserve-digests",
                    &format!("oci-archive:{}:{reference}", archive.display()),
                    &format!("oci:{}:x", dir.display()),
                ]));
                sync();
                out.push(mb / t.elapsed().as_secs_f64());
                *rss = (*rss).max(r.max_rss_kib);
                std::fs::remove_dir_all(&dir).unwrap();
            }
        }
    }
    let floor = median(floors);
    let mut cases = vec![
        Case {
            name: format!("floor: cp + sync ({big_mb:.0} MB)"),
            mb_per_s: floor,
            floor: Some(floor),
            hyperd_kib: None,
            client_kib: 0,
        },
        Case {
            name: "hyperctl load (first)".into(),
            mb_per_s: median(first),
            floor: Some(floor),
            hyperd_kib: Some(peaks[0]),
            client_kib: client_peaks[0],
        },
        Case {
            name: "hyperctl load (blobs already stored)".into(),
            mb_per_s: median(again),
            floor: Some(floor),
            hyperd_kib: Some(peaks[1]),
            client_kib: client_peaks[1],
        },
        Case {
            name: "hyperctl save -f oci -o FILE".into(),
            mb_per_s: median(save),
            floor: Some(floor),
            hyperd_kib: Some(peaks[2]),
            client_kib: client_peaks[2],
        },
        Case {
            name: format!(
                "hyperctl load, {} small files ({small_mb:.1} MB)",
                args.small_files
            ),
            mb_per_s: median(small_load),
            floor: None,
            hyperd_kib: Some(peaks[3]),
            client_kib: client_peaks[3],
        },
    ];
    if has_skopeo {
        cases.push(Case {
            name: "skopeo copy oci-archive: oci: + sync".into(),
            mb_per_s: median(skopeo_big),
            floor: Some(floor),
            hyperd_kib: None,
            client_kib: skopeo_big_rss,
        });
        cases.push(Case {
            name: format!("skopeo copy, {} small files", args.small_files),
            mb_per_s: median(skopeo_small),
            floor: None,
            hyperd_kib: None,
            client_kib: skopeo_small_rss,
        });
    }
    println!(
        "\nmedians of {} runs; image {} x {} MiB incompressible layers\n",
        args.runs, args.layers, args.layer_mib
    );
    print(&cases);
    reloads.print(median(first_secs));
    locals.print(w);
    registry::bench(&bin_dir, &big, args.runs, w, has_skopeo);
}
