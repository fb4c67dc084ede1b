//! One admitted connection: the `:authority` rewriter over the socket, its place in the counts,
//! and the deadline of a client that stalls.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, UdsConnectInfo};

use super::count::Slot;
use crate::authority::{AnyAuthority, Progress};

/// When a client that owes bytes is cut off. A client owes a request's headers from the moment
/// it connects until its first header block ends, and again from the first frame of each later
/// block until that block ends; it owes the rest of a frame once the frame has begun. Each debt
/// must be paid within the limit: progress on another frame does not extend a header block's.
#[derive(Debug)]
pub(crate) struct Stall {
    seen: Progress,
    headers_since: Option<Instant>,
    frame_since: Option<Instant>,
}

impl Stall {
    /// A connection accepted at `now`: it owes the preface and a request's headers.
    pub(crate) fn new(now: Instant) -> Self {
        Stall {
            seen: Progress {
                frames: 0,
                mid_frame: true,
                blocks: 0,
                mid_block: false,
            },
            headers_since: Some(now),
            frame_since: Some(now),
        }
    }

    pub(crate) fn seen(&self) -> Progress {
        self.seen
    }

    /// Takes the progress after a read at `now`; returns since when the client has owed bytes,
    /// if it owes any.
    pub(crate) fn observe(&mut self, p: Progress, now: Instant) -> Option<Instant> {
        let owes_headers = p.blocks == 0 || p.mid_block;
        self.headers_since = match self.headers_since {
            Some(t) if owes_headers && p.blocks == self.seen.blocks => Some(t),
            _ => owes_headers.then_some(now),
        };
        self.frame_since = match self.frame_since {
            Some(t) if p.mid_frame && p.frames == self.seen.frames => Some(t),
            _ => p.mid_frame.then_some(now),
        };
        self.seen = p;
        self.since()
    }

    pub(crate) fn since(&self) -> Option<Instant> {
        self.headers_since.into_iter().chain(self.frame_since).min()
    }
}

/// An admitted connection, as tonic serves it.
pub(crate) struct Conn {
    io: AnyAuthority<UnixStream>,
    _slot: Slot,
    stall: Stall,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Conn {
    pub(crate) fn new(stream: UnixStream, slot: Slot, limit: Duration) -> Self {
        let now = Instant::now();
        Conn {
            io: AnyAuthority::new(stream),
            _slot: slot,
            stall: Stall::new(now),
            limit,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    /// Called when the socket has nothing for hyperd, or no room: fails once the client has
    /// owed bytes for longer than the limit. Writes check it too, since h2 stops reading from a
    /// client that does not read what it is sent.
    fn poll_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(since) = self.stall.since() else {
            return Poll::Pending;
        };
        let deadline = since + self.limit;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        ready!(self.timer.as_mut().poll(cx));
        tracing::debug!(limit = ?self.limit, "closing a connection whose client stalled");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client sent neither a request's headers nor a whole frame in time",
        )))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        let progress = this.io.progress();
        if progress != this.stall.seen() {
            this.stall.observe(progress, Instant::now());
        }
        match read {
            Poll::Pending => this.poll_stall(cx),
            done => done,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.poll_stall(cx),
            done => done,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.poll_stall(cx),
            done => done,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.poll_stall(cx),
            done => done,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The peer's credentials still reach the services.
impl Connected for Conn {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(frames: u64, mid_frame: bool, blocks: u64, mid_block: bool) -> Progress {
        Progress {
            frames,
            mid_frame,
            blocks,
            mid_block,
        }
    }

    #[test]
    fn the_first_request_is_owed_from_the_accept_whatever_else_arrives() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut stall = Stall::new(t0);
        assert_eq!(stall.observe(p(1, false, 0, false), s(1)), Some(t0));
        assert_eq!(stall.observe(p(5, false, 0, true), s(2)), Some(t0));
        assert_eq!(stall.observe(p(6, false, 1, false), s(3)), None);
    }

    #[test]
    fn a_later_block_is_owed_from_its_first_frame_and_frames_do_not_extend_it() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut stall = Stall::new(t0);
        stall.observe(p(3, false, 1, false), s(1));
        assert_eq!(stall.observe(p(4, false, 1, true), s(10)), Some(s(10)));
        // CONTINUATIONs arrive, one by one, without END_HEADERS.
        assert_eq!(stall.observe(p(5, false, 1, true), s(11)), Some(s(10)));
        assert_eq!(stall.observe(p(6, true, 1, true), s(12)), Some(s(10)));
        assert_eq!(stall.observe(p(7, false, 2, false), s(13)), None);
    }

    #[test]
    fn a_frame_is_owed_from_the_read_that_began_it() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut stall = Stall::new(t0);
        stall.observe(p(3, false, 1, false), s(1));
        assert_eq!(stall.observe(p(3, true, 1, false), s(20)), Some(s(20)));
        assert_eq!(stall.observe(p(3, true, 1, false), s(25)), Some(s(20)));
        // The frame ended and the next began in the same read: a new debt.
        assert_eq!(stall.observe(p(4, true, 1, false), s(26)), Some(s(26)));
        assert_eq!(stall.observe(p(5, false, 1, false), s(27)), None);
    }
}
