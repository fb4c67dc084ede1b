//! `hyperd.v1.RegistryService`: Pull, Push and Login mapped onto `registry`, their progress
//! streamed back as it happens.

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use hyperd_proto::v1::{self, registry_service_server::RegistryService};
use store::Store;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::convert::non_empty;
use super::status::registry_status;
use super::stream::{Answers, answer};
use crate::metrics::Metrics;
use crate::registry::{self, BlobEvent, BlobState, Event, Events};

/// Events a transfer may make before it waits for the client to take them.
const EVENTS: usize = 64;

pub(crate) struct Registries {
    store: Store,
    config: Arc<registry::Config>,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
}

impl Registries {
    pub(crate) fn new(
        store: Store,
        config: registry::Config,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
    ) -> Self {
        Registries {
            store,
            config: Arc::new(config),
            shutdown,
            metrics,
        }
    }
}

fn credential(c: Option<v1::Credential>) -> registry::Credential {
    let c = c.unwrap_or_default();
    registry::Credential {
        username: c.username,
        password: c.password,
        token: c.token,
    }
}

#[tonic::async_trait]
impl RegistryService for Registries {
    type PullStream = Answers<v1::PullEvent>;
    type PushStream = Answers<v1::PushEvent>;

    async fn pull(
        &self,
        req: Request<v1::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        use v1::pull_event::Event as E;
        let uid = super::peer_uid(&req);
        let req = req.into_inner();
        tracing::info!(
            reference = req.reference,
            all_platforms = req.all_platforms,
            "pull started"
        );
        let opts = registry::PullOptions {
            reference: req.reference,
            credential: credential(req.credential),
            platform: non_empty(req.platform),
            all_platforms: req.all_platforms,
            referrers: match req.referrers {
                true => store::Referrers::Include,
                false => store::Referrers::Omit,
            },
        };
        let (store, config) = (self.store.clone(), self.config.clone());
        let metrics = self.metrics.clone();
        let (events, updates) = events();
        let work = async move {
            let p = registry::pull(&store, &config, opts, &events)
                .await
                .map_err(transfer_failed)?;
            metrics.pulled(&p);
            crate::events::pulled(uid, &p);
            Ok(v1::PullResult {
                name: p.name.map(|n| n.to_string()).unwrap_or_default(),
                digest: p.digest.to_string(),
                id: p.id.map(|id| id.to_string()).unwrap_or_default(),
                downloaded: p.downloaded,
                present: p.present,
                downloaded_bytes: p.downloaded_bytes,
                referrers: p.referrers,
            })
        };
        Ok(Response::new(answer(
            work,
            updates.map(pull_event),
            self.shutdown.clone(),
            |r| v1::PullEvent {
                event: Some(E::Done(r)),
            },
        )))
    }

    async fn push(
        &self,
        req: Request<v1::PushRequest>,
    ) -> Result<Response<Self::PushStream>, Status> {
        use v1::push_event::Event as E;
        let uid = super::peer_uid(&req);
        let req = req.into_inner();
        tracing::info!(name = req.name, "push started");
        let (store, config) = (self.store.clone(), self.config.clone());
        let credential = credential(req.credential);
        let (events, updates) = events();
        let work = async move {
            let p = registry::push(
                &store,
                &config,
                &req.name,
                &credential,
                match req.no_referrers {
                    true => store::Referrers::Omit,
                    false => store::Referrers::Include,
                },
                &events,
            )
            .await
            .map_err(transfer_failed)?;
            crate::events::pushed(uid, &p.name, &p.digest, p.uploaded);
            Ok(v1::PushResult {
                name: p.name.to_string(),
                digest: p.digest.to_string(),
                size: p.size,
                uploaded: p.uploaded,
                mounted: p.mounted,
                present: p.present,
                referrers: p.referrers,
            })
        };
        // A push resolves nothing: its events are its blobs'.
        let updates = updates.filter_map(|e| {
            std::future::ready(match e {
                Event::Blob(b) => Some(v1::PushEvent {
                    event: Some(E::Blob(blob(b))),
                }),
                Event::Resolved { .. } => None,
            })
        });
        Ok(Response::new(answer(
            work,
            updates,
            self.shutdown.clone(),
            |r| v1::PushEvent {
                event: Some(E::Done(r)),
            },
        )))
    }

    async fn login(
        &self,
        req: Request<v1::LoginRequest>,
    ) -> Result<Response<v1::LoginResponse>, Status> {
        let req = req.into_inner();
        let host = non_empty(req.registry).unwrap_or_else(|| "index.docker.io".to_owned());
        let endpoint = registry::login(&self.config, &host, &credential(req.credential))
            .await
            .map_err(registry_status)?;
        tracing::info!(registry = host, "login checked");
        Ok(Response::new(v1::LoginResponse { endpoint }))
    }
}

fn pull_event(e: Event) -> v1::PullEvent {
    use v1::pull_event::Event as E;
    let event = match e {
        Event::Resolved {
            digest,
            media_type,
            blobs,
        } => E::Resolved(v1::Resolved {
            digest: digest.to_string(),
            media_type,
            blobs: blobs
                .into_iter()
                .map(|b| v1::BlobRef {
                    digest: b.digest.to_string(),
                    size: b.size,
                })
                .collect(),
        }),
        Event::Blob(b) => E::Blob(blob(b)),
    };
    v1::PullEvent { event: Some(event) }
}

fn blob(e: BlobEvent) -> v1::BlobProgress {
    let BlobEvent {
        digest,
        state,
        done,
        total,
        from,
    } = e;
    let state = match state {
        BlobState::Waiting => v1::BlobState::Waiting,
        BlobState::Moving => v1::BlobState::Moving,
        BlobState::Done => v1::BlobState::Done,
        BlobState::Present => v1::BlobState::Present,
        BlobState::Mounted => v1::BlobState::Mounted,
    };
    v1::BlobProgress {
        digest: digest.to_string(),
        state: state.into(),
        done,
        total,
        from: from.unwrap_or_default(),
    }
}

/// The events a transfer makes, and the stream the client's answer takes them from.
fn events() -> (Events, impl Stream<Item = Event> + Send + 'static) {
    let (tx, rx) = mpsc::channel(EVENTS);
    (Events::new(tx), ReceiverStream::new(rx))
}

/// A transfer's failure as its status, logged.
fn transfer_failed(e: registry::Error) -> Status {
    let s = registry_status(e);
    tracing::warn!(error = %s.message(), "transfer failed");
    s
}
