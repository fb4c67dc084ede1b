//! `hyperctl images`: a table like docker's, IDs only, or JSON.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use hyperd_proto::v1::{Image, ListRequest};

use super::Client;
use crate::cli::{ImagesArgs, ListFormat};

pub(crate) async fn run(mut client: Client, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let images = client.list(ListRequest {}).await?.into_inner().images;
    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for i in &images {
            if seen.insert(&i.id) {
                println!("{}", short_id(&i.id));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        ListFormat::Json => println!("{}", serde_json::to_string_pretty(&json(&images))?),
        ListFormat::Table => print!("{}", table(&images, SystemTime::now())),
    }
    Ok(ExitCode::SUCCESS)
}

fn json(images: &[Image]) -> serde_json::Value {
    images
        .iter()
        .map(|i| {
            serde_json::json!({
                "Repository": or_none(&i.repository),
                "Tag": or_none(&i.tag),
                "Name": i.name,
                "ID": i.id,
                "Digest": i.digest,
                "Created": i.created,
                "Size": i.size,
                "Platforms": i.platforms,
            })
        })
        .collect()
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

pub(crate) fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn table(images: &[Image], now: SystemTime) -> String {
    let rows: Vec<[String; 5]> = images
        .iter()
        .map(|i| {
            [
                or_none(&i.repository).to_owned(),
                or_none(&i.tag).to_owned(),
                short_id(&i.id).to_owned(),
                created(&i.created, now),
                size(i.size),
            ]
        })
        .collect();
    columns(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)
}

/// `rows` under `header`, in columns as wide as their widest cell, three spaces apart, as docker
/// prints its tables.
pub(super) fn columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let mut widths = header.each_ref().map(String::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// "3 days ago", as docker prints it.
fn created(rfc3339: &str, now: SystemTime) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(
        rfc3339
            .trim_end_matches('Z')
            .split('.')
            .next()
            .unwrap_or(""),
    ) else {
        return "N/A".into();
    };
    let secs = now.duration_since(t).unwrap_or(Duration::ZERO).as_secs();
    match span(secs) {
        Some(span) => format!("{span} ago"),
        None => "Less than a minute ago".into(),
    }
}

/// "3 days", as docker says how long ago something was; `None` under a minute.
pub(super) fn span(secs: u64) -> Option<String> {
    let (n, unit) = match secs {
        s if s < 60 => return None,
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 86_400 * 14 => (s / 86_400, "day"),
        s if s < 86_400 * 60 => (s / (86_400 * 7), "week"),
        s if s < 86_400 * 365 * 2 => (s / (86_400 * 30), "month"),
        s => (s / (86_400 * 365), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    Some(format!("{n} {unit}{plural}"))
}

/// Decimal units with three significant digits, as docker prints sizes.
pub(super) fn size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let digits = if v >= 100.0 || u == 0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{}", units[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(1_240_000), "1.24MB");
        assert_eq!(size(203_000_000), "203MB");
        assert_eq!(size(12_345_678_901), "12.3GB");
    }

    #[test]
    fn created_reads_like_docker() {
        let now = humantime::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
        assert_eq!(
            created("2026-11-27T11:59:30Z", now),
            "Less than a minute ago"
        );
        assert_eq!(
            created("2026-11-27T10:00:00.123456789Z", now),
            "2 hours ago"
        );
        assert_eq!(created("2026-11-20T12:00:00Z", now), "7 days ago");
        assert_eq!(created("2024-01-01T00:00:00Z", now), "2 years ago");
        assert_eq!(created("", now), "N/A");
    }

    #[test]
    fn table_pads_columns_and_shows_none() {
        let img = |repo: &str, tag: &str| Image {
            repository: repo.into(),
            tag: tag.into(),
            id: format!("sha256:{}", "ab".repeat(32)),
            size: 1_240_000,
            ..Image::default()
        };
        let out = table(&[img("busybox", "latest"), img("", "")], SystemTime::now());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "REPOSITORY   TAG      IMAGE ID       CREATED   SIZE"
        );
        assert_eq!(
            lines[1],
            "busybox      latest   abababababab   N/A       1.24MB"
        );
        assert_eq!(
            lines[2],
            "<none>       <none>   abababababab   N/A       1.24MB"
        );
    }
}
