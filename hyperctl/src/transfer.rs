//! A bar per blob while a pull or push runs, as docker draws them; nothing when stderr is not
//! a terminal or with -q.

use std::collections::HashMap;
use std::io::IsTerminal;

use hyperd_proto::v1::{BlobProgress, BlobState};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) struct Bars {
    multi: Option<MultiProgress>,
    bars: HashMap<String, ProgressBar>,
    pushing: bool,
}

impl Bars {
    pub(crate) fn new(quiet: bool, pushing: bool) -> Self {
        let shown = !quiet && std::io::stderr().is_terminal();
        Bars {
            multi: shown.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            bars: HashMap::new(),
            pushing,
        }
    }

    pub(crate) fn update(&mut self, p: &BlobProgress) {
        let Some(multi) = &self.multi else { return };
        let bar = self.bars.entry(p.digest.clone()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(p.total));
            bar.set_style(
                ProgressStyle::with_template("{prefix}: {msg} {wide_bar} {bytes}/{total_bytes}")
                    .expect("template is valid")
                    .progress_chars("=> "),
            );
            let short = p.digest.strip_prefix("sha256:").unwrap_or(&p.digest);
            bar.set_prefix(short.chars().take(12).collect::<String>());
            bar
        });
        bar.set_length(p.total);
        bar.set_position(p.done);
        let finished = |bar: &ProgressBar, msg: String| {
            bar.set_style(
                ProgressStyle::with_template("{prefix}: {msg}").expect("template is valid"),
            );
            bar.finish_with_message(msg);
        };
        match (
            BlobState::try_from(p.state).unwrap_or_default(),
            self.pushing,
        ) {
            (BlobState::Waiting, _) => bar.set_message("Waiting"),
            (BlobState::Moving, false) => bar.set_message("Downloading"),
            (BlobState::Moving, true) => bar.set_message("Pushing"),
            (BlobState::Done, false) => finished(bar, "Pull complete".into()),
            (BlobState::Done, true) => finished(bar, "Pushed".into()),
            (BlobState::Present, false) => finished(bar, "Already exists".into()),
            (BlobState::Present, true) => finished(bar, "Layer already exists".into()),
            (BlobState::Mounted, _) => finished(bar, format!("Mounted from {}", p.from)),
            (BlobState::Unspecified, _) => {}
        }
    }

    /// Takes the bars off the terminal before the summary is printed.
    pub(crate) fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}
