//! `hyperctl check`: the daemon re-hashes every blob and reports what is wrong.

use std::process::ExitCode;

use hyperd_proto::v1::CheckRequest;

use super::Client;
use crate::exit;

pub(crate) async fn run(mut client: Client) -> anyhow::Result<ExitCode> {
    let r = client.check(CheckRequest {}).await?.into_inner();
    for p in &r.problems {
        println!("problem: {p}");
    }
    println!(
        "checked {} blobs: {} problems, {} unreferenced",
        r.blobs_checked,
        r.problems.len(),
        r.unreferenced
    );
    Ok(if r.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::FAILURE)
    })
}
