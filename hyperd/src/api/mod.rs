//! The gRPC adapter layer: each service decodes a request, calls the store or the registry logic
//! (`crate::registry`, which knows no gRPC), and encodes the answer, or a status built in
//! `status`, the one place failures become codes, messages and reasons. `stream` drives the
//! answers that report a job's progress (LoadFile, SaveFile, Pull, Push, CheckStream) and holds
//! the helpers that end every call in flight at shutdown (Save streams its export's pipe and
//! Read a blob, each with those helpers); `slots` bounds the loads and writes that stream at
//! once; `listing` answers List and ListStream a page at a time.

mod check;
mod content;
mod convert;
mod detached;
mod events;
mod files;
mod images;
mod listing;
mod registry;
mod slots;
mod status;
mod stream;
mod usage;

pub(crate) use detached::Detached;

use std::sync::Arc;

use hyperd_proto::FILE_DESCRIPTOR_SET;
use hyperd_proto::v1::content_service_server::ContentServiceServer;
use hyperd_proto::v1::event_service_server::EventServiceServer;
use hyperd_proto::v1::image_service_server::ImageServiceServer;
use hyperd_proto::v1::registry_service_server::RegistryServiceServer;
use store::Store;
use tokio_util::sync::CancellationToken;
use tonic::Request;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;

use crate::Settings;
use crate::handoff::Tokens;
use crate::metrics::Metrics;

type Images = ImageServiceServer<images::Images>;
type Content = ContentServiceServer<content::Content>;
type Registries = RegistryServiceServer<registry::Registries>;
type Events = EventServiceServer<events::Events>;

/// Every service hyperd serves over `store`, and the health reporter that tells clients the API
/// services are serving. Calls in flight end with UNAVAILABLE once `shutdown` is cancelled.
/// Health and reflection (v1, and v1alpha, which Python's grpcio-reflection still asks) are
/// served beside them.
pub(crate) async fn services(
    store: Store,
    settings: Settings,
    tokens: Arc<Tokens>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    detached: Arc<Detached>,
) -> anyhow::Result<(Routes, HealthReporter)> {
    let idle = settings.load_idle_timeout;
    let write_slots = metrics.slots("write");
    let content = content::Content::new(store.clone(), shutdown.clone(), idle, write_slots);
    let registries = registry::Registries::new(
        store.clone(),
        settings.registry,
        shutdown.clone(),
        metrics.clone(),
    );
    let events = events::Events::new(shutdown.clone());
    let images = images::Images::new(store, shutdown, idle, tokens, metrics, detached);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<Images>().await;
    health.set_serving::<Content>().await;
    health.set_serving::<Registries>().await;
    health.set_serving::<Events>().await;
    let routes = Routes::new(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(ImageServiceServer::new(images))
        .add_service(
            ContentServiceServer::new(content).max_decoding_message_size(content::MAX_MESSAGE),
        )
        .add_service(RegistryServiceServer::new(registries))
        .add_service(EventServiceServer::new(events));
    Ok((routes, health))
}

/// Tells health clients that the API services stopped serving; the health service itself
/// answers to the end.
pub(crate) async fn not_serving(health: &HealthReporter) {
    health.set_not_serving::<Images>().await;
    health.set_not_serving::<Content>().await;
    health.set_not_serving::<Registries>().await;
    health.set_not_serving::<Events>().await;
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// The peer's uid, for the log line of each call that changes the store.
fn peer_uid<T>(req: &Request<T>) -> Option<u32> {
    req.extensions()
        .get::<tonic::transport::server::UdsConnectInfo>()
        .and_then(|i| i.peer_cred)
        .map(|c| c.uid())
}
