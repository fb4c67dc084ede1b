//! Lets every gRPC client in, whatever it sends as `:authority`.
//!
//! gRPC C-core (Python grpcio since 1.57), grpc-java and Bazel send the socket path, sometimes
//! percent-encoded, as the HTTP/2 `:authority` of a `unix:` target. h2, under hyper and tonic,
//! parses it as `http::uri::Authority`, fails, and resets the stream with PROTOCOL_ERROR before any
//! service code runs. h2, hyper and tonic offer no option to accept it (h2 declined to relax the
//! check, hyperium/h2 PR 487), and a fork of h2 is not something to carry. grpc-go servers accept
//! such requests; so does hyperd.
//!
//! [`AnyAuthority`] wraps each accepted connection before tonic sees it. The server-to-client
//! direction is the socket's own (vectored writes included). The client-to-server direction is
//! read as HTTP/2 frames (`inbound.rs`): after the 24-byte preface, each 9-byte frame header says
//! how many bytes follow. Frames other than HEADERS and CONTINUATION are only looked at: the socket
//! reads straight into hyper's buffer and the wrapper scans frame headers there, so a 1 MiB DATA
//! frame costs one length check and no copy. A read that ends inside a frame header, or reaches a
//! HEADERS frame, is cut there and its rest kept aside (the only copy, bounded by one read).
//!
//! A header block (HEADERS plus CONTINUATIONs up to END_HEADERS; PADDED padding dropped, PRIORITY
//! fields and END_STREAM kept) is decoded whole with `loona-hpack`. The decoder follows the
//! client's encoder: h2's default SETTINGS_HEADER_TABLE_SIZE of 4096, which hyperd does not change;
//! table size updates above it are refused as h2 would. An `:authority` that
//! `http::uri::Authority` refuses, the exact test h2 applies, is replaced by `localhost` (grpc-go's
//! and Kubernetes' choice); every other field and the field order stay as sent. The block is
//! encoded again with every field a literal without indexing, so h2's dynamic table stays empty and
//! cannot disagree with the client's, whatever the client indexed; it leaves as HEADERS and
//! CONTINUATION frames of at most 16,384 bytes, the frame size every peer accepts. The cost is one
//! decode and encode per request's headers, not per byte.
//!
//! Bounds: a block of more than 64 KiB, compressed or decoded (RFC 7541 sizes), closes the
//! connection, as does a header block frame over the 16 KiB frame size hyperd advertises (h2 would
//! refuse it too), a block that fails to decode or a frame out of place inside one. hyper
//! advertises a max header list size of 16 KiB (h2's own default is 16 MiB) and h2 refuses streams
//! past it, so this bound only cuts off clients that ignore that setting fourfold; and at 64 KiB
//! the re-encoded block needs at most 4 frames, within the 5 CONTINUATION frames h2 accepts per
//! block at hyperd's frame size.
//!
//! hyperctl sends `localhost` itself. hyperd also serves reflection v1alpha beside v1, because
//! grpcio-reflection's `ProtoReflectionDescriptorDatabase` asks for that one only.

mod inbound;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

use inbound::Inbound;
pub(crate) use inbound::{MAX_IN_FRAME, Progress};

/// A read into held bytes asks for at least this much room: a header block and what follows it
/// usually arrive in one read.
const HELD_READ: usize = 16 << 10;

/// A connection whose client-to-server bytes are parsed as HTTP/2 frames; see the module docs.
/// The server-to-client direction is the inner stream's own.
pub(crate) struct AnyAuthority<S> {
    io: S,
    inbound: Inbound,
}

impl<S> AnyAuthority<S> {
    pub(crate) fn new(io: S) -> Self {
        AnyAuthority {
            io,
            inbound: Inbound::default(),
        }
    }

    /// How far the client's bytes have come: frames and header blocks begun and ended.
    pub(crate) fn progress(&self) -> Progress {
        self.inbound.progress()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AnyAuthority<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let ready = this.inbound.ready_mut();
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.inbound.holding() {
                let held = this.inbound.held_mut();
                held.reserve(HELD_READ);
                let n = ready!(tokio_util::io::poll_read_buf(
                    Pin::new(&mut this.io),
                    cx,
                    held
                ))?;
                if n == 0 {
                    // The client left mid-frame: h2 sees the end of the connection, which is all
                    // a truncated frame could tell it.
                    return Poll::Ready(Ok(()));
                }
                this.inbound.drain()?;
                continue;
            }
            // The common case: bytes go from the socket into h2's buffer and are only looked at.
            let start = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            let new = &buf.filled()[start..];
            if new.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let n = this.inbound.passable(new);
            if n < new.len() {
                // Rarely more than a header block and what came with it in the same read.
                this.inbound.hold(&new[n..])?;
                buf.set_filled(start + n);
            }
            if n > 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AnyAuthority<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    // hyper writes a response's frames as one vectored write when the stream supports it.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The peer's credentials still reach the service (the uid in each change's log line).
impl Connected for AnyAuthority<UnixStream> {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.io.connect_info()
    }
}
