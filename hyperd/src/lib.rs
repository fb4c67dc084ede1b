//! hyperd: the image store served as gRPC on a Unix socket.

mod api;
mod authority;
mod handoff;
mod janitor;
mod registry;
mod socket;

use std::future::Future;
use std::sync::Arc;

use futures_util::TryStreamExt;
use hyperd_proto::v1::content_service_server::ContentServiceServer;
use hyperd_proto::v1::image_service_server::ImageServiceServer;
use hyperd_proto::v1::registry_service_server::RegistryServiceServer;
use hyperd_proto::{FILE_DESCRIPTOR_SET, MAX_FRAME};
use store::Store;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;

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
}

/// Serves `store` on `listener`, and takes handed-over files on `fd_listener` (the companion
/// socket) when given one, until `shutdown` completes, with a janitor that drops expired leases
/// and content writes. Then it stops accepting, ends in-flight loads, saves, reads and writes
/// with UNAVAILABLE (a load's staged blobs are dropped), and returns once every connection has
/// closed.
pub async fn run(
    store: Store,
    listener: UnixListener,
    fd_listener: Option<UnixListener>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    // rustls needs one process-wide crypto provider; reqwest is built without its default one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cancel = CancellationToken::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ImageServiceServer<api::images::Images>>()
        .await;
    health
        .set_serving::<ContentServiceServer<api::content::Content>>()
        .await;
    health
        .set_serving::<RegistryServiceServer<api::registry::Registries>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // grpcio-reflection (Python) still asks the v1alpha service only.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let content = ContentServiceServer::new(api::content::Content::new(
        store.clone(),
        cancel.clone(),
        settings.load_idle_timeout,
    ))
    .max_decoding_message_size(api::content::MAX_MESSAGE);
    let janitor = tokio::spawn(janitor::run(
        store.clone(),
        settings.content_write_expiry,
        cancel.clone(),
    ));
    let tokens = Arc::new(handoff::Tokens::default());
    if let Some(l) = fd_listener {
        tokio::spawn(handoff::serve(l, tokens.clone(), cancel.clone()));
    }
    let registries = RegistryServiceServer::new(api::registry::Registries::new(
        store.clone(),
        settings.registry,
        cancel.clone(),
    ));
    let images = ImageServiceServer::new(api::images::Images::new(
        store,
        cancel.clone(),
        settings.load_idle_timeout,
        tokens,
    ));
    let stop = async move {
        shutdown.await;
        tracing::info!("shutting down");
        health
            .set_not_serving::<ImageServiceServer<api::images::Images>>()
            .await;
        health
            .set_not_serving::<ContentServiceServer<api::content::Content>>()
            .await;
        health
            .set_not_serving::<RegistryServiceServer<api::registry::Registries>>()
            .await;
        cancel.cancel();
    };
    tonic::transport::Server::builder()
        .initial_stream_window_size(LOAD_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_frame_size(MAX_FRAME)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(images)
        .add_service(content)
        .add_service(registries)
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(listener).map_ok(authority::AnyAuthority::new),
            stop,
        )
        .await?;
    janitor.await?;
    Ok(())
}
