//! hyperd: the image store served as gRPC on a Unix socket.

mod api;
mod authority;
mod connections;
pub mod distribution;
mod events;
mod gc;
mod handoff;
mod janitor;
mod lastused;
mod metrics;
mod registry;
mod socket;

use std::future::Future;
use std::sync::Arc;

use store::Store;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

pub use connections::Limits as ConnectionLimits;
pub use metrics::Listener as MetricsListener;
pub use registry::Config as RegistryConfig;
pub use socket::{activated_listeners, bind, default_root, group_id};

/// How far ahead of hyperd a client may send on one stream: two 1 MiB chunks, which keeps a load
/// as fast as the 8 MiB window hyperctl uses for saves (loads are bound by hashing, not by the
/// window) while every load waiting for a slot holds at most this much.
const LOAD_WINDOW: u32 = 2 << 20;

/// Streams a client may have open on one connection. The connection window below is this many
/// stream windows, so that loads waiting for a slot can never use up the window that the loads
/// holding slots on the same connection need.
const MAX_STREAMS: u32 = 16;
const CONNECTION_WINDOW: u32 = MAX_STREAMS * LOAD_WINDOW;

/// What an operator may tune.
#[derive(Clone, Debug)]
pub struct Settings {
    /// A load or content Write stream that holds a slot and receives nothing for this long is
    /// ended (a content write stays open to resume).
    pub load_idle_timeout: std::time::Duration,
    /// A content write that receives nothing for this long is dropped.
    pub content_write_expiry: std::time::Duration,
    /// How registries are reached.
    pub registry: RegistryConfig,
    /// How many connections, and how long a client may stall.
    pub connections: ConnectionLimits,
    /// Where the metrics page is served, if anywhere (`--metrics-listen`).
    pub metrics: Option<MetricsListener>,
    /// Where the event log is kept: `<root>/events`.
    pub events_dir: std::path::PathBuf,
    /// The daemon's GC policy (`--gc-*`); off when no rule is set.
    pub gc: store::GcPolicy,
}

/// Serves `store` on `listener`, and takes handed-over files on `fd_listener` (the companion
/// socket) when given one, and as an OCI registry on `registry`'s sockets, until `shutdown` completes, with a janitor that drops expired leases
/// and content writes. Then it stops accepting, ends in-flight loads, saves, reads and writes
/// with UNAVAILABLE (a load's staged blobs are dropped), and returns once every connection has
/// closed.
pub async fn run(
    store: Store,
    listener: UnixListener,
    fd_listener: Option<UnixListener>,
    settings: Settings,
    registry: distribution::Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    // rustls needs one process-wide crypto provider; reqwest is built without its default one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let limits = settings.connections;
    connections::raise_descriptor_limit(&limits);
    let cancel = CancellationToken::new();
    let tokens = Arc::new(handoff::Tokens::default());
    // The services first: a start-up error then leaves no janitor or hand-over server running.
    let expiry = settings.content_write_expiry;
    let registries = settings.registry.clone();
    let policy = settings.gc.clone();
    let metrics = Arc::new(metrics::Metrics::new(store.clone()));
    let _flush = events::start(&settings.events_dir, &store)?.flush_on_drop();
    let page = settings
        .metrics
        .clone()
        .map(|l| tokio::spawn(metrics::serve(l, metrics.clone(), cancel.clone())));
    let detached = Arc::new(api::Detached::default());
    let (routes, health) = api::services(
        store.clone(),
        settings,
        tokens.clone(),
        cancel.clone(),
        metrics.clone(),
        detached.clone(),
    )
    .await?;
    distribution::serve(registry, store.clone(), registries, cancel.clone());
    let flusher = tokio::spawn(lastused::run(store.clone(), cancel.clone()));
    let gc = tokio::spawn(gc::run(
        store.clone(),
        policy,
        metrics.clone(),
        cancel.clone(),
    ));
    let janitor = tokio::spawn(janitor::run(store, expiry, cancel.clone()));
    if let Some(l) = fd_listener {
        tokio::spawn(handoff::serve(l, tokens, cancel.clone()));
    }
    let stop = async move {
        shutdown.await;
        tracing::info!("shutting down");
        api::not_serving(&health).await;
        cancel.cancel();
    };
    tonic::transport::Server::builder()
        .initial_stream_window_size(LOAD_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_frame_size(authority::MAX_IN_FRAME as u32)
        .layer(metrics::Layer::new(&metrics))
        .add_routes(routes)
        .serve_with_incoming_shutdown(connections::incoming(listener, limits, metrics), stop)
        .await?;
    // Changes whose callers hung up finish, and tell their events, before the log is flushed.
    detached.finish().await;
    janitor.await?;
    gc.await?;
    lastused::flush(flusher.await?).await;
    if let Some(page) = page {
        page.await?;
    }
    Ok(())
}
