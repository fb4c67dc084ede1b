//! `hyperctl image prune`: remove the dangling images (or every image, `-a`), created before
//! `until` and with (or without) the labels given, as docker's `image prune` does, after asking
//! unless `-f`. hyperd never prunes a pinned image.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use hyperd_proto::v1::PruneRequest;

use super::Client;
use super::images::size;
use crate::cli::{PruneArgs, PruneFilter};

pub(crate) async fn run(mut client: Client, args: PruneArgs) -> anyhow::Result<ExitCode> {
    if !args.force && !args.dry_run && !confirmed(args.all)? {
        return Ok(ExitCode::SUCCESS);
    }
    let request = request(&args);
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

/// The request `args` ask for; of several `until`s the earliest holds (each must).
fn request(args: &PruneArgs) -> PruneRequest {
    let mut request = PruneRequest {
        all: args.all,
        dry_run: args.dry_run,
        ..PruneRequest::default()
    };
    for f in &args.filters {
        match f {
            PruneFilter::Until(t) if request.created_before == 0 => request.created_before = *t,
            PruneFilter::Until(t) => request.created_before = request.created_before.min(*t),
            PruneFilter::Label(l) => request.labels.push(l.clone()),
            PruneFilter::NotLabel(l) => request.not_labels.push(l.clone()),
        }
    }
    request
}

/// docker's question, answered on stdin; anything but `y` keeps everything.
fn confirmed(all: bool) -> anyhow::Result<bool> {
    let what = if all {
        "all images"
    } else {
        "all dangling images"
    };
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command, ImageCommand};

    fn parsed(filters: &[&str]) -> Result<PruneRequest, clap::Error> {
        let mut argv = vec!["hyperctl", "image", "prune", "-a"];
        argv.extend(filters.iter().flat_map(|f| ["--filter", f]));
        match Cli::try_parse_from(argv)?.command {
            Command::Image(ImageCommand::Prune(a)) => Ok(request(&a)),
            _ => unreachable!(),
        }
    }

    #[test]
    fn filters_read_as_dockers() {
        let r = parsed(&["label=a=b", "label!=c", "until=200", "label=d", "until=100"]).unwrap();
        assert_eq!(r.labels, ["a=b", "d"]);
        assert_eq!(r.not_labels, ["c"]);
        assert_eq!((r.created_before, r.all), (100, true));
        assert_eq!(parsed(&[]).unwrap().created_before, 0);
        for bad in ["label=", "label!=", "labels=x", "dangling=true"] {
            assert!(parsed(&[bad]).is_err(), "{bad}");
        }
    }
}
