//! A client generated from the proto in another language (Python, grpcio) loads, lists and gets
//! the documented status codes.

use std::process::Command;

use integration::TestDaemon;
use integration::fixtures::*;
use integration::tools::sh;

/// Debian's interpreter, where python3-grpcio installs (not whatever python3 is first on PATH).
const PYTHON: &str = "/usr/bin/python3";

#[tokio::test]
async fn a_generated_python_client_loads_lists_and_sees_not_found() {
    let d = TestDaemon::start();
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let generated = d.path("py");
    std::fs::create_dir(&generated).unwrap();
    sh(Command::new(PYTHON)
        .args(["-m", "grpc_tools.protoc", "-I", proto_dir, "--python_out"])
        .arg(&generated)
        .arg("--grpc_python_out")
        .arg(&generated)
        .arg("hyperd/v1/images.proto"));
    let img = Image::new(&["python"], "amd64", Comp::Gzip).await;
    let archive = d.path("py.tar");
    std::fs::write(
        &archive,
        oci_archive(&[(
            &img,
            &[("io.containerd.image.name", "docker.io/library/py:1")],
        )])
        .await,
    )
    .unwrap();
    let out = sh(Command::new(PYTHON)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python/client.py"))
        .arg(&d.socket)
        .arg(&generated)
        .arg(&archive));
    let id = img.id();
    assert_eq!(
        out,
        format!(
            "loaded py:1 {id}\nlisted py 1 {id}\nerror NOT_FOUND no such image: no-such-image:1\n"
        )
    );
}
