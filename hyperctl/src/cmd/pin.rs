//! `hyperctl pin IMAGE…` and `hyperctl unpin IMAGE…`: each image in turn, printing its digest,
//! going on past failures and failing at the end if any did.

use std::process::ExitCode;

use hyperd_proto::v1::SetPinnedRequest;

use super::Client;
use crate::cli::PinArgs;
use crate::exit;

pub(crate) async fn run(
    mut client: Client,
    args: PinArgs,
    pinned: bool,
) -> anyhow::Result<ExitCode> {
    let mut worst = None;
    for image in &args.images {
        let request = SetPinnedRequest {
            image: image.clone(),
            pinned,
        };
        match client.set_pinned(request).await {
            Ok(r) => println!("{}", r.into_inner().digest),
            Err(status) => {
                worst.get_or_insert(exit::report(&status.into()));
            }
        }
    }
    Ok(worst.map_or(ExitCode::SUCCESS, ExitCode::from))
}
