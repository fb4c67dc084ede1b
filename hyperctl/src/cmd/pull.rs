//! `hyperctl pull REF`: hyperd downloads, hyperctl shows the bars and the outcome.

use std::process::ExitCode;

use hyperd_proto::v1::{PullRequest, pull_event::Event};

use super::RegistryClient;
use crate::cli::PullArgs;
use crate::credentials;
use crate::exit::from_registry;
use crate::peer::Peer;
use crate::transfer::Bars;

pub(crate) async fn run(
    mut client: RegistryClient,
    peer: &Peer,
    args: PullArgs,
) -> anyhow::Result<ExitCode> {
    let registry = credentials::registry_of(&args.reference);
    let request = PullRequest {
        reference: args.reference.clone(),
        credential: peer.credential(credentials::lookup(&registry))?,
        platform: args.platform.unwrap_or_default(),
        all_platforms: args.all_platforms,
        referrers: args.referrers,
    };
    let mut events = client
        .pull(request)
        .await
        .map_err(from_registry)?
        .into_inner();
    let mut bars = Bars::new(args.quiet, false);
    let result = loop {
        match events.message().await.map_err(from_registry)? {
            Some(e) => match e.event {
                Some(Event::Blob(p)) => bars.update(&p),
                Some(Event::Done(r)) => break r,
                Some(Event::Resolved(_)) | None => {}
            },
            None => anyhow::bail!("hyperd ended the pull without a result"),
        }
    };
    bars.clear();
    let shown = if result.name.is_empty() {
        format!(
            "{}@{}",
            args.reference.split('@').next().unwrap_or_default(),
            result.digest
        )
    } else {
        result.name.clone()
    };
    if !args.quiet {
        println!("Digest: {}", result.digest);
        if result.downloaded == 0 {
            println!("Status: Image is up to date for {shown}");
        } else {
            println!("Status: Downloaded newer image for {shown}");
        }
        if args.referrers {
            println!("Referrers: {}", result.referrers);
        }
    }
    println!("{shown}");
    Ok(ExitCode::SUCCESS)
}
