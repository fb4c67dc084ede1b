//! Pulls and pushes through a registry on loopback (distribution 2.8, plain HTTP, its storage
//! under `--dir`): a pull into an empty store, a re-pull of the stored image, a push into an
//! empty registry (nothing to mount from, so every blob is uploaded) and a re-push, as ratios to
//! `cp` + `sync` of the same bytes and beside skopeo's copies, all in the same run. The registry
//! shares the machine's cores with hyperd, as a local registry mirror would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use integration::registry::{Mark, TestRegistry};

use crate::measure::{Daemon, median, run, sync};

#[derive(Default)]
struct Samples {
    secs: Vec<f64>,
    /// Blob GETs of a pull, blob uploads of a push.
    blobs: Vec<usize>,
    hyperd_kib: u64,
    client_kib: u64,
}

impl Samples {
    fn add(&mut self, secs: f64, blobs: usize, client_kib: u64) {
        self.secs.push(secs);
        self.blobs.push(blobs);
        self.client_kib = self.client_kib.max(client_kib);
    }
}

/// Every case's samples, and the floors.
#[derive(Default)]
struct Results {
    floors: Vec<f64>,
    pull: Samples,
    repull: Samples,
    push: Samples,
    repush: Samples,
    skopeo_pull: Samples,
    skopeo_push: Samples,
}

/// What every case runs with.
struct Bench<'a> {
    bin_dir: &'a Path,
    /// The image, an OCI archive naming it `big:1`, and its size in MB.
    big: &'a Path,
    mb: f64,
    work: &'a Path,
    /// No credentials: the registries are anonymous, and a user's config is not the bench's.
    docker_config: PathBuf,
}

/// `--runs` runs of every case on the image of `big` (an OCI archive naming it `big:1`).
pub(crate) fn bench(bin_dir: &Path, big: &Path, runs: usize, work: &Path, skopeo: bool) {
    // The registry TestRegistry runs.
    if !Path::new("/usr/bin/docker-registry").exists() {
        eprintln!("no /usr/bin/docker-registry (Debian's docker-registry): no registry figures");
        return;
    }
    let b = Bench {
        bin_dir,
        big,
        mb: std::fs::metadata(big).unwrap().len() as f64 / 1e6,
        work,
        docker_config: work.join("docker-config"),
    };
    std::fs::create_dir_all(&b.docker_config).unwrap();

    eprintln!("registry: putting the image in a registry");
    let source = TestRegistry::plain_in(work);
    let source_ref = format!("{}/bench/big:1", source.host());
    b.seed(&source_ref);
    // skopeo's own copy of the image to push from. `--preserve-digests` here and below: without
    // it skopeo gzips uncompressed layers on their way to an oci: dir or a registry, and would
    // be timed compressing rather than copying.
    let layout = format!("oci:{}:big", work.join("registry-layout").display());
    if skopeo {
        run(Command::new("skopeo")
            .args(["copy", "-q", "--preserve-digests"])
            .args(source.skopeo_args("src-"))
            .args([&source.docker_ref("bench/big:1"), &layout]));
    }

    let mut results = Results::default();
    for r in 0..runs {
        eprintln!("registry run {}/{runs}", r + 1);
        results.floors.push(b.floor());
        b.hyperctl_cases(&mut results, &source, &source_ref);
        if skopeo {
            b.skopeo_cases(&mut results, &source, &layout);
        }
    }
    print(results, b.mb, runs, skopeo);
}

impl Bench<'_> {
    /// hyperctl against `d`.
    fn ctl(&self, d: &Daemon, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin_dir.join("hyperctl"));
        c.arg("--socket")
            .arg(&d.socket)
            .env("DOCKER_CONFIG", &self.docker_config)
            .args(args);
        c
    }

    /// Pushes the image to `source_ref` from a store of its own, which is then removed.
    fn seed(&self, source_ref: &str) {
        let seed_dir = self.work.join("registry-seed");
        let seeder = Daemon::start(self.bin_dir, &seed_dir);
        run(&mut self.ctl(&seeder, &["load", "-q", "-i", self.big.to_str().unwrap()]));
        run(&mut self.ctl(&seeder, &["tag", "big:1", source_ref]));
        run(&mut self.ctl(&seeder, &["push", "-q", source_ref]));
        drop(seeder);
        std::fs::remove_dir_all(&seed_dir).unwrap();
    }

    /// MB/s of `cp` + `sync` of the image's archive.
    fn floor(&self) -> f64 {
        let copy = self.work.join("registry-copy.tar");
        sync();
        let t = Instant::now();
        run(Command::new("cp").arg(self.big).arg(&copy));
        sync();
        let floor = self.mb / t.elapsed().as_secs_f64();
        std::fs::remove_file(&copy).unwrap();
        floor
    }

    /// One run of hyperctl's pulls from `source` into a new store and pushes to a new registry.
    fn hyperctl_cases(&self, results: &mut Results, source: &TestRegistry, source_ref: &str) {
        let store_dir = self.work.join("registry-store");
        let daemon = Daemon::start(self.bin_dir, &store_dir);
        let target = TestRegistry::plain_in(self.work);
        let target_ref = format!("{}/bench/big:1", target.host());
        let measure = |samples: &mut Samples, reg: &TestRegistry, args: &[&str]| {
            sync();
            daemon.reset_peak();
            let mark = reg.mark();
            let r = run(&mut self.ctl(&daemon, args));
            samples.add(r.secs, moved(reg, mark, args[0]), r.max_rss_kib);
            samples.hyperd_kib = samples.hyperd_kib.max(daemon.peak_rss_kib());
        };
        measure(&mut results.pull, source, &["pull", "-q", source_ref]);
        measure(&mut results.repull, source, &["pull", "-q", source_ref]);
        run(&mut self.ctl(&daemon, &["tag", source_ref, &target_ref]));
        measure(&mut results.push, &target, &["push", "-q", &target_ref]);
        measure(&mut results.repush, &target, &["push", "-q", &target_ref]);
        drop(daemon);
        drop(target);
        std::fs::remove_dir_all(&store_dir).unwrap();
    }

    /// One run of skopeo's copy from `source` into a layout, and from `layout` to a new registry.
    fn skopeo_cases(&self, results: &mut Results, source: &TestRegistry, layout: &str) {
        let dir = self.work.join("registry-skopeo");
        let mark = source.mark();
        sync();
        let t = Instant::now();
        let r = run(Command::new("skopeo")
            .args(["copy", "-q", "--preserve-digests"])
            .args(source.skopeo_args("src-"))
            .arg(source.docker_ref("bench/big:1"))
            .arg(format!("oci:{}:x", dir.display())));
        sync();
        results.skopeo_pull.add(
            t.elapsed().as_secs_f64(),
            moved(source, mark, "pull"),
            r.max_rss_kib,
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let target = TestRegistry::plain_in(self.work);
        let mark = target.mark();
        sync();
        let r = run(Command::new("skopeo")
            .args(["copy", "-q", "--preserve-digests"])
            .args(target.skopeo_args("dest-"))
            .args([layout, &target.docker_ref("bench/big:1")]));
        results
            .skopeo_push
            .add(r.secs, moved(&target, mark, "push"), r.max_rss_kib);
    }
}

/// The table of medians.
fn print(results: Results, mb: f64, runs: usize, skopeo: bool) {
    let floor = median(results.floors);
    println!(
        "\nregistry on loopback (distribution, plain HTTP), {mb:.0} MB image: medians of {runs} runs\n"
    );
    println!(
        "{:<48} {:>7} {:>8} {:>9} {:>6} {:>11} {:>11}",
        "case", "MB/s", "x floor", "s", "blobs", "hyperd RSS", "client RSS"
    );
    println!("{:<48} {floor:>7.0} {:>8.2}", "floor: cp + sync", 1.0);
    let mut cases = vec![
        ("hyperctl pull, empty store (GETs)", results.pull),
        ("hyperctl pull, image stored (GETs)", results.repull),
        ("hyperctl push, empty registry (uploads)", results.push),
        ("hyperctl push, registry has it (uploads)", results.repush),
    ];
    if skopeo {
        cases.push((
            "skopeo copy docker: oci: + sync (GETs)",
            results.skopeo_pull,
        ));
        cases.push(("skopeo copy oci: docker: (uploads)", results.skopeo_push));
    }
    for (name, s) in cases {
        let secs = median(s.secs);
        let blobs = median(s.blobs.iter().map(|&b| b as f64).collect());
        let hyperd = if s.hyperd_kib == 0 {
            String::new()
        } else {
            format!("{:.1} MiB", s.hyperd_kib as f64 / 1024.0)
        };
        println!(
            "{name:<48} {:>7.0} {:>8.2} {secs:>9.3} {blobs:>6} {hyperd:>11} {:>7.1} MiB",
            mb / secs,
            mb / secs / floor,
            s.client_kib as f64 / 1024.0,
        );
    }
}

/// Blobs a pull downloaded (GETs) or a push uploaded (completed uploads) since `mark`.
fn moved(reg: &TestRegistry, mark: Mark, direction: &str) -> usize {
    if direction == "pull" {
        reg.count_since(mark, "GET", "/blobs/")
    } else {
        reg.count_since(mark, "PUT", "/blobs/uploads/")
    }
}
