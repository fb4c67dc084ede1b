//! `hyperctl image prune`: remove the dangling images (or every image, `-a`), created before
//! `until` when given, as docker's `image prune` does, after asking unless `-f`.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use hyperd_proto::v1::PruneRequest;

use super::Client;
use super::images::size;
use crate::cli::PruneArgs;

pub(crate) async fn run(mut client: Client, args: PruneArgs) -> anyhow::Result<ExitCode> {
    if !args.force && !args.dry_run && !confirmed(args.all)? {
        return Ok(ExitCode::SUCCESS);
    }
    let request = PruneRequest {
        all: args.all,
        created_before: args.created_before.unwrap_or(0),
        dry_run: args.dry_run,
    };
    let pruned = client.prune(request).await?.into_inner();
    if args.dry_run {
        for image in &pruned.images {
            println!("Would delete: {image}");
        }
        println!("Total reclaimable space: {}", size(pruned.freed));
        return Ok(ExitCode::SUCCESS);
    }
    let removed = pruned.removed.unwrap_or_default();
    if !removed.untagged.is_empty() || !removed.deleted.is_empty() {
        println!("Deleted Images:");
        removed
            .untagged
            .iter()
            .for_each(|n| println!("untagged: {n}"));
        removed
            .deleted
            .iter()
            .for_each(|id| println!("deleted: {id}"));
        let referrers = removed.deleted_referrers.iter();
        referrers.for_each(|d| println!("deleted referrer: {d}"));
        println!();
    }
    println!("Total reclaimed space: {}", size(pruned.freed));
    Ok(ExitCode::SUCCESS)
}

/// docker's question, answered on stdin; anything but `y` keeps everything.
fn confirmed(all: bool) -> anyhow::Result<bool> {
    let what = match all {
        true => "all images",
        false => "all dangling images",
    };
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y"))
}
