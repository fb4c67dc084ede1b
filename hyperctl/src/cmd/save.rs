//! `hyperctl save`: the archive into a file (written aside, renamed when complete; hyperd is
//! handed the open file where it can take it, else it is streamed) or streamed to stdout. A
//! docker-format save says on stderr when it leaves referrers behind.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use hyperd_proto::v1::{ArchiveFormat as Wire, InspectRequest, SaveImage, SaveRequest};
use tokio::io::AsyncWriteExt;

use super::Client;
use crate::cli::{ArchiveFormat, SaveArgs};
use crate::peer::Peer;
use crate::{handoff, progress};

pub(crate) async fn run(
    mut client: Client,
    socket: &Path,
    peer: &Peer,
    args: SaveArgs,
) -> anyhow::Result<ExitCode> {
    let request = request(&args)?;
    if args.output.is_some() {
        // Handed over or streamed, what lands in the file comes from whoever serves the socket.
        peer.require_trusted("the contents of the file -o names")?;
    }
    if args.output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write an archive to a terminal; use -o FILE or redirect stdout");
    }
    if args.format == ArchiveFormat::Docker && !args.no_referrers {
        note_referrers_left_out(&mut client, &args.images).await;
    }
    if let (Some(path), false) = (&args.output, args.no_fd) {
        let tmp = temp_beside(path)?;
        let bar = progress::bar(None, args.quiet, "saving");
        if handoff::save(&mut client, socket, tmp.as_file(), request.clone(), &bar).await? {
            tmp.persist(path)
                .with_context(|| format!("renaming into {}", path.display()))?;
            bar.finish_and_clear();
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut stream = client.save(request).await?.into_inner();
    let bar = progress::bar(None, args.quiet, "saving");
    match &args.output {
        Some(path) => {
            let tmp = temp_beside(path)?;
            let mut file = tokio::fs::File::from_std(tmp.reopen()?);
            let (mut written, mut synced) = (0u64, 0u64);
            while let Some(msg) = stream.next().await {
                let chunk = msg?.chunk;
                file.write_all(&chunk)
                    .await
                    .with_context(|| format!("writing {}", path.display()))?;
                written += chunk.len() as u64;
                if written - synced >= WRITEBACK_STEP {
                    start_writeback(&file, synced, written - synced);
                    synced = written;
                }
                bar.inc(chunk.len() as u64);
            }
            file.sync_all()
                .await
                .with_context(|| format!("syncing {}", path.display()))?;
            tmp.persist(path)
                .with_context(|| format!("renaming into {}", path.display()))?;
        }
        None => {
            let mut out = tokio::io::stdout();
            while let Some(msg) = stream.next().await {
                let chunk = msg?.chunk;
                out.write_all(&chunk).await.context("writing to stdout")?;
                bar.inc(chunk.len() as u64);
            }
            out.flush().await.context("writing to stdout")?;
        }
    }
    bar.finish_and_clear();
    Ok(ExitCode::SUCCESS)
}

/// A new file in `path`'s directory, to be renamed to `path` once the archive is whole.
fn temp_beside(path: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".hyperctl-save-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))
}

/// Dirty bytes after which writeback is started, so the final fsync finds little left to do.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Asks the kernel to start writing back a range now, without waiting. Advisory: a failure only
/// means the final fsync does more of the work.
fn start_writeback(file: &tokio::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on an open descriptor we own; it reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// docker-archive has no place for referrers: one line on stderr names the images whose
/// referrers stay behind. Asked of Inspect, whose failures the save itself reports.
async fn note_referrers_left_out(client: &mut Client, images: &[String]) {
    let mut count = 0;
    let mut with = Vec::new();
    for image in images {
        let request = InspectRequest {
            image: image.clone(),
        };
        if let Ok(r) = client.inspect(request).await {
            let n = r.into_inner().referrers.len();
            if n > 0 {
                count += n;
                with.push(image.as_str());
            }
        }
    }
    if count > 0 {
        let s = if count == 1 { "" } else { "s" };
        eprintln!(
            "note: docker format cannot carry referrers: {count} referrer{s} of {} left out (-f oci keeps them)",
            with.join(", ")
        );
    }
}

fn request(args: &SaveArgs) -> anyhow::Result<SaveRequest> {
    let mut refs = std::collections::HashMap::new();
    for r in &args.refs {
        if !args.images.contains(&r.left) {
            bail!(
                "-r \"{r}\" names {:?}, which is not among the images to save",
                r.left
            );
        }
        refs.insert(r.left.clone(), r.right.clone());
    }
    Ok(SaveRequest {
        images: args
            .images
            .iter()
            .map(|i| SaveImage {
                image: i.clone(),
                ref_name: refs.get(i).cloned().unwrap_or_default(),
            })
            .collect(),
        format: match args.format {
            ArchiveFormat::Oci => Wire::Oci,
            ArchiveFormat::Docker => Wire::Docker,
        } as i32,
        platform: args.platform.clone().unwrap_or_default(),
        no_referrers: args.no_referrers,
    })
}
