//! The real peer tools (skopeo, umoci, podman, buildah), each confined to a test's own temporary
//! directory. `scripts/test` installs them; a missing tool fails the test that needs it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestDaemon;
use crate::wait;

/// Runs `cmd`, failing the test with its stderr if it does not succeed; returns stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (scripts/test installs the peer tools)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A command's stderr, as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// An OCI layout made by umoci: `layers` rootfs snapshots (each a list of (path, content)),
/// tagged `tag`. Returns the layout directory.
pub fn umoci_image(dir: &Path, tag: &str, layers: &[&[(&str, &str)]]) -> PathBuf {
    let layout = dir.join("layout");
    let l = layout.to_str().unwrap();
    if !layout.exists() {
        sh(&mut cmd("umoci", &["init", "--layout", l]));
    }
    sh(&mut cmd(
        "umoci",
        &["new", "--image", &format!("{l}:{tag}")],
    ));
    let bundle = dir.join(format!("bundle-{tag}"));
    let b = bundle.to_str().unwrap();
    sh(&mut cmd(
        "umoci",
        &["unpack", "--rootless", "--image", &format!("{l}:{tag}"), b],
    ));
    for files in layers {
        for (path, content) in *files {
            let p = bundle.join("rootfs").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        sh(&mut cmd(
            "umoci",
            &["repack", "--image", &format!("{l}:{tag}"), b],
        ));
    }
    sh(&mut cmd(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{l}:{tag}"),
            "--config.cmd",
            "/bin/sh",
            "--os",
            "linux",
            "--architecture",
            "amd64",
        ],
    ));
    layout
}

/// `skopeo copy SOURCE DEST`.
pub fn skopeo_copy(source: &str, dest: &str) {
    sh(&mut cmd("skopeo", &["copy", "-q", source, dest]));
}

/// A two-layer umoci layout in `dir`: its `oci:` reference and manifest digest.
pub fn two_layer_image(dir: &Path) -> (String, String) {
    let layout = umoci_image(
        dir,
        "v1",
        &[
            &[("etc/hello", "hello\n")],
            &[("usr/bin/tool", "#!/bin/sh\necho tool\n")],
        ],
    );
    let source = format!("oci:{}:v1", p(&layout));
    let (manifest, _) = skopeo_digests(&source);
    (source, manifest)
}

/// The manifest digest and config digest (image ID) `skopeo inspect` reports for `image`.
pub fn skopeo_digests(image: &str) -> (String, String) {
    let raw = sh(&mut cmd("skopeo", &["inspect", "--raw", image]));
    let manifest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes()))
    );
    let config: serde_json::Value = serde_json::from_str(&raw).unwrap();
    (
        manifest,
        config["config"]["digest"].as_str().unwrap().to_owned(),
    )
}

/// podman or buildah with storage of its own under `dir`.
pub fn containers(program: &str, dir: &Path) -> Command {
    let mut c = Command::new(program);
    c.arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .arg("--storage-driver")
        .arg("vfs");
    if program == "podman" {
        c.args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
    }
    c
}

/// (name, image ID) of each image podman holds, sorted.
pub fn podman_images(dir: &Path) -> Vec<(String, String)> {
    let out = sh(containers("podman", dir).args([
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ]));
    let mut v: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (n, id) = l.split_once(' ').unwrap();
            let id = if id.starts_with("sha256:") {
                id.to_owned()
            } else {
                format!("sha256:{id}")
            };
            (n.to_owned(), id)
        })
        .collect();
    v.sort();
    v
}

/// A private containerd (own root, state and socket under `dir`), stopped on drop. Images are
/// imported with `--no-unpack`: only the content store is used, so no snapshotter is needed.
pub struct Containerd {
    child: std::process::Child,
    socket: PathBuf,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        std::fs::create_dir_all(dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n",
                dir.join("root"),
                dir.join("state"),
                socket,
                dir.join("containerd.sock.ttrpc"),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        // containerd reports READY=1 through sd_notify once it serves, as hyperd does.
        let notify_socket = dir.join("notify.sock");
        let notify = wait::notify_socket(&notify_socket);
        let mut child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_socket)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting containerd (scripts/test installs it)");
        if let Err(e) = wait::ready(&notify, &mut child, "containerd") {
            let log = std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default();
            panic!("{e}; its log:\n{log}");
        }
        Containerd { child, socket }
    }

    /// Runs `ctr` against this containerd and returns its stdout.
    pub fn ctr(&self, args: &[&str]) -> String {
        sh(Command::new("ctr").arg("-a").arg(&self.socket).args(args))
    }

    /// (name, target digest) of each image, sorted.
    pub fn images(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .ctr(&["images", "ls"])
            .lines()
            .skip(1)
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                (cols[0].to_owned(), cols[2].to_owned())
            })
            .collect();
        v.sort();
        v
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A two-layer umoci layout tagged `v1` in the daemon's directory.
pub fn two_layer_layout(d: &TestDaemon) -> PathBuf {
    umoci_image(
        d.dir.path(),
        "v1",
        &[
            &[("etc/hello", "hello\n")],
            &[("usr/bin/tool", "#!/bin/sh\necho tool\n")],
        ],
    )
}

/// A umoci image copied by skopeo into an oci-archive as `busybox:1.35` and loaded into hyperd:
/// the umoci layout, and the image's manifest and config digests.
pub fn load_skopeo_image(d: &TestDaemon) -> (PathBuf, String, String) {
    let layout = two_layer_layout(d);
    let (manifest, config) = skopeo_digests(&format!("oci:{}:v1", p(&layout)));
    let seed = d.path("seed.tar");
    skopeo_copy(
        &format!("oci:{}:v1", p(&layout)),
        &format!("oci-archive:{}:busybox:1.35", p(&seed)),
    );
    d.ok(&["load", "-i", p(&seed)]);
    (layout, manifest, config)
}

/// A path as the `&str` command lines take.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// hyperctl's JSON output with every `LastUsed` left out: two stores that hold the same images
/// differ in when each was last used, and in nothing else.
pub fn unstamped(json: &str) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.remove("LastUsed");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    strip(&mut value);
    value
}
