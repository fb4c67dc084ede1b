//! The one body type every answer has: whole bytes, or a blob file streamed in chunks.

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use tokio::io::AsyncReadExt;

pub(super) type Body = BoxBody<Bytes, std::io::Error>;

/// How much of a blob is read at a time: memory per download stays this much (and hyper's
/// write buffer, `MAX_BUFFER`), whatever the blob's size.
const CHUNK: usize = 512 << 10;

pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// `len` bytes of `file` from where it is positioned, a chunk at a time.
pub(super) fn file(file: tokio::fs::File, len: u64) -> Body {
    let chunks = tokio_util::io::ReaderStream::with_capacity(file.take(len), CHUNK);
    StreamBody::new(chunks.map_ok(Frame::data)).boxed()
}
