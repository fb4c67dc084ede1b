//! The main cases: hyperctl's first load, a load of stored blobs, a save, and a load of many
//! small files, against `cp + sync` of the same archive, and skopeo's copies of both archives.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::measure::{Daemon, median, run, sync};
use crate::reload::Reloads;

/// The archives the cases move, and their sizes in MB.
pub(crate) struct Inputs {
    pub(crate) big: PathBuf,
    pub(crate) big_mb: f64,
    /// The big image plus one small layer.
    pub(crate) next: PathBuf,
    pub(crate) small: PathBuf,
    pub(crate) small_mb: f64,
}

/// The hyperctl cases, in the order they run and print.
const FIRST: usize = 0;
const AGAIN: usize = 1;
const SAVE: usize = 2;
const SMALL: usize = 3;

/// MB/s of every run of each case, and the peaks of resident memory across runs.
#[derive(Default)]
pub(crate) struct Samples {
    floors: Vec<f64>,
    hyperctl: [Vec<f64>; 4],
    /// Seconds of each first load, for the re-loads' speed-ups.
    pub(crate) first_secs: Vec<f64>,
    hyperd_peaks: [u64; 4],
    client_peaks: [u64; 4],
    skopeo_big: Vec<f64>,
    skopeo_small: Vec<f64>,
    skopeo_big_rss: u64,
    skopeo_small_rss: u64,
}

impl Samples {
    /// One run of the floor, the hyperctl cases and the re-loads, which run between them.
    pub(crate) fn measure(
        &mut self,
        bin_dir: &Path,
        daemon: &Daemon,
        inputs: &Inputs,
        work: &Path,
        reloads: &mut Reloads,
    ) {
        let dest = work.join("copy.tar");
        sync();
        let t = Instant::now();
        run(Command::new("cp").arg(&inputs.big).arg(&dest));
        sync();
        self.floors.push(inputs.big_mb / t.elapsed().as_secs_f64());
        std::fs::remove_file(&dest).unwrap();

        let ctl = || {
            let mut c = Command::new(bin_dir.join("hyperctl"));
            // These cases stream; local.rs measures the handed-over file beside streaming.
            c.arg("--socket")
                .arg(&daemon.socket)
                .env("HYPERCTL_NO_FD", "1");
            c
        };
        let mut hyperctl = |case: usize, mb: f64, args: &[&str]| {
            sync();
            daemon.reset_peak();
            let run = run(ctl().args(args));
            self.hyperctl[case].push(mb / run.secs);
            self.hyperd_peaks[case] = self.hyperd_peaks[case].max(daemon.peak_rss_kib());
            self.client_peaks[case] = self.client_peaks[case].max(run.max_rss_kib);
        };
        let big = inputs.big.to_str().unwrap();
        hyperctl(FIRST, inputs.big_mb, &["load", "-q", "-i", big]);
        hyperctl(AGAIN, inputs.big_mb, &["load", "-q", "-i", big]);
        reloads.measure(
            &bin_dir.join("hyperctl"),
            &daemon.socket,
            &inputs.big,
            &inputs.next,
        );
        let out = work.join("saved.tar");
        let saved = out.to_str().unwrap();
        hyperctl(
            SAVE,
            inputs.big_mb,
            &["save", "-q", "-f", "oci", "-o", saved, "big:1"],
        );
        std::fs::remove_file(&out).unwrap();
        run(ctl().args(["rmi", "big:1"]));
        let small = inputs.small.to_str().unwrap();
        hyperctl(SMALL, inputs.small_mb, &["load", "-q", "-i", small]);
        run(ctl().args(["rmi", "small:1"]));
        let first = self.hyperctl[FIRST].last().unwrap();
        self.first_secs.push(inputs.big_mb / first);
    }

    /// One run of skopeo copying each archive into an OCI layout.
    pub(crate) fn measure_skopeo(&mut self, inputs: &Inputs, work: &Path) {
        for (archive, mb, out, rss) in [
            (
                &inputs.big,
                inputs.big_mb,
                &mut self.skopeo_big,
                &mut self.skopeo_big_rss,
            ),
            (
                &inputs.small,
                inputs.small_mb,
                &mut self.skopeo_small,
                &mut self.skopeo_small_rss,
            ),
        ] {
            let dir = work.join("skopeo-oci");
            sync();
            let t = Instant::now();
            let reference = if archive == &inputs.big {
                "big:1"
            } else {
                "small:1"
            };
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

    /// The medians, as the rows to print.
    pub(crate) fn cases(&self, inputs: &Inputs, small_files: usize, skopeo: bool) -> Vec<Case> {
        let floor = median(self.floors.clone());
        let hyperctl = |name: String, case: usize, floor: Option<f64>| Case {
            name,
            mb_per_s: median(self.hyperctl[case].clone()),
            floor,
            hyperd_kib: Some(self.hyperd_peaks[case]),
            client_kib: self.client_peaks[case],
        };
        let mut cases = vec![
            Case {
                name: format!("floor: cp + sync ({:.0} MB)", inputs.big_mb),
                mb_per_s: floor,
                floor: Some(floor),
                hyperd_kib: None,
                client_kib: 0,
            },
            hyperctl("hyperctl load (first)".into(), FIRST, Some(floor)),
            hyperctl(
                "hyperctl load (blobs already stored)".into(),
                AGAIN,
                Some(floor),
            ),
            hyperctl("hyperctl save -f oci -o FILE".into(), SAVE, Some(floor)),
            hyperctl(
                format!(
                    "hyperctl load, {small_files} small files ({:.1} MB)",
                    inputs.small_mb
                ),
                SMALL,
                None,
            ),
        ];
        if skopeo {
            cases.push(Case {
                name: "skopeo copy oci-archive: oci: + sync".into(),
                mb_per_s: median(self.skopeo_big.clone()),
                floor: Some(floor),
                hyperd_kib: None,
                client_kib: self.skopeo_big_rss,
            });
            cases.push(Case {
                name: format!("skopeo copy, {small_files} small files"),
                mb_per_s: median(self.skopeo_small.clone()),
                floor: None,
                hyperd_kib: None,
                client_kib: self.skopeo_small_rss,
            });
        }
        cases
    }
}

/// One row of the table: MB/s, its ratio to the floor, and peak resident memory.
pub(crate) struct Case {
    name: String,
    mb_per_s: f64,
    floor: Option<f64>,
    hyperd_kib: Option<u64>,
    client_kib: u64,
}

pub(crate) fn print(cases: &[Case]) {
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
