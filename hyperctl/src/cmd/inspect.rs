//! `hyperctl inspect IMAGE…`: one JSON array, docker's field names, and the referrers that
//! travel with each image.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Context;
use hyperd_proto::v1::{InspectRequest, Referrer};

use super::Client;
use crate::cli::InspectArgs;
use crate::exit;

pub(crate) async fn run(mut client: Client, args: InspectArgs) -> anyhow::Result<ExitCode> {
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
                    "LastUsed": super::images::time_or_null(&i.last_used),
                    "Pinned": i.pinned,
                    "Manifest": parse("manifest", &r.manifest)?,
                    "Config": parse("config", &r.config)?,
                    "Referrers": r.referrers.iter().map(referrer).collect::<Vec<_>>(),
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

fn referrer(r: &Referrer) -> serde_json::Value {
    let annotations: BTreeMap<&String, &String> = r.annotations.iter().collect();
    serde_json::json!({
        "Digest": r.digest,
        "ArtifactType": r.artifact_type,
        "MediaType": r.media_type,
        "Size": r.size,
        "Annotations": annotations,
        "Subject": r.subject,
    })
}
