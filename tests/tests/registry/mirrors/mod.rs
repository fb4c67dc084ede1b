//! hyperd's own pulls through the mirrors a containerd `hosts.toml` in its certs directory
//! lists (issue 25, item 4): a made-up registry (`made.up.example`, which does not resolve)
//! pulled from a real distribution registry or the fake one acting as its mirror. The
//! helpers live here; `pulls.rs` holds the pulls and pushes through mirrors, `review.rs` what
//! a review of the first version found.

mod pulls;
mod review;

use std::path::{Path, PathBuf};
use std::process::Output;

use integration::TestDaemon;
use integration::fake_registry::FakeRegistry;
use integration::fixtures::{Image, noise_image};
use integration::registry::TestRegistry;
use integration::tools::*;

const UPSTREAM: &str = "made.up.example";
/// hyperctl's exit code for a registry that cannot be reached (hyperctl/src/exit.rs).
const REGISTRY_UNAVAILABLE: i32 = 6;

/// A two-layer image pushed to `reg` as `app:1`; its manifest digest.
fn image_in(reg: &TestRegistry, dir: &Path) -> String {
    let (source, manifest) = two_layer_image(dir);
    reg.skopeo_copy_to(&source, "app:1");
    manifest
}

/// A certs directory whose `made.up.example/hosts.toml` says `hosts_toml`.
fn certs_dir(dir: &Path, hosts_toml: &str) -> PathBuf {
    certs_dir_for(dir, UPSTREAM, hosts_toml)
}

/// A certs directory whose `<registry>/hosts.toml` says `hosts_toml`.
fn certs_dir_for(dir: &Path, registry: &str, hosts_toml: &str) -> PathBuf {
    let certs = dir.join("certs.d");
    std::fs::create_dir_all(certs.join(registry)).unwrap();
    std::fs::write(certs.join(registry).join("hosts.toml"), hosts_toml).unwrap();
    certs
}

fn daemon(certs: &Path) -> TestDaemon {
    TestDaemon::start_with_args(&["--certs-dir", p(certs)])
}

/// `hyperctl pull what`, with the credentials in `docker` (a directory, maybe empty).
fn pull(d: &TestDaemon, docker: &Path, what: &str) -> Output {
    d.run_with_config(docker, &["pull", what])
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The fake registry serving an image of `layers` small layers as `repo:1`.
fn fake_mirror(repo: &str, layers: usize) -> (FakeRegistry, Image) {
    let mut rt = tokio::runtime::Builder::new_current_thread();
    let image = rt
        .build()
        .unwrap()
        .block_on(noise_image(repo, layers, 8, None));
    let mirror = FakeRegistry::start();
    mirror.put_image(repo, "1", &image);
    (mirror, image)
}

/// A `[host."URL"]` table allowing `capabilities` (all, when none are given).
fn host_table(url: &str, capabilities: &[&str]) -> String {
    match capabilities {
        [] => format!("[host.{url:?}]\n"),
        c => format!("[host.{url:?}]\n  capabilities = {c:?}\n"),
    }
}

/// The error of a command that must fail with exit code `code`.
fn failed(out: &Output, code: i32) -> String {
    let err = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    err
}

/// A loopback port nothing listens on: a mirror that refuses every connection.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
