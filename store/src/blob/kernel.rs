//! The copy of a body that lies in a file a client handed over: the kernel moves the bytes
//! (`copy_file_range`: a page-cache copy, or a reflink where the filesystem shares extents) while
//! another thread hashes what landed in the staging file.
//!
//! The staging file is hashed, not the client's file: the client may write to its file while
//! hyperd copies it, and only the private copy is what gets published, so only its bytes may be
//! what the digest check speaks for.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, mpsc};

use tokio_util::sync::CancellationToken;

use super::Threads;
use super::copy::{CHUNK, Hashed, start_writeback};
use crate::decompress::Compression;
use crate::digest::Hasher;
use crate::error::{Error, IoContext, Result};
use crate::progress::Progress;

/// Bytes per kernel copy: the hashing thread follows in these steps, and writeback of each is
/// started as it is done, so the fsync at commit finds little left.
const STEP: u64 = 8 << 20;
/// What the hashing thread reads at a time, and the fallback copy's buffer.
const READ: usize = 1 << 20;

/// Where a body comes from: `len` bytes at `at` in the client's file. `base` is where the body
/// starts in the archive, for progress. `threads` are the load's, which its copies run on.
#[derive(Clone)]
pub(crate) struct Body {
    pub(crate) file: Arc<File>,
    pub(crate) at: u64,
    pub(crate) len: u64,
    pub(crate) base: u64,
    pub(crate) progress: Progress,
    pub(crate) threads: Threads,
}

/// Copies the body into a new file at `dest` and hashes the copy, until `stop` is cancelled.
/// Blocking.
pub(crate) fn copy_hashed(
    body: &Body,
    dest: &Path,
    what: &str,
    stop: &CancellationToken,
) -> Result<Hashed> {
    let out = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dest)
        .context(|| format!("creating {}", dest.display()))?;
    if body.len <= STEP {
        // Small bodies are common (configs, manifests, small layers): a thread each would cost
        // more than the overlap saves.
        copy(body, &out, dest, what, stop, &mut |_| ())?;
        return hash(&out, body.len).context(|| format!("reading back {}", dest.display()));
    }
    let (tx, rx) = mpsc::sync_channel::<u64>(4);
    std::thread::scope(|s| {
        let hasher = s.spawn(|| hash_following(&out, rx));
        let copied = copy(body, &out, dest, what, stop, &mut |n| {
            let _ = tx.send(n);
        });
        drop(tx);
        let hashed = hasher.join().expect("hashing thread panicked");
        copied?;
        hashed.context(|| format!("reading back {}", dest.display()))
    })
}

/// Copies the body, telling `done` each time another step has landed.
fn copy(
    body: &Body,
    out: &File,
    dest: &Path,
    what: &str,
    stop: &CancellationToken,
    done: &mut dyn FnMut(u64),
) -> Result<()> {
    let step = &mut |copied| {
        body.progress.reach(body.base + copied);
        done(copied);
    };
    copy_range(&body.file, body.at, out, 0, body.len, stop, step).map_err(|e| match e {
        Failed::Write(e) => Error::Io {
            context: format!("writing {}", dest.display()),
            source: e,
        },
        Failed::Read(e) => Error::invalid(format!("reading {what} from the file: {e}")),
        Failed::Short(copied) => Error::invalid(format!(
            "{what}: the file ended {copied} bytes into a {}-byte body: the archive is \
             truncated (or the file was cut short while hyperd read it)",
            body.len
        )),
        Failed::Stopped => Error::Cancelled,
    })
}

/// Why a [`copy_range`] stopped: the side at fault, the source ended after this many bytes, or
/// the job was stopped.
pub(crate) enum Failed {
    Read(io::Error),
    Write(io::Error),
    Short(u64),
    Stopped,
}

/// Copies `len` bytes at `src_at` in `src` to `dst_at` in `dst`, in the kernel where both files
/// allow (else through a buffer), starting writeback of each step and telling `done` how many
/// bytes have landed. Blocking; neither file's offset moves. `stop` is checked before each step,
/// so a stopped copy writes at most one more step.
pub(crate) fn copy_range(
    src: &File,
    src_at: u64,
    dst: &File,
    dst_at: u64,
    len: u64,
    stop: &CancellationToken,
    done: &mut dyn FnMut(u64),
) -> std::result::Result<(), Failed> {
    let mut copied = 0u64;
    let mut kernel = true;
    let mut buf = Vec::new();
    while copied < len {
        if stop.is_cancelled() {
            return Err(Failed::Stopped);
        }
        let want = (len - copied).min(STEP);
        let n = if kernel {
            let (mut from, mut to) = (src_at + copied, dst_at + copied);
            match rustix::fs::copy_file_range(
                src,
                Some(&mut from),
                dst,
                Some(&mut to),
                want as usize,
            ) {
                Ok(n) => n as u64,
                // Another filesystem, or one that cannot: copy through a buffer instead.
                Err(e) if cross_device(e) => {
                    kernel = false;
                    continue;
                }
                Err(e) if destination_refused(e) => return Err(Failed::Write(e.into())),
                Err(e) => return Err(Failed::Read(e.into())),
            }
        } else {
            buf.resize(READ.min(want as usize), 0);
            let n = src
                .read_at(&mut buf, src_at + copied)
                .map_err(Failed::Read)?;
            dst.write_all_at(&buf[..n], dst_at + copied)
                .map_err(Failed::Write)?;
            n as u64
        };
        if n == 0 {
            return Err(Failed::Short(copied));
        }
        start_writeback(dst, dst_at + copied, n);
        copied += n;
        done(copied);
    }
    Ok(())
}

fn cross_device(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [Errno::XDEV, Errno::INVAL, Errno::OPNOTSUPP, Errno::NOSYS].contains(&e)
}

/// A kernel copy that failed because of the destination: its disk is full or read-only, or the
/// file refuses writes (a seal, an immutable or append-only file, a running executable).
fn destination_refused(e: rustix::io::Errno) -> bool {
    use rustix::io::Errno;
    [
        Errno::NOSPC,
        Errno::DQUOT,
        Errno::FBIG,
        Errno::ROFS,
        Errno::PERM,
        Errno::TXTBSY,
    ]
    .contains(&e)
}

/// Hashes the first `len` bytes of `file`.
fn hash(file: &File, len: u64) -> io::Result<Hashed> {
    let mut state = State::default();
    state.advance(file, len)?;
    Ok(state.finish())
}

/// Hashes `file` as far as each length received says it has been written.
fn hash_following(file: &File, lengths: mpsc::Receiver<u64>) -> io::Result<Hashed> {
    let mut state = State::default();
    for len in lengths {
        state.advance(file, len)?;
    }
    Ok(state.finish())
}

#[derive(Default)]
struct State {
    hasher: Hasher,
    head: Vec<u8>,
    buf: Vec<u8>,
}

impl State {
    fn advance(&mut self, file: &File, len: u64) -> io::Result<()> {
        // No larger than the body: a zeroed megabyte per small entry would make archives of many
        // small files crawl.
        let cap = READ.min(usize::try_from(len).unwrap_or(READ));
        if self.buf.len() < cap {
            self.buf.resize(cap, 0);
        }
        while self.hasher.len() < len {
            let want = (len - self.hasher.len()).min(self.buf.len() as u64) as usize;
            let n = file.read_at(&mut self.buf[..want], self.hasher.len())?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            if self.head.len() < 4 {
                let take = (4 - self.head.len()).min(n);
                self.head.extend_from_slice(&self.buf[..take]);
            }
            // sha256 is fastest fed L2-sized slices.
            for slice in self.buf[..n].chunks(CHUNK) {
                self.hasher.update(slice);
            }
        }
        Ok(())
    }

    fn finish(self) -> Hashed {
        let len = self.hasher.len();
        Hashed {
            digest: self.hasher.finish(),
            len,
            compression: Compression::sniff(&self.head),
        }
    }
}
