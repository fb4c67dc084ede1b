//! `hyperctl rmi`: remove each image in turn, go on past failures, fail at the end if any did.

use std::process::ExitCode;

use hyperd_proto::v1::RemoveRequest;

use super::Client;
use crate::cli::RmiArgs;
use crate::exit;

pub(crate) async fn run(mut client: Client, args: RmiArgs) -> anyhow::Result<ExitCode> {
    let mut worst = None;
    for image in &args.images {
        let request = RemoveRequest {
            image: image.clone(),
            force: args.force,
        };
        match client.remove(request).await {
            Ok(r) => {
                let r = r.into_inner();
                for name in &r.untagged {
                    println!("Untagged: {name}");
                }
                for id in &r.deleted {
                    println!("Deleted: {id}");
                }
                for digest in &r.deleted_referrers {
                    println!("Deleted referrer: {digest}");
                }
            }
            Err(status) => {
                worst.get_or_insert(exit::report(&status.into()));
            }
        }
    }
    Ok(worst.map_or(ExitCode::SUCCESS, ExitCode::from))
}
