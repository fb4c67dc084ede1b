//! The walk itself: entry by entry, each header through the tar reader, each body around it.

use std::future::Future;

use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio::sync::mpsc::Sender;

use super::outbox::Outbox;
use super::source::Source;
use super::tap::Tap;
use super::{Output, Piece, Walked};

/// Walks the archive from `source` into `out`, leaving out each blob entry's body for which
/// `stored` says yes. Gives the source back at its end.
pub(crate) async fn walk<F, Fut>(
    source: Source,
    mut stored: F,
    out: Output<'_>,
) -> anyhow::Result<(Walked, Source)>
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let tap = Tap::new(source);
    let mut archive = tokio_tar::Archive::new(tap.clone());
    let mut entries = archive.entries()?;
    let mut walked = Walked::default();
    let mut outbox = Outbox::new(out);
    let mut at = 0u64;
    loop {
        let next = entries.next().await;
        let header_bytes = tap.take_header_bytes();
        at += header_bytes.len() as u64;
        outbox.bytes(&header_bytes).await?;
        // An entry the tar reader cannot make sense of ends the walk: the rest goes as it is
        // and hyperd gives the error a full load would.
        let Some(Ok(entry)) = next else { break };
        let size = entry.effective_size();
        if entry.raw_file_position() != at {
            break;
        }
        let blob = blob_digest(&entry).filter(|_| size > 0);
        let mut source = tap.take_source();
        // A body cut short by the end of the file is sent as it is, to fail as it would.
        let whole = source.holds(at, size);
        let elide = match &blob {
            Some(digest) => {
                walked.blobs.push((digest.clone(), size));
                whole && stored(digest.clone()).await?
            }
            None => false,
        };
        let moved = if elide {
            let skipped = source.skip(size).await?;
            walked.elided += 1;
            walked.elided_bytes += skipped;
            outbox.elided(skipped).await?;
            skipped
        } else {
            outbox.copy(&mut source, size).await?
        };
        at += moved;
        tap.give_back(source, moved);
        if moved < size {
            break;
        }
    }
    drop(entries);
    drop(archive);
    let mut source = tap.take_source();
    if let Output::Channel(_) = out {
        outbox.copy(&mut source, u64::MAX).await?;
    }
    outbox.flush().await?;
    Ok((walked, source))
}

/// Sends the rest of `source` as it is.
pub(crate) async fn send_all(source: &mut Source, out: &Sender<Piece>) -> anyhow::Result<()> {
    let mut outbox = Outbox::new(Output::Channel(out));
    outbox.copy(source, u64::MAX).await?;
    outbox.flush().await
}

/// `sha256:<hex>` when the entry is a regular file at `blobs/sha256/<hex>`, as hyperd reads
/// names (a leading `./` dropped).
fn blob_digest<R: AsyncRead + Unpin>(entry: &tokio_tar::Entry<R>) -> Option<String> {
    if !entry.header().entry_type().is_file() {
        return None;
    }
    let path = entry.path_bytes().ok()?;
    let path = std::str::from_utf8(&path).ok()?;
    let hex = path
        .trim_start_matches("./")
        .strip_prefix("blobs/sha256/")?;
    let is_hex = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    is_hex.then(|| format!("sha256:{hex}"))
}
