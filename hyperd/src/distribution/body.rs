//! The one body type every answer has (whole bytes, or a blob file streamed in chunks), and the
//! bodies of pushes read in bounded pieces.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};

use super::error::Problem;

pub(super) type Body = BoxBody<Bytes, std::io::Error>;

/// How much of a blob is read at a time: memory per download stays [`READ_AHEAD`] + 1 of these
/// (and hyper's write buffer, `MAX_BUFFER`), whatever the blob's size.
const CHUNK: u64 = 256 << 10;
/// Reads of a blob in flight at once: while hyper sends one chunk, the next ones are read, so
/// the page cache (or the disk) and the socket work at the same time.
const READ_AHEAD: usize = 2;

pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// `len` bytes of `file` from `start`, a chunk at a time, each read (`pread`) off the async
/// threads while the one before it goes out.
pub(super) fn file(file: std::fs::File, start: u64, len: u64) -> Body {
    let file = Arc::new(file);
    let reads = (0..len.div_ceil(CHUNK)).map(move |i| {
        let file = file.clone();
        let at = i * CHUNK;
        let n = CHUNK.min(len - at) as usize;
        async move {
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; n];
                file.read_exact_at(&mut buf, start + at).map(|()| buf)
            });
            let buf = read.await.map_err(std::io::Error::other)??;
            Ok(Frame::data(Bytes::from(buf)))
        }
    });
    let chunks = futures_util::StreamExt::buffered(futures_util::stream::iter(reads), READ_AHEAD);
    StreamBody::new(chunks).boxed()
}

/// A request's whole body, up to `limit` bytes; `too_large` past that.
pub(super) async fn collect(
    body: Incoming,
    limit: u64,
    stall: Duration,
    too_large: Problem,
) -> Result<Bytes, Problem> {
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let collected = tokio::time::timeout(stall, limited.collect())
        .await
        .map_err(|_| Problem::upload_invalid(format!("the body took over {stall:?}")))?;
    match collected {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(too_large),
        Err(e) => Err(Problem::upload_invalid(format!("reading the body: {e}"))),
    }
}
