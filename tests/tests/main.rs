//! Every end-to-end test, in one binary (linking one is what CI pays for, not twenty): the real
//! `hyperd` and `hyperctl` binaries, and the peer tools, driven through the harness in `src/`.
//! Run one part by its module path, e.g. `cargo test -p integration --test e2e registry::faults`.
//!
//! `tests/Cargo.toml` turns off Cargo's discovery of test files, so a file here runs only when a
//! `mod` names it; `every_test_file_is_part_of_the_binary` fails when one is left out.

mod authority;
mod check;
mod connections;
mod content;
mod daemon;
mod errors;
mod events;
mod files_cancel;
mod gc;
mod handoff;
mod incremental;
mod lastused;
mod listing;
mod memory;
mod metrics;
mod quotas;
mod referrers;
mod reliability;
mod slots;
mod socket;
mod systemd;
mod usage;
mod walkthrough;
mod workflow;

/// Archives, layouts and services that other tools make and read.
mod interop {
    mod archives;
    mod containerd;
    mod ecosystem;
}

/// Clients generated from the protos in Python, and one that knows only reflection.
mod python {
    mod client;
    mod content;
}

/// Pulls and pushes through a real registry and a fake one that misbehaves on demand.
mod registry {
    mod faults;
    mod harness;
    mod hostile;
    mod mirrors;
    mod platforms;
    mod pull_push;
    mod referrers;
}

/// hyperd's registry endpoint: our conformance module, and real clients pulling from it.
mod serve {
    mod auth;
    mod clients;
    mod conformance;
    mod limits;
    mod push;
    mod review;
    mod through;
}

/// Each `.rs` file under `tests/` is declared as a module by `main.rs` or by its directory's
/// `mod.rs`: without Cargo's discovery, a file nobody declares would silently never run.
#[test]
fn every_test_file_is_part_of_the_binary() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let stem = path.file_stem().unwrap().to_str().unwrap();
            if path.extension().is_none_or(|e| e != "rs") || stem == "main" || stem == "mod" {
                continue;
            }
            let declarer = [dir.join("mod.rs"), root.join("main.rs")]
                .into_iter()
                .find(|f| f.exists())
                .unwrap();
            let text = std::fs::read_to_string(&declarer).unwrap();
            assert!(
                text.contains(&format!("mod {stem};")),
                "{} is not declared in {}: add `mod {stem};`",
                path.display(),
                declarer.display()
            );
        }
    }
}
