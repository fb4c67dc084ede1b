//! `hyperctl system df`: what the images keep on disk, as docker's `system df` shows it, and
//! with `-v` each image's share.

use std::process::ExitCode;
use std::time::SystemTime;

use hyperd_proto::v1::{DiskUsageRequest, DiskUsageResponse, ImageDiskUsage};

use super::Client;
use super::images::{columns, created, short_id, size};
use crate::cli::DfArgs;

pub(crate) async fn df(mut client: Client, args: DfArgs) -> anyhow::Result<ExitCode> {
    let usage = client
        .disk_usage(DiskUsageRequest::default())
        .await?
        .into_inner();
    print!("{}", summary(&usage));
    if args.verbose {
        println!("\nImages space usage:\n");
        print!("{}", per_image(&usage.images, SystemTime::now()));
    }
    Ok(ExitCode::SUCCESS)
}

/// docker's summary table; TAGGED stands where docker counts images containers use.
fn summary(u: &DiskUsageResponse) -> String {
    let share = match u.bytes {
        0 => 0,
        total => u.reclaimable * 100 / total,
    };
    let images = [
        "Images".to_owned(),
        u.images.len().to_string(),
        u.tagged.to_string(),
        size(u.bytes),
        format!("{} ({share}%)", size(u.reclaimable)),
    ];
    let referrers = [
        "Referrers".to_owned(),
        u.referrers.to_string(),
        String::new(),
        String::new(),
        String::new(),
    ];
    columns(
        ["TYPE", "TOTAL", "TAGGED", "SIZE", "RECLAIMABLE"],
        &[images, referrers],
    )
}

/// One row per name (or one `<none>` row), as docker's `system df -v` lists images.
fn per_image(images: &[ImageDiskUsage], now: SystemTime) -> String {
    let mut rows = Vec::new();
    for i in images {
        let names: Vec<(String, String)> = match i.names.is_empty() {
            true => vec![("<none>".into(), "<none>".into())],
            false => i.names.iter().map(|n| split_name(n)).collect(),
        };
        for (repository, tag) in names {
            rows.push([
                repository,
                tag,
                short_id(&i.id).to_owned(),
                created(&i.created, now),
                size(i.size),
                size(i.shared),
                size(i.unique),
                i.referrers.to_string(),
                last_used(&i.last_used, now),
            ]);
        }
    }
    let header = [
        "REPOSITORY",
        "TAG",
        "IMAGE ID",
        "CREATED",
        "SIZE",
        "SHARED SIZE",
        "UNIQUE SIZE",
        "REFERRERS",
        "LAST USED",
    ];
    columns(header, &rows)
}

/// "2 hours ago", or "never" when hyperd recorded no use.
fn last_used(rfc3339: &str, now: SystemTime) -> String {
    match rfc3339 {
        "" => "never".into(),
        t => created(t, now),
    }
}

/// `busybox:1.35` → (`busybox`, `1.35`); the tag follows the last `:` after the last `/`.
fn split_name(name: &str) -> (String, String) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(colon) => (
            name[..slash + colon].to_owned(),
            name[slash + colon + 1..].to_owned(),
        ),
        None => (name.to_owned(), "<none>".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_tag_not_the_port() {
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(split_name("busybox:1.35"), pair("busybox", "1.35"));
        assert_eq!(
            split_name("127.0.0.1:5000/team/app:v1"),
            pair("127.0.0.1:5000/team/app", "v1")
        );
    }

    #[test]
    fn last_use_reads_like_created_or_never() {
        let now = humantime::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
        assert_eq!(last_used("", now), "never");
        let t = "2026-11-27T10:00:00.123456789Z";
        assert_eq!(last_used(t, now), "2 hours ago");
    }

    #[test]
    fn the_summary_says_what_a_prune_would_free() {
        let u = DiskUsageResponse {
            images: vec![ImageDiskUsage::default(); 3],
            tagged: 1,
            referrers: 2,
            bytes: 4_000_000,
            reclaimable: 1_000_000,
        };
        let table = summary(&u);
        let images = table.lines().nth(1).unwrap();
        let cells: Vec<&str> = images.split_whitespace().collect();
        assert_eq!(cells, ["Images", "3", "1", "4.00MB", "1.00MB", "(25%)"]);
    }
}
