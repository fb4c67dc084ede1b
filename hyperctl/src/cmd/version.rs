//! `hyperctl version`: the client's version, then the daemon's.

use std::path::Path;
use std::process::ExitCode;

use hyperd_proto::v1::VersionRequest;

pub(crate) async fn run(socket: &Path) -> anyhow::Result<ExitCode> {
    println!("Client: hyperctl {}", env!("CARGO_PKG_VERSION"));
    let mut client = super::connect(socket).await?;
    let v = client.version(VersionRequest {}).await?.into_inner();
    println!("Server: hyperd {} (API {})", v.version, v.api);
    Ok(ExitCode::SUCCESS)
}
