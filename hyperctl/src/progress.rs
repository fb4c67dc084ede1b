//! Progress on a terminal (bytes, rate, ETA; or blobs of a total); nothing when stderr is not
//! one or with -q.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) fn bar(total: Option<u64>, quiet: bool, verb: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{prefix} {spinner} {bytes} {binary_bytes_per_sec} {elapsed}",
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(verb.to_owned());
    bar
}

/// A bar of blobs done of a total that is known only once the first report comes (`check`);
/// nothing when stderr is not a terminal.
pub(crate) fn blobs(verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} blobs, {msg} eta {eta}")
            .expect("template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(verb.to_owned());
    bar
}
