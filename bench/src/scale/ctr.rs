//! containerd 1.6 beside hyperd, on the same archives: `ctr images import --no-unpack` of the
//! 1,000-image archive into an empty private containerd, `ctr images ls` of it, and, when asked
//! (its import takes minutes), `ctr images ls` of `LS_IMAGES` images.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

use integration::tools::Containerd;

use super::ops::path_str;
use crate::measure::median;

/// The store size of the opt-in listing: containerd took 330 s to import it here.
pub(crate) const LS_IMAGES: usize = 10_000;

/// containerd's figures; a failure is its message.
#[derive(Default)]
pub(crate) struct Figures {
    pub(crate) small_import: Option<Result<f64, String>>,
    /// Medians of `ctr images ls` and `ctr images ls -q`.
    pub(crate) small_ls: Option<Result<f64, String>>,
    pub(crate) small_ls_q: Option<Result<f64, String>>,
    /// At `LS_IMAGES` images: the import of the batches that fill it, and the listing's median.
    pub(crate) big_images: usize,
    pub(crate) big_import: Option<Result<f64, String>>,
    pub(crate) big_ls: Option<Result<f64, String>>,
}

/// Runs `ctr` on `c`; its time, or its failure (Containerd::ctr panics on one).
fn timed(c: &Containerd, args: &[&str]) -> Result<f64, String> {
    let t = Instant::now();
    catch_unwind(AssertUnwindSafe(|| c.ctr(args)))
        .map(|_| t.elapsed().as_secs_f64())
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "ctr failed".into())
        })
}

fn import(c: &Containerd, archive: &Path) -> Result<f64, String> {
    timed(c, &["images", "import", "--no-unpack", path_str(archive)])
}

/// The median of `runs` runs, or the first failure.
fn median_of(runs: usize, mut f: impl FnMut() -> Result<f64, String>) -> Result<f64, String> {
    let secs = (0..runs)
        .map(|_| f())
        .collect::<Result<Vec<f64>, String>>()?;
    Ok(median(secs))
}

impl Figures {
    /// The import of the 1,000-image archive into the empty `c`, and its listing.
    pub(crate) fn small(&mut self, c: &Containerd, archive: &Path, runs: usize) {
        eprintln!("  containerd: import and list");
        self.small_import = Some(import(c, archive));
        self.small_ls = Some(median_of(runs, || timed(c, &["images", "ls"])));
        self.small_ls_q = Some(median_of(runs, || timed(c, &["images", "ls", "-q"])));
    }

    /// Imports `batches` (image 0 onwards, so overlapping the 1,000 already in `c`; `images` in
    /// all), then times the listing.
    pub(crate) fn big(&mut self, c: &Containerd, batches: &[&Path], images: usize, runs: usize) {
        eprintln!("  containerd: import {images} images and list them");
        self.big_images = images;
        let t = Instant::now();
        for batch in batches {
            if let Err(e) = import(c, batch) {
                self.big_import = Some(Err(e));
                return;
            }
        }
        self.big_import = Some(Ok(t.elapsed().as_secs_f64()));
        self.big_ls = Some(median_of(runs, || timed(c, &["images", "ls"])));
    }
}
