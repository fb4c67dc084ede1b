//! `hyperctl push NAME[:TAG]`: hyperd uploads, hyperctl shows the bars and the digest.

use std::process::ExitCode;

use hyperd_proto::v1::{PushRequest, push_event::Event};

use super::RegistryClient;
use crate::cli::PushArgs;
use crate::credentials;
use crate::exit::from_registry;
use crate::peer::Peer;
use crate::transfer::Bars;

pub(crate) async fn run(
    mut client: RegistryClient,
    peer: &Peer,
    args: PushArgs,
) -> anyhow::Result<ExitCode> {
    let registry = credentials::registry_of(&args.name);
    let request = PushRequest {
        name: args.name.clone(),
        credential: peer.credential(credentials::lookup(&registry))?,
        no_referrers: args.no_referrers,
    };
    let mut events = client
        .push(request)
        .await
        .map_err(from_registry)?
        .into_inner();
    let mut bars = Bars::new(args.quiet, true);
    let result = loop {
        match events.message().await.map_err(from_registry)? {
            Some(e) => match e.event {
                Some(Event::Blob(p)) => bars.update(&p),
                Some(Event::Done(r)) => break r,
                None => {}
            },
            None => anyhow::bail!("hyperd ended the push without a result"),
        }
    };
    bars.clear();
    if result.referrers > 0 && !args.quiet {
        println!(
            "Pushed {} referrer{}",
            result.referrers,
            if result.referrers == 1 { "" } else { "s" }
        );
    }
    let tag = result.name.rsplit_once(':').map_or("latest", |(_, t)| t);
    println!("{tag}: digest: {} size: {}", result.digest, result.size);
    Ok(ExitCode::SUCCESS)
}
