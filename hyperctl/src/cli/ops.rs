//! The flags of the commands an operator runs on the store as a whole: `system df`,
//! `image prune`, `events`.

use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum SystemCommand {
    /// Show what images keep on disk, and what a prune of the dangling ones would free
    Df(DfArgs),
}

#[derive(clap::Args)]
pub(crate) struct DfArgs {
    /// Show each image: its size, what it shares with others and what is its alone
    #[arg(short, long)]
    pub(crate) verbose: bool,
}

#[derive(Subcommand)]
pub(crate) enum ImageCommand {
    /// Remove dangling (untagged) images, or with -a every image, and what they alone kept
    Prune(PruneArgs),
}

#[derive(clap::Args)]
pub(crate) struct PruneArgs {
    /// Remove every image, tagged or not, not only the dangling ones
    #[arg(short, long)]
    pub(crate) all: bool,
    /// Only images created before until=DURATION (24h, 7d) or until=TIME (RFC 3339, unix
    /// seconds); only images with label=KEY[=VALUE]; not images with label!=KEY[=VALUE].
    /// Repeatable; every filter must hold
    #[arg(long = "filter", value_name = "FILTER", value_parser = prune_filter)]
    pub(crate) filters: Vec<PruneFilter>,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub(crate) force: bool,
    /// Say what would be removed and freed; remove nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// One `image prune --filter`, as docker's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PruneFilter {
    /// `until=…`, as unix seconds.
    Until(i64),
    /// `label=KEY[=VALUE]`: `KEY[=VALUE]`.
    Label(String),
    /// `label!=KEY[=VALUE]`: `KEY[=VALUE]`.
    NotLabel(String),
}

fn prune_filter(s: &str) -> Result<PruneFilter, String> {
    let nonempty = |l: &str| match l.is_empty() {
        true => Err("a label filter needs a KEY".to_owned()),
        false => Ok(l.to_owned()),
    };
    if let Some(l) = s.strip_prefix("label!=") {
        return nonempty(l).map(PruneFilter::NotLabel);
    }
    if let Some(l) = s.strip_prefix("label=") {
        return nonempty(l).map(PruneFilter::Label);
    }
    until(s).map(PruneFilter::Until)
}

/// `until=…` as unix seconds: a duration before now, an RFC 3339 time, or unix seconds.
fn until(s: &str) -> Result<i64, String> {
    let when = s
        .strip_prefix("until=")
        .ok_or("only until=WHEN, label=KEY[=VALUE] and label!=KEY[=VALUE] are supported")?;
    unix_nanos(when).map(|nanos| nanos.div_euclid(1_000_000_000))
}

#[derive(clap::Args)]
pub(crate) struct EventsArgs {
    /// Show the logged events from this time on first: a DURATION before now (10m, 2h) or a
    /// TIME (RFC 3339, unix seconds)
    #[arg(long, value_name = "WHEN", value_parser = unix_nanos)]
    pub(crate) since: Option<i64>,
    /// Stop at this time (once it has passed): a DURATION before now or a TIME; without it,
    /// events stream until interrupted
    #[arg(long, value_name = "WHEN", value_parser = unix_nanos)]
    pub(crate) until: Option<i64>,
    /// Only events of a type (type=load, type=tag, ...) or about an image (image=NAME[:TAG],
    /// image=DIGEST); repeat a key for either of its values
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub(crate) filters: Vec<String>,
    /// Print one JSON object per line instead of one line of text
    #[arg(long, value_name = "FORMAT", value_parser = ["json"])]
    pub(crate) format: Option<String>,
}

/// WHEN as unix nanoseconds: a duration before now, an RFC 3339 time, or unix seconds (with a
/// fraction, as docker prints them).
pub(crate) fn unix_nanos(when: &str) -> Result<i64, String> {
    let since_epoch = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_err(|_| "a time before 1970".to_owned())
    };
    let at = if let Ok(secs) = when.parse::<f64>() {
        std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{when}: {e}"))?
    } else if let Ok(ago) = humantime::parse_duration(when) {
        let now = std::time::SystemTime::now();
        since_epoch(
            now.checked_sub(ago)
                .ok_or("a duration longer than the epoch")?,
        )?
    } else {
        since_epoch(humantime::parse_rfc3339_weak(when).map_err(|e| format!("{when}: {e}"))?)?
    };
    i64::try_from(at.as_nanos()).map_err(|_| format!("{when}: too far ahead"))
}
