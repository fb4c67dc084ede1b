//! `hyperctl tag SOURCE TARGET`.

use std::process::ExitCode;

use hyperd_proto::v1::TagRequest;

use super::Client;
use crate::cli::TagArgs;

pub(crate) async fn run(mut client: Client, args: TagArgs) -> anyhow::Result<ExitCode> {
    client
        .tag(TagRequest {
            source: args.source,
            target: args.target,
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}
