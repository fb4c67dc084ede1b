//! `--metrics-listen ADDR`: the page at `GET /metrics`, over HTTP/1.1, on a loopback TCP address
//! (`127.0.0.1:9464`, `[::1]:9464`) or a Unix socket (any ADDR with a `/`).
//!
//! Any other TCP address is refused: the page tells whoever reads it what hyperd holds and does
//! (image counts, bytes, who is connected how often), and the gRPC socket's access rules do not
//! reach a TCP port. A Unix socket is bound as hyperd's own is (`socket/bind.rs`: mode 0660,
//! `--group`'s group) and removed at exit. A scraper may hold at most [`MAX_CONNECTIONS`]
//! connections, each of which must send its request's headers within [`HEADER_TIMEOUT`]; the
//! rest wait in the listen backlog, so a stuck scraper can stop only other scrapes, never
//! gRPC calls.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::Metrics;

/// Connections to the page open at once.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The Prometheus text format's media type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long accepting waits after an error before trying again (out of descriptors, say).
const BACKOFF: Duration = Duration::from_millis(100);

/// Where the page is served: bound at start, before hyperd says it is ready.
#[derive(Clone, Debug)]
pub struct Listener(Arc<Bound>);

#[derive(Debug)]
enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `addr`: a loopback `IP:PORT`, or the path of a Unix socket (given to `group`).
    pub fn bind(addr: &str, group: Option<u32>) -> anyhow::Result<Self> {
        if addr.contains('/') {
            let path = PathBuf::from(addr);
            let listener = crate::socket::bind(&path, group)?;
            return Ok(Listener(Arc::new(Bound::Unix(listener, path))));
        }
        let at: SocketAddr = addr.parse().with_context(|| {
            format!("--metrics-listen {addr}: neither IP:PORT (127.0.0.1:9464) nor a socket path")
        })?;
        if !at.ip().is_loopback() {
            bail!(
                "--metrics-listen {addr}: only a loopback address (127.0.0.1, [::1]) or a Unix \
                 socket path is served; put a proxy in front to publish the page"
            );
        }
        let listener = std::net::TcpListener::bind(at)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
            .with_context(|| format!("binding {at} for --metrics-listen"))?;
        Ok(Listener(Arc::new(Bound::Tcp(listener))))
    }

    /// Where it listens, for the log.
    pub fn address(&self) -> String {
        match &*self.0 {
            Bound::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "a TCP port".to_owned(), |a| a.to_string()),
            Bound::Unix(_, path) => path.display().to_string(),
        }
    }
}

/// Serves the page on `listener` until `shutdown`, then removes its Unix socket if it has one.
pub(crate) async fn serve(listener: Listener, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Some(Ok(permit)) = shutdown
            .run_until_cancelled(open.clone().acquire_owned())
            .await
        else {
            break;
        };
        let (m, stop) = (metrics.clone(), shutdown.clone());
        let accepted = match &*listener.0 {
            Bound::Tcp(l) => shutdown
                .run_until_cancelled(l.accept())
                .await
                .map(|r| r.map(|(io, _)| tokio::spawn(connection(io, m, stop, permit)))),
            Bound::Unix(l, _) => shutdown
                .run_until_cancelled(l.accept())
                .await
                .map(|r| r.map(|(io, _)| tokio::spawn(connection(io, m, stop, permit)))),
        };
        match accepted {
            None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "accepting a connection for the metrics page failed");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
    if let Bound::Unix(_, path) = &*listener.0
        && let Err(e) = std::fs::remove_file(path)
    {
        tracing::warn!(socket = %path.display(), error = %e, "could not remove the metrics socket");
    }
}

/// Answers one connection's requests until it closes, or hyperd stops.
async fn connection<IO>(
    io: IO,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    _open: tokio::sync::OwnedSemaphorePermit,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let page = answer(&metrics, &req);
        async move { Ok::<_, Infallible>(page) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), service);
    if let Some(Err(e)) = shutdown.run_until_cancelled(served).await {
        tracing::debug!(error = %e, "a metrics connection failed");
    }
}

fn answer<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, metrics.page()),
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "GET only\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "the metrics are at /metrics\n".to_owned(),
        ),
    };
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, CONTENT_TYPE)
        .body(Full::new(Bytes::from(body)))
        .expect("a response of a status, one header and a body builds")
}
