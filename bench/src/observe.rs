//! What watching hyperd costs: a first load of the big image into an empty store while a
//! scraper reads `--metrics-listen` every second (15 times Prometheus' default) and `hyperctl
//! events` follows live, against the same load with neither: its wall time, and hyperd's own
//! CPU time, which leaves out what the watchers' processes cost the machine. Every load writes its events to the log either
//! way (that cannot be turned off, and is one ~300-byte line a load); the figure is what the
//! counters, the page and a subscriber add.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::measure::{Daemon, median, run, sync};

pub(crate) fn bench(bin_dir: &Path, big: &Path, runs: usize, work: &Path) {
    let (mut quiet, mut watched) = (vec![], vec![]);
    for r in 0..runs {
        eprintln!("observe run {}/{runs}", r + 1);
        // Alternating which goes first spreads the machine's drift over both.
        for watch in [r % 2 == 1, r % 2 == 0] {
            let dir = work.join(format!("observe-{r}-{watch}"));
            let load = first_load(bin_dir, big, &dir, watch);
            match watch {
                true => watched.push(load),
                false => quiet.push(load),
            }
        }
    }
    let secs = |v: &[(f64, f64)]| median(v.iter().map(|l| l.0).collect());
    let cpu = |v: &[(f64, f64)]| median(v.iter().map(|l| l.1).collect());
    let (q, w) = (secs(&quiet), secs(&watched));
    let (qc, wc) = (cpu(&quiet), cpu(&watched));
    println!(
        "\nwatching hyperd: a first load of {big_mb:.0} MB, medians of {runs} runs\n",
        big_mb = megabytes(big)
    );
    println!(
        "{:<62} {:>8} {:>8} {:>14} {:>8}",
        "case", "s", "ratio", "hyperd CPU s", "ratio"
    );
    let row = |case: &str, s: f64, c: f64| {
        println!(
            "{case:<62} {s:>8.3} {:>7.3}x {c:>14.3} {:>7.3}x",
            s / q,
            c / qc
        );
    };
    row("first load, no metrics page, no events subscriber", q, qc);
    row(
        "first load, metrics scraped every 1 s, `hyperctl events` on",
        w,
        wc,
    );
    println!(
        "cost of watching: {:+.1} % of the first load's time, {:+.1} % of hyperd's CPU",
        (w / q - 1.0) * 100.0,
        (wc / qc - 1.0) * 100.0
    );
}

fn megabytes(path: &Path) -> f64 {
    std::fs::metadata(path).unwrap().len() as f64 / 1e6
}

/// Seconds of `hyperctl load -i BIG` into a new store (and the sync after it), watched or not,
/// and the CPU seconds hyperd spent meanwhile.
fn first_load(bin_dir: &Path, big: &Path, dir: &Path, watched: bool) -> (f64, f64) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let page = format!("127.0.0.1:{port}");
    let args: Vec<&str> = match watched {
        true => vec!["--metrics-listen", &page],
        false => vec![],
    };
    let daemon = Daemon::start_with(bin_dir, dir, &args);
    let ctl = || {
        let mut c = Command::new(bin_dir.join("hyperctl"));
        c.arg("--socket").arg(&daemon.socket);
        c
    };
    let watchers = watched.then(|| Watchers::start(ctl(), &page));
    sync();
    let (t, cpu) = (Instant::now(), daemon.cpu_secs());
    run(ctl().args(["load", "-q", "-i"]).arg(big));
    sync();
    let secs = t.elapsed().as_secs_f64();
    let cpu = daemon.cpu_secs() - cpu;
    if let Some(w) = watchers {
        w.stop();
    }
    drop(daemon);
    std::fs::remove_dir_all(dir).unwrap();
    (secs, cpu)
}

/// A scraper of the metrics page and an events subscriber, running until stopped.
struct Watchers {
    events: Child,
    scraping: Arc<AtomicBool>,
    scraper: std::thread::JoinHandle<usize>,
}

impl Watchers {
    fn start(mut ctl: Command, page: &str) -> Watchers {
        let events = ctl
            .arg("events")
            .stdout(Stdio::null())
            .spawn()
            .expect("starting hyperctl events");
        let scraping = Arc::new(AtomicBool::new(true));
        let url = format!("http://{page}/metrics");
        let on = scraping.clone();
        let scraper = std::thread::spawn(move || {
            let mut scrapes = 0;
            while on.load(Ordering::Relaxed) {
                let ok = Command::new("curl")
                    .args(["-sf", "-o", "/dev/null", &url])
                    .status()
                    .is_ok_and(|s| s.success());
                scrapes += usize::from(ok);
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        });
        Watchers {
            events,
            scraping,
            scraper,
        }
    }

    fn stop(mut self) {
        self.scraping.store(false, Ordering::Relaxed);
        let scrapes = self.scraper.join().unwrap();
        assert!(scrapes > 0, "the metrics page was never read");
        let _ = self.events.kill();
        let _ = self.events.wait();
    }
}
