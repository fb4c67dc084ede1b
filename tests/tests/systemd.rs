//! `contrib/systemd/hyperd.service` lets hyperd pull (issue 23, item 9). systemd cannot run in
//! the tests, so hyperd runs under what the unit's sandbox settings are to the kernel:
//! `RestrictAddressFamilies=` is a seccomp filter under which `socket()` of any other family
//! fails with EAFNOSUPPORT, as systemd builds it, and `NoNewPrivileges=` is PR_SET_NO_NEW_PRIVS
//! (which installing the filter sets). The families are read from the unit itself. A registry on
//! loopback is reached by name (`localhost`), so that name resolution runs under the filter too.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use integration::fake_registry::FakeRegistry;
use integration::fixtures::*;
use integration::{bin, wait};

/// The unit's value of `key`, if it sets one.
fn setting(key: &str) -> Option<String> {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd/hyperd.service");
    let text = std::fs::read_to_string(unit).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
}

/// The address family constant systemd's name stands for.
fn family(name: &str) -> u64 {
    match name {
        "AF_UNIX" => 1,
        "AF_INET" => 2,
        "AF_INET6" => 10,
        "AF_NETLINK" => 16,
        other => panic!("no number known here for {other}"),
    }
}

/// A seccomp program failing `socket()` with EAFNOSUPPORT for every family but `allowed`.
fn restrict_address_families(allowed: &[u64]) -> seccompiler::BpfProgram {
    use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition};
    let outside: Vec<SeccompCondition> = allowed
        .iter()
        .map(|&f| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, f).unwrap())
        .collect();
    let rules = [(
        socket_syscall(),
        vec![seccompiler::SeccompRule::new(outside).unwrap()],
    )];
    seccompiler::SeccompFilter::new(
        rules.into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(97), // EAFNOSUPPORT
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap()
    .try_into()
    .unwrap()
}

/// `socket`'s system call number on the architectures the tests run on.
fn socket_syscall() -> i64 {
    match std::env::consts::ARCH {
        "x86_64" => 41,
        "aarch64" => 198,
        other => panic!("socket()'s number on {other} is not known here"),
    }
}

/// hyperd under the filter, ready; its log goes to `dir/hyperd.log`.
fn hyperd_restricted(dir: &Path, program: seccompiler::BpfProgram, registry: &str) -> Child {
    let notify_socket = dir.join("notify.sock");
    let notify = wait::notify_socket(&notify_socket);
    let log = std::fs::File::create(dir.join("hyperd.log")).unwrap();
    let mut cmd = Command::new(bin("hyperd"));
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--socket")
        .arg(dir.join("hyperd.sock"))
        .args(["--insecure-registry", registry, "--registry-timeout", "5"])
        .env("NOTIFY_SOCKET", &notify_socket)
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: between fork and exec the closure only makes two system calls (prctl, seccomp)
    // on a program built before the fork, and builds its error without allocating.
    unsafe {
        cmd.pre_exec(move || {
            seccompiler::apply_filter(&program).map_err(|_| std::io::Error::from_raw_os_error(1))
        });
    }
    let mut child = cmd.spawn().unwrap();
    if let Err(e) = wait::ready(&notify, &mut child, "hyperd") {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(dir.join("hyperd.log")).unwrap()
        );
    }
    child
}

/// Pulls `localhost:<port>/app:v1` from a hyperd run under `families`; hyperctl's exit code.
async fn pull_under(families: &[u64]) -> (Option<i32>, String) {
    let img = Image::new(&["unit-1"], "amd64", Comp::Gzip).await;
    let reg = tokio::task::spawn_blocking(FakeRegistry::start)
        .await
        .unwrap();
    reg.put_image("app", "v1", &img);
    let registry = reg.host().replace("127.0.0.1", "localhost");
    let dir = tempfile::tempdir().unwrap();
    let mut hyperd = hyperd_restricted(dir.path(), restrict_address_families(families), &registry);
    let out = Command::new(bin("hyperctl"))
        .arg("--socket")
        .arg(dir.path().join("hyperd.sock"))
        .args(["pull", "-q", &format!("{registry}/app:v1")])
        .env("DOCKER_CONFIG", dir.path())
        .output()
        .unwrap();
    let _ = hyperd.kill();
    let _ = hyperd.wait();
    drop(reg);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_units_sandbox_lets_hyperd_pull_by_name() {
    assert_eq!(
        setting("PrivateNetwork"),
        None,
        "a private network has no registry"
    );
    assert_eq!(setting("NoNewPrivileges").as_deref(), Some("true"));
    let families: Vec<u64> = setting("RestrictAddressFamilies")
        .expect("the unit restricts address families")
        .split_whitespace()
        .map(family)
        .collect();
    let (code, stderr) = pull_under(&families).await;
    assert_eq!(code, Some(0), "{stderr}");
    // The filter does bite: with the unit's old AF_UNIX alone, the same pull cannot connect.
    let (code, stderr) = pull_under(&[family("AF_UNIX")]).await;
    assert_eq!(code, Some(6), "{stderr}");
}
