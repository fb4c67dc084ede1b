//! Local loads and saves side by side: hyperd handed the open file (LoadFile, SaveFile) against
//! the archive streamed over the socket, as ratios to `cp + sync` measured in the same run, with
//! the CPU seconds per GB each process spent (hyperctl from wait4's rusage, hyperd from
//! /proc/PID/stat) and the filesystem the run was on.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::measure::{Daemon, median, run, sync};

/// The cases, each measured handed over and streamed.
const CASES: [&str; 3] = [
    "hyperctl load -i FILE (first)",
    "hyperctl load -i FILE (blobs stored)",
    "hyperctl save -f oci -o FILE",
];
const PATHS: [(&str, Option<&str>); 2] = [("fd", None), ("streamed", Some("--no-fd"))];

#[derive(Default)]
struct Samples {
    mb_per_s: Vec<f64>,
    ctl_cpu_per_gb: Vec<f64>,
    hyperd_cpu_per_gb: Vec<f64>,
    hyperd_kib: u64,
    ctl_kib: u64,
}

#[derive(Default)]
pub(crate) struct Locals {
    floors: Vec<f64>,
    samples: [[Samples; 3]; 2],
}

impl Locals {
    /// One run of every case; `big` (image `big:1`) must not be loaded.
    pub(crate) fn measure(&mut self, hyperctl: &Path, daemon: &Daemon, big: &Path, work: &Path) {
        let mb = std::fs::metadata(big).unwrap().len() as f64 / 1e6;
        let copy = work.join("local-copy.tar");
        sync();
        let t = Instant::now();
        run(Command::new("cp").arg(big).arg(&copy));
        sync();
        self.floors.push(mb / t.elapsed().as_secs_f64());
        std::fs::remove_file(&copy).unwrap();
        let out = work.join("local-saved.tar");
        for (path, (_, flag)) in self.samples.iter_mut().zip(PATHS) {
            let case_args: [Vec<&str>; 3] = [
                vec!["load", "-q", "-i", big.to_str().unwrap()],
                vec!["load", "-q", "-i", big.to_str().unwrap()],
                vec![
                    "save",
                    "-q",
                    "-f",
                    "oci",
                    "-o",
                    out.to_str().unwrap(),
                    "big:1",
                ],
            ];
            for (samples, args) in path.iter_mut().zip(case_args) {
                let mut cmd = Command::new(hyperctl);
                cmd.arg("--socket").arg(&daemon.socket).args(&args);
                cmd.args(flag);
                sync();
                daemon.reset_peak();
                let before = daemon.cpu_secs();
                let r = run(&mut cmd);
                let gb = mb / 1e3;
                samples.mb_per_s.push(mb / r.secs);
                samples.ctl_cpu_per_gb.push(r.cpu_secs / gb);
                samples
                    .hyperd_cpu_per_gb
                    .push((daemon.cpu_secs() - before) / gb);
                samples.hyperd_kib = samples.hyperd_kib.max(daemon.peak_rss_kib());
                samples.ctl_kib = samples.ctl_kib.max(r.max_rss_kib);
            }
            std::fs::remove_file(&out).unwrap();
            run(Command::new(hyperctl)
                .arg("--socket")
                .arg(&daemon.socket)
                .args(["rmi", "big:1"]));
        }
    }

    pub(crate) fn print(self, dir: &Path) {
        let fs = Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(dir)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        println!("\nlocal loads and saves, handed-over file (fd) and streamed, on {fs}: medians\n");
        println!(
            "{:<46} {:>7} {:>8} {:>14} {:>13} {:>11} {:>11}",
            "case", "MB/s", "x floor", "hyperctl s/GB", "hyperd s/GB", "hyperd RSS", "client RSS"
        );
        let floor = median(self.floors);
        println!("{:<46} {floor:>7.0} {:>8.2}", "floor: cp + sync", 1.0);
        for (i, case) in CASES.iter().enumerate() {
            for (path, (name, _)) in self.samples.iter().zip(PATHS) {
                let s = &path[i];
                let mb_per_s = median(s.mb_per_s.clone());
                println!(
                    "{:<46} {mb_per_s:>7.0} {:>8.2} {:>14.2} {:>13.2} {:>7.1} MiB {:>7.1} MiB",
                    format!("{case}, {name}"),
                    mb_per_s / floor,
                    median(s.ctl_cpu_per_gb.clone()),
                    median(s.hyperd_cpu_per_gb.clone()),
                    s.hyperd_kib as f64 / 1024.0,
                    s.ctl_kib as f64 / 1024.0,
                );
            }
        }
    }
}
