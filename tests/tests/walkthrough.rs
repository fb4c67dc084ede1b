//! The README's walkthrough, run as a newcomer runs it: the archives from `scripts/example-images`,
//! then each `$ ` command of its console block in a shell, against a fresh hyperd, with the
//! clients on PATH. What each prints (stdout, then stderr) and its exit code must be what the
//! README shows; only the CREATED column's age, which grows with the calendar, is let go.

use std::path::{Path, PathBuf};
use std::process::Command;

use integration::TestDaemon;
use integration::daemon::profile_dir;

/// One `$ ` line of the README and what it shows after it.
#[derive(Debug)]
struct Step {
    command: String,
    output: Vec<String>,
    exit: i32,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The first console block after `heading`, as steps. A `# ` line is a comment, a trailing
/// `  # …` explains a command, `[exit N]` is the exit code of a command that fails.
fn steps(readme: &str, heading: &str) -> Vec<Step> {
    let section = &readme[readme.find(heading).expect("the walkthrough heading")..];
    let block = section
        .split("```console\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a console block in the walkthrough");
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            let command = command.split("  # ").next().unwrap().trim_end();
            steps.push(Step {
                command: command.to_owned(),
                output: Vec::new(),
                exit: 0,
            });
        } else if line.is_empty() || line.starts_with("# ") {
            continue;
        } else {
            let step = steps.last_mut().expect("output before any command");
            match line
                .strip_prefix("[exit ")
                .and_then(|l| l.strip_suffix(']'))
            {
                Some(code) => step.exit = code.parse().unwrap(),
                None => step.output.push(line.to_owned()),
            }
        }
    }
    steps
}

/// A line as compared: the age docker-style listings print is let go, and with it the column
/// padding that follows its width.
fn comparable(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut kept = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if i + 2 < words.len() && words[i + 2] == "ago" && words[i].parse::<u64>().is_ok() {
            kept.push("<age>");
            i += 3;
        } else {
            kept.push(words[i]);
            i += 1;
        }
    }
    kept.join(" ")
}

#[test]
fn the_readme_walkthrough_gives_what_the_readme_shows() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let steps = steps(&readme, "## Walkthrough: the seed workflow");
    assert!(steps.len() >= 6, "{steps:#?}");

    let d = TestDaemon::start();
    let work = tempfile::tempdir().unwrap();
    let made = Command::new(workspace().join("scripts/example-images"))
        .arg(work.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let path = format!(
        "{}:{}",
        profile_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for step in &steps {
        let out = Command::new("bash")
            .args(["-o", "pipefail", "-c", &step.command])
            .current_dir(work.path())
            .env("PATH", &path)
            .env("HYPERD_SOCKET", &d.socket)
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<String> = printed.lines().map(comparable).collect();
        let shown: Vec<String> = step.output.iter().map(|l| comparable(l)).collect();
        assert_eq!(got, shown, "`{}` printed:\n{printed}", step.command);
        assert_eq!(
            out.status.code(),
            Some(step.exit),
            "`{}` printed:\n{printed}",
            step.command
        );
    }
}

#[test]
fn a_walkthrough_is_read_into_commands_outputs_and_exit_codes() {
    let readme = "## W\n\n```sh\nnot this\n```\n\n```console\n$ a -x   # why\nout 1\n\n# note\n\
                  $ b\nError: no\n[exit 3]\n```\n";
    let steps = steps(readme, "## W");
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (
            steps[0].command.as_str(),
            &steps[0].output[..],
            steps[0].exit
        ),
        ("a -x", &["out 1".to_owned()][..], 0)
    );
    assert_eq!(
        (
            steps[1].command.as_str(),
            &steps[1].output[..],
            steps[1].exit
        ),
        ("b", &["Error: no".to_owned()][..], 3)
    );
    assert_eq!(
        comparable("busybox   latest   7a8b   11 months ago   10.9kB"),
        comparable("busybox latest 7a8b 2 years ago 10.9kB")
    );
}
