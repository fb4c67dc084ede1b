//! Walks a plain tar archive the way hyperd will read it, to leave out the bodies of the
//! `blobs/sha256/<hex>` entries hyperd already holds. The tar reader sees every header byte;
//! bodies go around it (sent in 1 MiB pieces, or left out), and the reader is then told they
//! passed. Everything not left out is sent exactly as it is in the archive, so hyperd reads the
//! same archive a full load sends, and checks the holes itself.
//!
//! - `source`: where the archive comes from (a file seeks past a body, a pipe reads past it);
//! - `tap`: the tar reader's input, which keeps the header bytes it reads to be sent;
//! - `outbox`: gathers what is sent into messages of up to 1 MiB;
//! - `walk`: the walk, entry by entry, and the plain send of an archive as it is.

mod outbox;
mod source;
mod tap;
#[cfg(test)]
mod tests;
mod walk;

use bytes::Bytes;
use tokio::sync::mpsc::Sender;

pub(crate) use source::Source;
pub(crate) use walk::{send_all, walk};

/// What the walk sends: archive bytes, or the length of a body left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Bytes(Bytes),
    Elided(u64),
}

/// Where a walk's pieces go.
#[derive(Clone, Copy)]
pub(crate) enum Output<'a> {
    /// Nowhere: the walk only looks, reading the headers and going past every body (a file's
    /// first pass, to learn its blobs).
    Look,
    /// Into the channel that feeds hyperd's Load call.
    Channel(&'a Sender<Piece>),
}

/// What a walk found and left out.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    /// Every blob entry with a body: `sha256:<hex>` and its size.
    pub(crate) blobs: Vec<(String, u64)>,
    pub(crate) elided: usize,
    pub(crate) elided_bytes: u64,
}

/// The channel to hyperd closed: the call has ended, and its status says why.
#[derive(Debug, thiserror::Error)]
#[error("hyperd stopped reading the archive")]
pub(crate) struct Stopped;
