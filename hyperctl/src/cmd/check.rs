//! `hyperctl check`: the daemon re-hashes every blob and reports what is wrong, with a bar of
//! blobs re-hashed on a terminal.

use std::process::ExitCode;

use futures_util::StreamExt;
use hyperd_proto::tonic::Code;
use hyperd_proto::v1::{CheckRequest, CheckResponse, check_stream_response::Part};

use super::Client;
use crate::{exit, progress};

pub(crate) async fn run(mut client: Client) -> anyhow::Result<ExitCode> {
    let r = match streamed(&mut client).await? {
        Some(r) => r,
        None => client.check(CheckRequest {}).await?.into_inner(),
    };
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

/// The check through CheckStream, drawing its progress; `None` from a hyperd that has no
/// CheckStream (then Check).
async fn streamed(client: &mut Client) -> anyhow::Result<Option<CheckResponse>> {
    let mut answers = match client.check_stream(CheckRequest {}).await {
        Ok(answers) => answers.into_inner(),
        Err(s) if s.code() == Code::Unimplemented => return Ok(None),
        Err(s) => return Err(s.into()),
    };
    let bar = progress::blobs("checking");
    while let Some(answer) = answers.next().await {
        match answer?.part {
            Some(Part::Progress(p)) => {
                bar.set_message(indicatif::HumanBytes(p.bytes_done).to_string());
                bar.set_length(p.blobs_total);
                bar.set_position(p.blobs_done);
            }
            Some(Part::Done(r)) => {
                bar.finish_and_clear();
                return Ok(Some(r));
            }
            None => {}
        }
    }
    bar.finish_and_clear();
    anyhow::bail!("hyperd ended the check without a result")
}
