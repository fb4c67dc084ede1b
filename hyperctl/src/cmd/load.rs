//! `hyperctl load`: hand hyperd the archive's file, or send it, leaving out the blobs hyperd
//! already holds.
//!
//! A regular file (`-i FILE`, or stdin redirected from one) is handed over open when hyperd takes
//! it (`handoff`, `--no-fd` to stream), and hyperd reads it itself. Otherwise the archive is
//! streamed, and a plain tar is sent with the bodies of stored blobs left out, unless `--send-all`.
//!
//! Leaving out what is stored. The walker (`elide`) reads the plain tar with the same tar reader
//! hyperd uses, over a tap that keeps the header bytes it reads: header bytes and the bodies of
//! blobs hyperd lacks are sent exactly as they are in the archive, and the body of a
//! `blobs/sha256/<hex>` entry hyperd holds is sent as `elided: N`. From a file (or stdin redirected
//! from one) it first walks the headers alone, seeking past bodies, and asks `ContentService.Info`
//! about every blob at once, then walks again to send; from a pipe it asks about each blob as its
//! header passes and reads the body it leaves out. A whole-compressed archive is sent whole.
//!
//! hyperd reads the result through the one import path, so names, IDs, digests and refusals are
//! those of a full load: it uses its own verified copy of a stored blob, sent or not, and refuses a
//! hole that is not such a blob's body. A blob removed between the question and the load fails the
//! load with FAILED_PRECONDITION, nothing committed; from `-i FILE` hyperctl then sends the whole
//! archive once more; otherwise the error stands and the next load sends the blob. What was left
//! hyperd held already is reported on a line of its own, whichever way the archive went.

use std::collections::HashSet;
use std::io::{IsTerminal, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use hyperd_proto::tonic::{Code, Status};
use hyperd_proto::v1::{
    ErrorReason, InfoRequest, LoadOptions, LoadRequest, LoadResponse, RefMapping,
    load_request::Part,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio_stream::wrappers::ReceiverStream;

use super::{Clients, ContentClient, images::size};
use crate::cli::LoadArgs;
use crate::elide::{self, Piece, Source, Stopped, Walked};
use crate::{handoff, progress};

/// What stdin's pipe is asked to hold (the default is 64 KiB; unprivileged users may get up to
/// /proc/sys/fs/pipe-max-size, 1 MiB by default).
const PIPE_BUFFER: usize = 1 << 20;

/// Digests per Info call: hyperd answers at most 10,000 at once.
const INFO_BATCH: usize = 10_000;

pub(crate) async fn run(mut clients: Clients, args: LoadArgs) -> anyhow::Result<ExitCode> {
    let from_stdin = args.input.as_ref().is_none_or(|p| p.as_os_str() == "-");
    if from_stdin && std::io::stdin().is_terminal() {
        bail!("refusing to read an archive from a terminal; use -i FILE or redirect stdin");
    }
    if let Some(dir) = args.input.as_ref().filter(|p| p.is_dir()) {
        bail!("{} is a directory; -i takes an archive file", dir.display());
    }
    let refs: Vec<RefMapping> = args
        .refs
        .iter()
        .map(|r| RefMapping {
            name: r.left.clone(),
            ref_name: r.right.clone(),
        })
        .collect();
    if args.input.as_ref().is_some_and(|p| p.as_os_str() != "-") {
        // Handed over or streamed (no companion socket, --no-fd), the file's bytes reach
        // whoever serves the socket.
        clients
            .peer
            .require_trusted("the contents of the file -i names")?;
    }
    if !args.no_fd
        && let Some((file, start, len)) = regular_file(&args).context("reading the archive")?
    {
        let bar = progress::bar(Some(len), args.quiet, "loading");
        let options = LoadOptions { refs: refs.clone() };
        let (images, socket) = (&mut clients.images, &clients.socket);
        if let Some(response) = handoff::load(images, socket, &file, start, options, &bar).await? {
            bar.finish_and_clear();
            print_loaded(&args, &response, Route::HandedOver);
            return Ok(ExitCode::SUCCESS);
        }
    }
    let elide = if args.send_all {
        Elide::Nothing
    } else {
        Elide::Stored
    };
    let (walked, response) = match send(&clients, &args, refs.clone(), elide).await {
        // A blob hyperd said it held was removed before the load reached it: a file can be
        // sent again, whole.
        Err(e) if removed_since(&e) && args.input.as_ref().is_some_and(|p| p.is_file()) => {
            send(&clients, &args, refs, Elide::Nothing).await?
        }
        sent => sent?,
    };
    let route = if walked.elided > 0 {
        Route::Elided
    } else {
        Route::SentWhole
    };
    print_loaded(&args, &response, route);
    Ok(ExitCode::SUCCESS)
}

fn print_loaded(args: &LoadArgs, response: &LoadResponse, route: Route) {
    if args.quiet {
        return;
    }
    for image in &response.images {
        if image.names.is_empty() {
            println!("Loaded image ID: {}", image.id);
        }
        image
            .names
            .iter()
            .for_each(|n| println!("Loaded image: {n}"));
    }
    if let Some(line) = summary(response, route) {
        println!("{line}");
    }
}

/// How the archive's bytes reached hyperd, which says what its already stored blobs saved.
#[derive(Clone, Copy)]
enum Route {
    /// hyperd read the file itself and passed over their bodies.
    HandedOver,
    /// Sent whole (compressed, or `--send-all`): hyperd read them but wrote nothing.
    SentWhole,
    /// Their bodies were left out of the stream.
    Elided,
}

/// The load's one line on what hyperd already held, when it held anything.
fn summary(response: &LoadResponse, route: Route) -> Option<String> {
    if response.already_stored == 0 {
        return None;
    }
    let bytes = size(response.already_stored_bytes);
    let saved = match route {
        Route::HandedOver => format!("{bytes} skipped"),
        Route::SentWhole => format!("{bytes} not written"),
        Route::Elided => format!("{bytes} not sent"),
    };
    Some(format!(
        "{} of {} blobs already stored ({saved})",
        response.already_stored, response.blobs
    ))
}

/// The input as a regular file that hyperd can be handed, where the archive starts in it, and
/// the archive's length; `None` for a pipe, a terminal or anything else that must be streamed.
fn regular_file(args: &LoadArgs) -> anyhow::Result<Option<(std::fs::File, u64, u64)>> {
    use std::io::Seek;
    let file = match &args.input {
        // Looked at before opening: opening a FIFO would wait for its writer.
        Some(p) if p.as_os_str() != "-" => match std::fs::metadata(p) {
            Ok(m) if m.is_file() => {
                std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?
            }
            _ => return Ok(None),
        },
        _ => match std::io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => std::fs::File::from(fd),
            Err(_) => return Ok(None),
        },
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let start = (&file).stream_position()?;
    Ok(Some((file, start, meta.len().saturating_sub(start))))
}

fn removed_since(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Status>()
        .is_some_and(|s| hyperd_proto::reason_of(s) == Some(ErrorReason::LeftOutBlobGone))
}

/// What a Load call leaves out of the archive it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elide {
    /// The bodies of the blobs hyperd holds (of a plain tar; a compressed one goes whole).
    Stored,
    /// Nothing: the archive goes whole (`--send-all`, or the retry after a blob went missing).
    Nothing,
}

/// One Load call: the archive, leaving out what `elide` says.
async fn send(
    clients: &Clients,
    args: &LoadArgs,
    refs: Vec<RefMapping>,
    elide: Elide,
) -> anyhow::Result<(Walked, LoadResponse)> {
    let (source, len, plain) = open(args).await.context("reading the archive")?;
    let bar = progress::bar(len, args.quiet, "loading");
    let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(4);
    let progress = bar.clone();
    let pieces = ReceiverStream::new(rx).map(move |p| LoadRequest {
        part: Some(match p {
            Piece::Bytes(b) => {
                progress.inc(b.len() as u64);
                Part::Chunk(b)
            }
            Piece::Elided(n) => {
                progress.inc(n);
                Part::Elided(n)
            }
        }),
    });
    let first = LoadRequest {
        part: Some(Part::Options(LoadOptions { refs })),
    };
    let body = futures_util::stream::once(async { first }).chain(pieces);
    // Only a plain tar's entries can be walked.
    let elide = if plain { elide } else { Elide::Nothing };
    let feed = feed(source, elide, clients.content.clone(), tx);
    let mut images = clients.images.clone();
    let call = images.load(body);
    tokio::pin!(feed, call);
    // A read error must abort the call, not end the stream: an archive cut short at an entry
    // boundary could otherwise look complete. hyperd may answer before all was sent (it stops
    // at the end-of-archive marker): then its answer stands.
    let (walked, response) = tokio::select! {
        walked = &mut feed => match walked {
            Ok(walked) => (walked, call.await?),
            Err(e) if e.is::<Stopped>() => (Walked::default(), call.await?),
            Err(e) => return Err(e.context("reading the archive")),
        },
        answer = &mut call => (Walked::default(), answer?),
    };
    bar.finish_and_clear();
    Ok((walked, response.into_inner()))
}

/// The input, its length when known, and whether it is a plain tar (not whole-compressed).
async fn open(args: &LoadArgs) -> anyhow::Result<(Source, Option<u64>, bool)> {
    let file = match &args.input {
        Some(p) if p.as_os_str() != "-" => Some(
            tokio::fs::File::open(p)
                .await
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        // stdin redirected from a file can seek like one.
        _ => std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::fs::File::from)
            .filter(|f| f.metadata().is_ok_and(|m| m.is_file()))
            .map(tokio::fs::File::from_std),
    };
    let mut head = Vec::with_capacity(4);
    match file {
        // A FIFO named with -i reads like a pipe: it cannot seek.
        Some(f) if !f.metadata().await?.is_file() => {
            let mut f = f;
            (&mut f).take(4).read_to_end(&mut head).await?;
            let plain = is_plain(&head);
            let whole = std::io::Cursor::new(head).chain(f);
            Ok((Source::Pipe(Box::pin(whole)), None, plain))
        }
        Some(mut f) => {
            let start = f.stream_position().await?;
            let len = f.metadata().await?.len().saturating_sub(start);
            (&mut f).take(4).read_to_end(&mut head).await?;
            f.seek(SeekFrom::Start(start)).await?;
            Ok((Source::File(f, len), Some(len), is_plain(&head)))
        }
        None => {
            let mut stdin = stdin_stream();
            (&mut stdin).take(4).read_to_end(&mut head).await?;
            let plain = is_plain(&head);
            let whole = std::io::Cursor::new(head).chain(stdin);
            Ok((Source::Pipe(Box::pin(whole)), None, plain))
        }
    }
}

/// stdin as a stream. A pipe is read directly off the event loop with a 1 MiB pipe buffer: through
/// tokio's stdin (a thread hop and a copy per read) and the default 64 KiB buffer, reading a
/// pipe took longer than the load it feeds when hyperd already holds the blobs.
fn stdin_stream() -> Pin<Box<dyn AsyncRead + Send>> {
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .ok()
        .filter(|fd| {
            std::fs::File::from(fd.try_clone().expect("dup of stdin"))
                .metadata()
                .is_ok_and(|m| m.file_type().is_fifo())
        });
    if let Some(fd) = pipe {
        // A refusal (a limit for unprivileged users) leaves the pipe as it was.
        let _ = rustix::pipe::fcntl_setpipe_size(&fd, PIPE_BUFFER);
        if let Ok(receiver) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
            return Box::pin(receiver);
        }
    }
    Box::pin(tokio::io::stdin())
}

/// Not gzip or zstd, by the magic bytes hyperd tells them apart by.
fn is_plain(head: &[u8]) -> bool {
    !matches!(head, [0x1f, 0x8b, ..] | [0x28, 0xb5, 0x2f, 0xfd, ..])
}

/// Sends the archive, leaving out what `elide` says.
async fn feed(
    source: Source,
    elide: Elide,
    content: ContentClient,
    tx: tokio::sync::mpsc::Sender<Piece>,
) -> anyhow::Result<Walked> {
    match (source, elide) {
        (Source::File(mut f, len), Elide::Stored) => {
            let start = f.stream_position().await?;
            let look = elide::Output::Look;
            let (plan, source) =
                elide::walk(Source::File(f, len), |_| async { Ok(true) }, look).await?;
            let digests: Vec<String> = plan.blobs.into_iter().map(|(d, _)| d).collect();
            let stored = stored(content, digests).await?;
            let Source::File(mut f, len) = source else {
                unreachable!("a walk gives back the source it took")
            };
            f.seek(SeekFrom::Start(start)).await?;
            let stored = &stored;
            let contains = |d: String| std::future::ready(Ok(stored.contains(&d)));
            let out = elide::Output::Channel(&tx);
            Ok(elide::walk(Source::File(f, len), contains, out).await?.0)
        }
        (source, Elide::Stored) => {
            let ask = |d: String| {
                let content = content.clone();
                async move { Ok(stored(content, vec![d.clone()]).await?.contains(&d)) }
            };
            Ok(elide::walk(source, ask, elide::Output::Channel(&tx))
                .await?
                .0)
        }
        (mut source, Elide::Nothing) => {
            elide::send_all(&mut source, &tx).await?;
            Ok(Walked::default())
        }
    }
}

/// Which of `digests` hyperd holds. A hyperd without the content API holds nothing we know of.
async fn stored(
    mut content: ContentClient,
    digests: Vec<String>,
) -> anyhow::Result<HashSet<String>> {
    let mut out = HashSet::new();
    for batch in digests.chunks(INFO_BATCH) {
        let answer = content
            .info(InfoRequest {
                digests: batch.to_vec(),
            })
            .await;
        match answer {
            Ok(r) => out.extend(
                r.into_inner()
                    .blobs
                    .into_iter()
                    .filter(|b| b.stored)
                    .map(|b| b.digest),
            ),
            Err(s) if s.code() == Code::Unimplemented => return Ok(HashSet::new()),
            Err(s) => return Err(s.into()),
        }
    }
    Ok(out)
}
