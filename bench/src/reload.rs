//! Re-loads of an image the store holds, as speed-ups over its first load: what leaving out the
//! blobs hyperd already has is worth.

use std::path::Path;
use std::process::Command;

use crate::measure::{median, run, sync};

#[derive(Default)]
pub(crate) struct Reloads {
    file: Vec<f64>,
    redirect: Vec<f64>,
    pipe_floor: Vec<f64>,
    pipe: Vec<f64>,
    pipe_whole: Vec<f64>,
    one_new_layer: Vec<f64>,
}

impl Reloads {
    /// One run of each case; `big` must be loaded, `next` is `big` plus one new 1 MiB layer.
    pub(crate) fn measure(&mut self, hyperctl: &Path, socket: &Path, big: &Path, next: &Path) {
        let ctl = || {
            let mut c = Command::new(hyperctl);
            // Leaving out stored blobs is a streaming matter.
            c.arg("--socket").arg(socket).env("HYPERCTL_NO_FD", "1");
            c
        };
        let piped = |into: &str| {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("cat \"$1\" | {into}"))
                .arg("sh")
                .arg(big)
                .arg(hyperctl)
                .arg(socket);
            c
        };
        let time = |cmd: &mut Command, out: &mut Vec<f64>| {
            sync();
            out.push(run(cmd).secs);
        };
        time(ctl().args(["load", "-q", "-i"]).arg(big), &mut self.file);
        let ctl_piped = |extra: &str| piped(&format!("\"$2\" --socket \"$3\" load -q {extra}"));
        let redirect = std::fs::File::open(big).expect("opening the archive");
        time(
            ctl().args(["load", "-q"]).stdin(redirect),
            &mut self.redirect,
        );
        time(
            &mut piped("dd bs=1M of=/dev/null status=none"),
            &mut self.pipe_floor,
        );
        time(&mut ctl_piped(""), &mut self.pipe);
        time(&mut ctl_piped("--send-all"), &mut self.pipe_whole);
        time(
            ctl().args(["load", "-q", "-i"]).arg(next),
            &mut self.one_new_layer,
        );
        run(ctl().args(["rmi", "next:1"]));
    }

    pub(crate) fn print(self, first_load_secs: f64) {
        println!(
            "\nre-loads: median seconds, and speed-up over the first load ({first_load_secs:.3} s)\n"
        );
        println!("{:<52} {:>8} {:>9} {:>7}", "case", "s", "x first", "target");
        for (name, secs, target) in [
            ("hyperctl load -i FILE, all blobs stored", self.file, "50"),
            ("hyperctl load < FILE, all blobs stored", self.redirect, "5"),
            (
                "floor of a pipe: cat FILE | dd bs=1M of=/dev/null",
                self.pipe_floor,
                "",
            ),
            ("cat FILE | hyperctl load, all blobs stored", self.pipe, ""),
            (
                "cat FILE | hyperctl load --send-all (hyperd skips)",
                self.pipe_whole,
                "",
            ),
            (
                "hyperctl load -i FILE, one new 1 MiB layer",
                self.one_new_layer,
                "20",
            ),
        ] {
            let secs = median(secs);
            println!(
                "{name:<52} {secs:>8.3} {:>9.1} {target:>7}",
                first_load_secs / secs
            );
        }
    }
}
