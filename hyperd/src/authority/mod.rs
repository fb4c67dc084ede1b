//! Lets every gRPC client in, whatever it sends as `:authority`.
//!
//! gRPC C-core (Python grpcio since 1.57), grpc-java and Bazel send the socket path as the HTTP/2
//! `:authority` of a `unix:` target; h2 refuses it as malformed and resets the stream before tonic
//! sees the request. [`AnyAuthority`] wraps each accepted connection and rewrites such an
//! `:authority` to `localhost` on the way in; see ARCHITECTURE.md for why it is done this way.

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
