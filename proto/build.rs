//! Compiles the proto with protox (pure Rust), so a fresh machine needs no protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "hyperd/v1/images.proto",
        "hyperd/v1/content.proto",
        "hyperd/v1/registry.proto",
        "hyperd/v1/errors.proto",
        "hyperd/v1/events.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(protos, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("hyperd_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .bytes(".hyperd.v1")
        .compile_fds(fds)?;
    Ok(())
}
