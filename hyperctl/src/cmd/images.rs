//! `hyperctl images`: a table like docker's, IDs only, or JSON, printed page by page as
//! ListStream sends them: hyperctl holds one page of rows at a time (and, for `-q`, the IDs
//! already printed), however large the store.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use hyperd_proto::v1::{Image, ListRequest};

use super::Client;
use crate::cli::{ImagesArgs, ListFormat};

pub(crate) async fn run(mut client: Client, args: ImagesArgs) -> anyhow::Result<ExitCode> {
    let request = ListRequest {
        filters: args.filters.clone(),
        ..ListRequest::default()
    };
    let mut pages = client.list_stream(request).await?.into_inner();
    let mut rows = Rows::new(&args);
    let mut out = BufWriter::with_capacity(64 << 10, io::stdout());
    while let Some(page) = pages.message().await? {
        let more = !page.next_page_token.is_empty();
        if let Err(e) = rows.page(&mut out, &page.images, more) {
            return quiet_on_broken_pipe(e);
        }
    }
    if let Err(e) = rows.end(&mut out) {
        return quiet_on_broken_pipe(e);
    }
    Ok(ExitCode::SUCCESS)
}

/// A reader that stopped reading (`| head`) got what it wanted: no error.
fn quiet_on_broken_pipe(e: io::Error) -> anyhow::Result<ExitCode> {
    match e.kind() {
        io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        _ => Err(e.into()),
    }
}

/// How the rows are printed, and what that needs to remember between pages.
enum Rows {
    /// Each image ID once: those printed so far.
    Quiet(HashSet<String>),
    /// One JSON array; whether an element is out yet.
    Json { started: bool },
    /// The table; its column widths once the first page set them.
    Table(Table),
}

impl Rows {
    fn new(args: &ImagesArgs) -> Self {
        match (args.quiet, args.format) {
            (true, _) => Rows::Quiet(HashSet::new()),
            (false, ListFormat::Json) => Rows::Json { started: false },
            (false, ListFormat::Table) => Rows::Table(Table {
                digests: args.digests,
                widths: None,
                now: SystemTime::now(),
            }),
        }
    }

    /// Prints a page (`more`: others follow) and flushes it, so that rows show as they come.
    fn page(&mut self, out: &mut impl Write, images: &[Image], more: bool) -> io::Result<()> {
        match self {
            Rows::Quiet(seen) => {
                for i in images.iter().filter(|i| seen.insert(i.id.clone())) {
                    writeln!(out, "{}", short_id(&i.id))?;
                }
            }
            Rows::Json { started } => {
                for i in images {
                    out.write_all(if *started { b",\n" } else { b"[\n" })?;
                    *started = true;
                    json_element(out, i)?;
                }
            }
            Rows::Table(t) => t.page(out, images, more)?,
        }
        out.flush()
    }

    /// Closes what the pages left open.
    fn end(&mut self, out: &mut impl Write) -> io::Result<()> {
        match self {
            Rows::Quiet(_) => {}
            Rows::Json { started: true } => out.write_all(b"\n]\n")?,
            Rows::Json { started: false } => out.write_all(b"[]\n")?,
            Rows::Table(t) => t.page(out, &[], false)?,
        }
        out.flush()
    }
}

/// One element of the JSON array, as `serde_json::to_string_pretty` of the whole array would
/// print it: the output is the same as when hyperctl printed the array at once.
fn json_element(out: &mut impl Write, i: &Image) -> io::Result<()> {
    let value = serde_json::json!({
        "Repository": or_none(&i.repository),
        "Tag": or_none(&i.tag),
        "Name": i.name,
        "ID": i.id,
        "Digest": i.digest,
        "Created": i.created,
        "Size": i.size,
        "Platforms": i.platforms,
        "LastUsed": time_or_null(&i.last_used),
        "Pinned": i.pinned,
    });
    let text = serde_json::to_string_pretty(&value)?;
    let lines: Vec<String> = text.lines().map(|l| format!("  {l}")).collect();
    out.write_all(lines.join("\n").as_bytes())
}

/// A time hyperd sent, `null` for none (an image without a recorded use).
pub(super) fn time_or_null(rfc3339: &str) -> serde_json::Value {
    match rfc3339 {
        "" => serde_json::Value::Null,
        t => t.into(),
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

pub(crate) fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// The table, printed as pages come. docker makes each column as wide as its widest cell; the
/// rows after the first page are not known when it is printed, so its widths hold for them all:
/// a listing of one page is laid out exactly as docker would, and when more pages follow, each
/// column is at least as wide as [`Table::FLOORS`] too. A wider cell later widens its own row
/// only.
struct Table {
    digests: bool,
    widths: Option<Vec<usize>>,
    now: SystemTime,
}

impl Table {
    /// Widths, per column of the table without DIGEST, under which typical cells fit:
    /// `registry.k8s.io/kube-apiserver`, `v1.29.0-rc.1`, "11 months ago", "999.9MB".
    const FLOORS: [usize; 5] = [30, 12, 12, 14, 7];

    fn header(&self) -> Vec<String> {
        let mut h = vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"];
        if self.digests {
            h.insert(2, "DIGEST");
        }
        h.into_iter().map(String::from).collect()
    }

    fn row(&self, i: &Image) -> Vec<String> {
        let mut r = vec![
            or_none(&i.repository).to_owned(),
            or_none(&i.tag).to_owned(),
            short_id(&i.id).to_owned(),
            created(&i.created, self.now),
            size(i.size),
        ];
        if self.digests {
            r.insert(2, or_none(&i.digest).to_owned());
        }
        r
    }

    /// The header, the first time, then the page's rows.
    fn page(&mut self, out: &mut impl Write, images: &[Image], more: bool) -> io::Result<()> {
        let rows: Vec<Vec<String>> = images.iter().map(|i| self.row(i)).collect();
        if self.widths.is_none() {
            let header = self.header();
            let mut widths = widths(std::iter::once(&header).chain(&rows));
            if more {
                let mut floors = Self::FLOORS.to_vec();
                if self.digests {
                    floors.insert(2, 0);
                }
                widths
                    .iter_mut()
                    .zip(floors)
                    .for_each(|(w, f)| *w = (*w).max(f));
            }
            out.write_all(line(&header, &widths).as_bytes())?;
            self.widths = Some(widths);
        }
        let widths = self.widths.as_deref().unwrap_or_default();
        rows.iter()
            .try_for_each(|r| out.write_all(line(r, widths).as_bytes()))
    }
}

/// `rows` under `header`, in columns as wide as their widest cell, three spaces apart, as docker
/// prints its tables.
pub(super) fn columns<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let header = header.map(String::from);
    let all = || std::iter::once(&header).chain(rows);
    let widths = widths(all());
    all().map(|r| line(r, &widths)).collect()
}

/// The width of each column: its widest cell.
fn widths<'a, R: AsRef<[String]> + 'a>(rows: impl IntoIterator<Item = &'a R>) -> Vec<usize> {
    let mut widths: Vec<usize> = Vec::new();
    for r in rows {
        let r = r.as_ref();
        widths.resize(widths.len().max(r.len()), 0);
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    widths
}

/// One line of `cells`, each padded to its column's width, three spaces apart.
fn line(cells: &[String], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, w)| format!("{c:<w$}"))
        .collect();
    let mut line = padded.join("   ").trim_end().to_owned();
    line.push('\n');
    line
}

/// "3 days ago", as docker prints it.
pub(super) fn created(rfc3339: &str, now: SystemTime) -> String {
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

    fn img(repo: &str, tag: &str, id: u8) -> Image {
        Image {
            repository: repo.into(),
            tag: tag.into(),
            id: format!("sha256:{}", hex::encode([id; 32])),
            digest: format!("sha256:{}", hex::encode([id + 1; 32])),
            size: 1_240_000,
            platforms: vec!["linux/amd64".into()],
            ..Image::default()
        }
    }

    fn table(digests: bool) -> Rows {
        Rows::Table(Table {
            digests,
            widths: None,
            now: SystemTime::now(),
        })
    }

    /// What `rows` prints for `pages`, each with whether more follow.
    fn print(mut rows: Rows, pages: &[&[Image]]) -> String {
        let mut out = Vec::new();
        for (n, page) in pages.iter().enumerate() {
            rows.page(&mut out, page, n + 1 < pages.len()).unwrap();
        }
        rows.end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn one_page_is_laid_out_as_docker_does() {
        let out = print(
            table(false),
            &[&[img("busybox", "latest", 0xab), img("", "", 0xab)]],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "REPOSITORY   TAG      IMAGE ID       CREATED   SIZE",
                "busybox      latest   abababababab   N/A       1.24MB",
                "<none>       <none>   abababababab   N/A       1.24MB",
            ]
        );
        assert_eq!(
            print(table(false), &[&[]]),
            "REPOSITORY   TAG   IMAGE ID   CREATED   SIZE\n"
        );
    }

    #[test]
    fn later_pages_keep_the_first_pages_widths_with_floors() {
        let wide = "registry.example/a/very/long/repository/name";
        let out = print(table(false), &[&[img("a", "1", 1)], &[img(wide, "1", 2)]]);
        let lines: Vec<&str> = out.lines().collect();
        let pad = |s: &str, w: usize| format!("{s:<w$}   ");
        let first = format!("{}{}", pad("a", 30), pad("1", 12));
        assert!(lines[1].starts_with(&first), "{out}");
        assert!(lines[0].starts_with(&format!("{}{}", pad("REPOSITORY", 30), pad("TAG", 12))));
        // The wide cell pushes its own row only.
        assert!(
            lines[2].starts_with(&format!("{wide}   {}0202", pad("1", 12))),
            "{out}"
        );
    }

    #[test]
    fn digests_come_after_the_tag() {
        let out = print(table(true), &[&[img("busybox", "1", 0xab)]]);
        let lines: Vec<&str> = out.lines().collect();
        let digest = format!("sha256:{}", "ac".repeat(32));
        assert_eq!(
            lines[0],
            format!(
                "REPOSITORY   TAG   {:<71}   IMAGE ID       CREATED   SIZE",
                "DIGEST"
            )
        );
        assert_eq!(
            lines[1],
            format!("busybox      1     {digest}   abababababab   N/A       1.24MB")
        );
    }

    #[test]
    fn json_streamed_is_the_array_printed_at_once() {
        let images = [img("a", "1", 1), img("", "", 2), img("c", "3", 3)];
        let whole: Vec<serde_json::Value> = images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "Repository": or_none(&i.repository), "Tag": or_none(&i.tag),
                    "Name": i.name, "ID": i.id, "Digest": i.digest, "Created": i.created,
                    "Size": i.size, "Platforms": i.platforms,
                    "LastUsed": time_or_null(&i.last_used), "Pinned": i.pinned,
                })
            })
            .collect();
        let json = || Rows::Json { started: false };
        assert_eq!(
            print(json(), &[&images[..2], &[], &images[2..]]),
            serde_json::to_string_pretty(&whole).unwrap() + "\n"
        );
        assert_eq!(print(json(), &[&[]]), "[]\n");
    }

    #[test]
    fn quiet_prints_each_id_once_across_pages() {
        let pages: [&[Image]; 2] = [
            &[img("a", "1", 1), img("b", "1", 1)],
            &[img("c", "1", 2), img("d", "1", 1)],
        ];
        assert_eq!(
            print(Rows::Quiet(HashSet::new()), &pages),
            "010101010101\n020202020202\n"
        );
    }
}
