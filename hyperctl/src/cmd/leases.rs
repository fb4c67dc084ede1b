//! `hyperctl leases ls` (a table like docker's, or IDs only) and `hyperctl leases rm`, which
//! deletes each lease in turn, goes on past failures and fails at the end if any did.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use hyperd_proto::v1::lease_info::Maker;
use hyperd_proto::v1::{DeleteLeaseRequest, LeaseInfo, ListLeasesRequest};

use super::ContentClient;
use super::images::{columns, span};
use crate::cli::LeasesCommand;
use crate::exit;

pub(crate) async fn run(
    mut client: ContentClient,
    command: LeasesCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        LeasesCommand::Ls(args) => {
            let leases = client
                .list_leases(ListLeasesRequest {})
                .await?
                .into_inner()
                .leases;
            if args.quiet {
                leases.iter().for_each(|l| println!("{}", l.id));
            } else {
                print!("{}", table(&leases, unix_now()));
            }
            Ok(ExitCode::SUCCESS)
        }
        LeasesCommand::Rm(args) => {
            let mut worst = None;
            for id in args.ids {
                match client
                    .delete_lease(DeleteLeaseRequest { id: id.clone() })
                    .await
                {
                    Ok(_) => println!("{id}"),
                    Err(status) => {
                        worst.get_or_insert(exit::report(&status.into()));
                    }
                }
            }
            Ok(worst.map_or(ExitCode::SUCCESS, ExitCode::from))
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn table(leases: &[LeaseInfo], now: i64) -> String {
    let rows: Vec<[String; 5]> = leases
        .iter()
        .map(|l| {
            [
                l.id.clone(),
                match l.maker {
                    Some(Maker::Uid(uid)) => uid.to_string(),
                    None => "-".into(),
                },
                created(l.created_at, now),
                expires(l.expires_at, now),
                l.blobs.to_string(),
            ]
        })
        .collect();
    columns(["LEASE ID", "UID", "CREATED", "EXPIRES", "BLOBS"], &rows)
}

/// "3 hours ago"; "N/A" for a lease made before hyperd recorded when (0).
fn created(at: i64, now: i64) -> String {
    if at == 0 {
        return "N/A".into();
    }
    match span(now.saturating_sub(at).max(0) as u64) {
        Some(s) => format!("{s} ago"),
        None => "Less than a minute ago".into(),
    }
}

/// "in 59 minutes".
fn expires(at: i64, now: i64) -> String {
    match span(at.saturating_sub(now).max(0) as u64) {
        Some(s) => format!("in {s}"),
        None => "in less than a minute".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_uid_ages_and_blobs() {
        let now = 1_000_000;
        let lease = |id: &str, uid: Option<u32>, created_at| LeaseInfo {
            id: id.into(),
            maker: uid.map(Maker::Uid),
            created_at,
            expires_at: now + 3600,
            blobs: 3,
        };
        let out = table(
            &[
                lease("ab12", Some(1000), now - 7200),
                lease("cd34", None, 0),
            ],
            now,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "LEASE ID   UID    CREATED       EXPIRES     BLOBS",
                "ab12       1000   2 hours ago   in 1 hour   3",
                "cd34       -      N/A           in 1 hour   3",
            ]
        );
    }
}
