//! The scale benchmark's table, in markdown for the README: each figure at 1,000 images beside
//! the same at the big size, their ratio, the target, and containerd's figure.

use std::process::Command;

use super::Results;
use super::ctr::Figures;
use super::ops::{self, AtSize};
use crate::measure::median;

/// A duration in the unit that reads best.
fn duration(secs: f64) -> String {
    match secs {
        s if s < 0.01 => format!("{:.1} ms", s * 1e3),
        s if s < 1.0 => format!("{:.0} ms", s * 1e3),
        s if s < 10.0 => format!("{s:.2} s"),
        s => format!("{s:.1} s"),
    }
}

/// Nothing read (0: the command failed) is "n/a".
fn mib(kib: u64) -> String {
    match kib {
        0 => "n/a".into(),
        k => format!("{:.0} MiB", k as f64 / 1024.0),
    }
}

/// The failures the table's cells refer to, printed under it.
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    /// A duration, or "fails (n)" with the failure as note n.
    fn cell(&mut self, result: &Result<f64, String>) -> String {
        match result {
            Ok(secs) => duration(*secs),
            Err(e) => {
                // One line is enough: the first of the message, at most 300 characters.
                let line: String = e.lines().next().unwrap_or("").chars().take(300).collect();
                self.0.push(line);
                format!("fails ({})", self.0.len())
            }
        }
    }
}

fn ratio(small: &Result<f64, String>, big: &Result<f64, String>) -> String {
    match (small, big) {
        (Ok(s), Ok(b)) => format!("{:.1}×", b / s),
        _ => String::new(),
    }
}

/// The median of an operation's runs, or its failure.
fn figure(at: &AtSize, name: &str) -> Option<Result<f64, String>> {
    let t = at.timing(name)?;
    Some(match &t.error {
        Some(e) => Err(e.clone()),
        None => Ok(median(t.secs.clone())),
    })
}

fn row(cells: &[&str]) {
    println!("| {} |", cells.join(" | "));
}

/// The operations as rows: name, target, and containerd's figure where it has one.
fn operation_rows(r: &Results, ctr: Option<&Figures>, notes: &mut Notes) {
    let big = thousands(r.scale_images);
    let ctr_cell = |notes: &mut Notes, f: Option<&Option<Result<f64, String>>>, label: &str| {
        f.and_then(Option::as_ref)
            .map(|res| format!("{label} {}", notes.cell(res)))
            .unwrap_or_default()
    };
    for (name, target) in [
        (ops::LIST, format!("≤ 2 s at {big}")),
        (ops::LIST_Q, String::new()),
        (ops::LIST_DIGESTS, String::new()),
        (ops::LIST_REF, String::new()),
        (ops::LIST_DANGLING, String::new()),
        (ops::INSPECT, "≤ 2×".into()),
        (ops::TAG, "≤ 2×".into()),
        (ops::RMI_TAG, "≤ 2×".into()),
        (ops::LOAD_ONE, "≤ 2×".into()),
        (ops::RMI_IMAGE, "≤ 2×".into()),
        (ops::REFERRERS, "≤ 2×".into()),
        (ops::INFO, "≤ 2×".into()),
        (super::policy::POLICY_PASS, String::new()),
    ] {
        let (Some(small), Some(big)) = (figure(&r.small, name), figure(&r.big, name)) else {
            continue;
        };
        let theirs = match name {
            ops::LIST => {
                let mut cell = ctr_cell(notes, ctr.map(|c| &c.small_ls), "`ctr images ls`");
                if let Some(c) = ctr.filter(|c| c.big_ls.is_some()) {
                    let at = format!("; at {}:", thousands(c.big_images));
                    cell += &ctr_cell(notes, Some(&c.big_ls), &at);
                }
                cell
            }
            ops::LIST_Q => ctr_cell(notes, ctr.map(|c| &c.small_ls_q), "`ctr images ls -q`"),
            _ => String::new(),
        };
        let (s, b) = (notes.cell(&small), notes.cell(&big));
        row(&[name, &s, &b, &ratio(&small, &big), &target, &theirs]);
    }
}

/// The loads: the 1,000-image archive beside containerd's import, and the big store's batches.
fn load_rows(r: &Results, ctr: Option<&Figures>, notes: &mut Notes) {
    let theirs = match ctr.and_then(|c| c.small_import.as_ref()) {
        Some(Ok(c)) => match &r.small_load {
            Ok(h) => format!("{} ({:.0}× hyperd's time)", duration(*c), c / h),
            Err(_) => duration(*c),
        },
        Some(Err(e)) => notes.cell(&Err(e.clone())),
        None => String::new(),
    };
    let load = notes.cell(&r.small_load);
    row(&[
        "load of the 1,000-image archive, empty store",
        &load,
        "",
        "",
        "containerd ≥ 50× slower",
        &theirs,
    ]);
    let loads: Result<Vec<f64>, String> = r.batch_loads.iter().cloned().collect();
    let (cell, last_first, total) = match loads {
        Ok(secs) if !secs.is_empty() => {
            let (first, last) = (secs[0], secs[secs.len() - 1]);
            let cell = format!(
                "{} / {} / {}",
                duration(first),
                duration(median(secs.clone())),
                duration(last)
            );
            (
                cell,
                format!("last {:.1}× first", last / first),
                Ok(secs.iter().sum()),
            )
        }
        Ok(_) => return,
        Err(e) => (notes.cell(&Err(e.clone())), String::new(), Err(e)),
    };
    let batches = format!(
        "loads of {} archives of {}, one after another: first / median / last",
        r.batch_loads.len(),
        thousands(r.batch)
    );
    row(&[&batches, "", &cell, &last_first, "last ≤ first", ""]);
    let total = notes.cell(&total);
    row(&["all of those loads", "", &total, "", "", ""]);
}

/// `check`, and hyperd's (and hyperctl's) peak RSS.
fn memory_rows(r: &Results, notes: &mut Notes) {
    let (s, b) = (notes.cell(&r.small.check), notes.cell(&r.big.check));
    row(&[
        "`hyperctl check`",
        &s,
        &b,
        &ratio(&r.small.check, &r.big.check),
        "both cores, progress",
        "",
    ]);
    for (name, small, big, target) in [
        (
            "hyperd peak RSS: loading",
            r.small_load_kib,
            r.big_load_kib,
            "≤ 128 MiB",
        ),
        (
            "hyperd peak RSS: listing",
            r.small.list_hyperd_kib,
            r.big.list_hyperd_kib,
            "≤ 128 MiB",
        ),
        (
            "hyperctl peak RSS: listing",
            r.small.list_ctl_kib,
            r.big.list_ctl_kib,
            "a page",
        ),
        (
            "hyperd peak RSS: rmi and its GC",
            r.small.gc_hyperd_kib,
            r.big.gc_hyperd_kib,
            "≤ 128 MiB",
        ),
        (
            "hyperd peak RSS: check",
            r.small.check_hyperd_kib,
            r.big.check_hyperd_kib,
            "≤ 128 MiB",
        ),
    ] {
        let times = match (small, big) {
            (0, _) | (_, 0) => String::new(),
            _ => format!("{:.1}×", big as f64 / small as f64),
        };
        row(&[name, &mib(small), &mib(big), &times, target, ""]);
    }
}

/// 100000 as "100,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Where and when: the date, the commit, the CPUs and memory.
fn machine() -> String {
    let out = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "?".into())
    };
    let date = out(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
    let commit = out(Command::new("git").args(["rev-parse", "--short", "HEAD"]));
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |m| m.trim_start_matches([' ', '\t', ':']));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|m| m.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!(
        "{date}, commit {commit}, {cores} × {model}, {:.0} GiB",
        mem_kib as f64 / (1 << 20) as f64
    )
}

pub(crate) fn print(r: &Results) {
    let big = thousands(r.scale_images);
    println!("\n### {big} images ({})\n", machine());
    println!(
        "Medians of {} runs at 1,000 images and {} at {big} (of --runs {}, at least 3; no run \
         starts after 2 minutes). The big store was filled by {} archives of {}; each image is a \
         distinct config and manifest over one shared 5-byte layer. hyperctl commands are timed \
         as whole processes; Referrers and Info as single calls on an open connection. A peak \
         RSS is hyperd's highest resident size from the operation's start (VmHWM reset then), so \
         it is at least what hyperd held before it.\n",
        r.small.runs,
        r.big.runs,
        r.runs,
        r.batch_loads.len(),
        thousands(r.batch)
    );
    row(&[
        "operation",
        "1,000 images",
        &format!("{big} images"),
        "ratio",
        "target",
        "containerd",
    ]);
    row(&["---"; 6]);
    let mut notes = Notes::default();
    let ctr = r.ctr.as_ref();
    load_rows(r, ctr, &mut notes);
    operation_rows(r, ctr, &mut notes);
    memory_rows(r, &mut notes);
    if !notes.0.is_empty() {
        println!();
    }
    for (i, note) in notes.0.iter().enumerate() {
        println!("{}. {note}", i + 1);
    }
}
