//! The small commands: tag, inspect, check, version, completion.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use hyperd_proto::v1::{CheckRequest, InspectRequest, TagRequest, VersionRequest};

use super::Client;
use crate::cli::{Cli, CompletionArgs, InspectArgs, TagArgs};
use crate::exit;

pub(crate) async fn tag(mut client: Client, args: TagArgs) -> anyhow::Result<ExitCode> {
    client
        .tag(TagRequest {
            source: args.source,
            target: args.target,
        })
        .await?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn inspect(mut client: Client, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    let mut worst = None;
    for image in args.images {
        match client
            .inspect(InspectRequest {
                image: image.clone(),
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                let i = r.image.unwrap_or_default();
                let parse = |what: &str, s: &str| -> anyhow::Result<serde_json::Value> {
                    serde_json::from_str(s)
                        .with_context(|| format!("{what} of {image} is not JSON"))
                };
                out.push(serde_json::json!({
                    "Id": i.id,
                    "RepoTags": r.names,
                    "Digest": i.digest,
                    "MediaType": r.media_type,
                    "Created": i.created,
                    "Size": i.size,
                    "Platforms": i.platforms,
                    "Manifest": parse("manifest", &r.manifest)?,
                    "Config": parse("config", &r.config)?,
                }));
            }
            Err(status) => {
                worst.get_or_insert(exit::report(&status.into()));
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(worst.map_or(ExitCode::SUCCESS, ExitCode::from))
}

pub(crate) async fn check(mut client: Client) -> anyhow::Result<ExitCode> {
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

pub(crate) async fn version(socket: &Path) -> anyhow::Result<ExitCode> {
    println!("Client: hyperctl {}", env!("CARGO_PKG_VERSION"));
    let mut client = super::connect(socket).await?;
    let v = client.version(VersionRequest {}).await?.into_inner();
    println!("Server: hyperd {} (API {})", v.version, v.api);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn completion(args: CompletionArgs) -> anyhow::Result<ExitCode> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "hyperctl",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::SUCCESS)
}
