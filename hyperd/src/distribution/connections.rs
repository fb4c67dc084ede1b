//! The endpoint's connections: accepted under the total and per-client caps, TLS when
//! configured, then HTTP/1.1 by hyper until the client leaves, stalls or hyperd stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{handler, peers, stall};

/// What hyper buffers of a connection, each way: a request's headers at most, and the answer's
/// bytes queued for the socket (a blob is read 256 KiB at a time, `body.rs`).
pub(super) const MAX_BUFFER: usize = 256 << 10;

/// What each connection needs.
#[derive(Clone)]
pub(super) struct Serving {
    pub(super) endpoint: handler::Endpoint,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) stall: Duration,
    pub(super) cancel: CancellationToken,
}

pub(super) async fn accept_loop(
    socket: TcpListener,
    serving: Serving,
    cap: Arc<Semaphore>,
    peers: peers::Peers,
) {
    let (mut refused, mut refused_peer) = (0u64, 0u64);
    loop {
        let accepted = tokio::select! {
            _ = serving.cancel.cancelled() => return,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or memory, accept fails again at once: pause, don't spin.
                tracing::warn!(error = %e, "registry endpoint: accept failed");
                tokio::time::sleep(crate::connections::BACKOFF).await;
                continue;
            }
        };
        let Some(held) = peers.admit(peer.ip()) else {
            refused_peer += 1;
            if refused_peer % 1024 == 1 {
                let refused = refused_peer;
                tracing::warn!(refused, %peer, "registry endpoint: a client's cap reached, closing");
            }
            continue;
        };
        let Ok(permit) = cap.clone().try_acquire_owned() else {
            refused += 1;
            // Logged once per burst: the first refusal, then every 1,024th.
            if refused % 1024 == 1 {
                tracing::warn!(
                    refused,
                    "registry endpoint: connection cap reached, closing"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, serving.clone(), (permit, held)));
    }
}

/// One connection, TLS first when configured, holding its places under the caps until it ends.
async fn connection(
    stream: tokio::net::TcpStream,
    serving: Serving,
    _held: (OwnedSemaphorePermit, peers::Held),
) {
    // Under TLS too: what waits is the socket.
    let (stream, waiting) = stall::Watched::new(stream);
    let stalled = stall::stalled(waiting, serving.stall);
    match serving.tls.clone() {
        None => http(stream, serving, stalled).await,
        Some(tls) => match tokio::time::timeout(serving.stall, tls.accept(stream)).await {
            Ok(Ok(stream)) => http(stream, serving, stalled).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "registry endpoint: TLS handshake failed"),
            Err(_) => tracing::debug!("registry endpoint: TLS handshake stalled"),
        },
    }
}

async fn http<I>(io: I, serving: Serving, stalled: impl Future<Output = ()>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let endpoint = serving.endpoint.clone();
    let service = hyper::service::service_fn(move |request| {
        let endpoint = endpoint.clone();
        async move { Ok::<_, Infallible>(handler::handle(&endpoint, request).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(serving.stall)
        .max_buf_size(MAX_BUFFER)
        .serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut stalled = std::pin::pin!(stalled);
    tokio::select! {
        result = conn.as_mut() => log_end(result),
        _ = stalled.as_mut() => stopped_reading(),
        _ = serving.cancel.cancelled() => {
            // The answer in flight is finished, unless its client stops reading it.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn => log_end(result),
                _ = stalled => stopped_reading(),
            }
        }
    }
}

fn stopped_reading() {
    tracing::debug!("registry endpoint: a client stopped reading; closed");
}

fn log_end(result: hyper::Result<()>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "registry endpoint: connection ended");
    }
}
