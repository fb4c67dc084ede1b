//! The content API from Python: a client generated from the protos writes, reads and creates an
//! image (Debian's grpcio), and a client with no generated code finds Info and Read through
//! reflection alone (current grpcio from PyPI).

use std::process::Command;

use hyperd_proto::v1::content_service_client::ContentServiceClient;
use hyperd_proto::v1::{self, WriteRequest};
use integration::TestDaemon;
use integration::fixtures::{noise, sha};
use integration::python::{PYTHON_DIR, python};
use integration::tools::sh;

#[test]
fn a_generated_python_client_writes_reads_and_creates_an_image() {
    let d = TestDaemon::start();
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");
    let generated = d.path("py");
    std::fs::create_dir(&generated).unwrap();
    // Debian's interpreter, where python3-grpcio installs.
    sh(Command::new("/usr/bin/python3")
        .args(["-m", "grpc_tools.protoc", "-I", proto_dir, "--python_out"])
        .arg(&generated)
        .arg("--grpc_python_out")
        .arg(&generated)
        .args(["hyperd/v1/images.proto", "hyperd/v1/content.proto"]));
    let out = sh(Command::new("/usr/bin/python3")
        .arg(format!("{PYTHON_DIR}/content_client.py"))
        .arg(&d.socket)
        .arg(&generated));
    assert_eq!(
        out,
        "written True True\n\
         read True\n\
         wrote config True\n\
         wrote layer True\n\
         wrote manifest True\n\
         created py-content:1 True\n\
         listed py-content 1 True\n\
         error NOT_FOUND\n"
    );
    assert!(d.ok(&["images"]).contains("py-content"));
}

#[tokio::test]
async fn a_reflection_only_client_calls_info_and_read() {
    let d = TestDaemon::start();
    let blob = noise("reflected", (3 << 20) + 11);
    let channel = hyperd_proto::connect(d.socket.clone()).await.unwrap();
    let mut c = ContentServiceClient::new(channel);
    let mut msgs = Vec::new();
    for (i, chunk) in blob.chunks(hyperd_proto::CHUNK_SIZE).enumerate() {
        let mut m = WriteRequest {
            data: chunk.to_vec().into(),
            ..WriteRequest::default()
        };
        if i == 0 {
            m.r#ref = "reflected".into();
            m.expected = sha(&blob);
            m.total = blob.len() as u64;
        }
        msgs.push(m);
    }
    let written: v1::WriteResponse = c
        .write(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert!(written.committed);
    let out = sh(Command::new(python())
        .arg(format!("{PYTHON_DIR}/content_reflection.py"))
        .arg(&d.socket)
        .arg(sha(&blob)));
    let mib = 1u64 << 20;
    assert_eq!(
        out,
        format!(
            "info True True {}\nwhole {} True\npart {} True [1000, {}]\n",
            blob.len(),
            blob.len(),
            2 * mib,
            1000 + mib
        )
    );
}
