//! Clients that send something other than a valid authority as HTTP/2 `:authority` (gRPC C-core
//! and grpc-java send the socket path) are served; hyperctl itself sends `localhost`.

use std::process::Command;

use integration::fixtures::*;
use integration::python::{PYTHON_DIR, pinned, python};
use integration::tools::sh;
use integration::{TestDaemon, bin};

#[tokio::test]
async fn current_grpcio_with_default_options_calls_every_kind_of_rpc() {
    let d = TestDaemon::start();
    let img = Image::new(&["any client"], "amd64", Comp::Gzip).await;
    let archive = d.path("in.tar");
    let refs = [("io.containerd.image.name", "docker.io/library/py:1")];
    std::fs::write(&archive, oci_archive(&[(&img, &refs)]).await).unwrap();
    let saved = d.path("saved.tar");
    let python = python();
    let version = sh(Command::new(&python).args(["-c", "import grpc; print(grpc.__version__)"]));
    assert_eq!(version.trim(), pinned("grpcio"));

    let out = sh(Command::new(&python)
        .arg(format!("{PYTHON_DIR}/any_client.py"))
        .arg(&d.socket)
        .arg(&archive)
        .arg(&saved));
    let id = img.id();
    assert_eq!(
        out,
        format!(
            "health '' SERVING\n\
             health 'hyperd.v1.ImageService' SERVING\n\
             services grpc.health.v1.Health grpc.reflection.v1alpha.ServerReflection hyperd.v1.ContentService hyperd.v1.EventService hyperd.v1.ImageService hyperd.v1.RegistryService\n\
             loaded py:1 {id}\n\
             listed py 1 {id}\n\
             remove NOT_FOUND no such image: no-such-image:1\n\
             saved True\n"
        )
    );
    // Archives are deterministic: the save through grpcio is the one hyperctl makes.
    let by_hyperctl = d.path("hyperctl.tar");
    d.ok(&[
        "save",
        "-f",
        "oci",
        "-o",
        by_hyperctl.to_str().unwrap(),
        "py:1",
    ]);
    assert!(std::fs::read(&saved).unwrap() == std::fs::read(&by_hyperctl).unwrap());
}

#[test]
fn raw_http2_with_a_socket_path_authority_is_served_in_every_encoding() {
    let d = TestDaemon::start();
    let out = sh(Command::new(python())
        .arg(format!("{PYTHON_DIR}/raw_h2.py"))
        .arg(&d.socket));
    let cases = [
        "huffman, indexed into the table",
        "plain, all from the table",
        "huffman, never indexed",
        "plain, never indexed",
        "split over 3 CONTINUATION frames",
        "PADDED and PRIORITY",
        "all of them, percent-encoded path",
        "table size update, then localhost",
        "the socket path once more",
    ];
    let expected: String = cases
        .iter()
        .map(|c| format!("{c}: 200 grpc-status 0 SERVING\n"))
        .collect();
    assert_eq!(out, expected);
}

/// hyperctl against a bare h2 server that records the `:authority` it was sent.
#[tokio::test]
async fn hyperctl_sends_localhost_as_authority() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("h2.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(async move {
        let (io, _) = listener.accept().await.unwrap();
        let mut conn = h2::server::handshake(io).await.unwrap();
        let (request, mut respond) = conn.accept().await.unwrap().unwrap();
        let unimplemented = http::Response::builder()
            .header("content-type", "application/grpc")
            .header("grpc-status", "12")
            .body(())
            .unwrap();
        respond.send_response(unimplemented, true).unwrap();
        tokio::spawn(async move { while conn.accept().await.is_some() {} });
        request.uri().authority().map(|a| a.to_string())
    });
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin("hyperctl"))
            .arg("--socket")
            .arg(&socket)
            .arg("images")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        server.await.unwrap().as_deref(),
        Some("localhost"),
        "{stderr}"
    );
    assert!(
        !out.status.success(),
        "the fake server answers UNIMPLEMENTED"
    );
}
