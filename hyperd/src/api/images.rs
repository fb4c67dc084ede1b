//! `hyperd.v1.ImageService`: decode the request, call the store, encode the answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hyperd_proto::CHUNK_SIZE;
use hyperd_proto::v1::{self, image_service_server::ImageService, load_request::Part};
use store::{Created, Piece, Store};
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::slots::Slots;
use super::status::{self, to_status};
use super::stream::{Answers, or_shutdown};
use super::{Detached, check, convert, files, listing, peer_uid, usage};
use crate::handoff::Tokens;
use crate::metrics::Metrics;

/// Loads that stream at once; the rest wait for a slot before hyperd reads their data. Loads
/// are bound by hashing on the host's cores, so more at once only adds buffers: 32 concurrent
/// loads of 64 MiB peaked at 253 MiB without slots. A waiting load holds no more than what its
/// HTTP/2 window let the client send ahead.
const LOAD_SLOTS: usize = 4;
/// Of the load slots, what one uid may hold: half, so that a uid whose loads stall leaves the
/// other half to everyone else.
const LOAD_SLOTS_PER_UID: usize = 2;

pub(crate) struct Images {
    pub(super) store: Store,
    /// Cancelled at shutdown: in-flight loads and saves end with UNAVAILABLE.
    pub(super) shutdown: CancellationToken,
    pub(super) load_slots: Slots,
    load_idle_timeout: Duration,
    /// Files handed over on the companion socket, for LoadFile and SaveFile.
    pub(super) tokens: Arc<Tokens>,
    pub(super) metrics: Arc<Metrics>,
    /// Where changes run apart from their calls.
    detached: Arc<Detached>,
}

impl Images {
    pub(crate) fn new(
        store: Store,
        shutdown: CancellationToken,
        load_idle_timeout: Duration,
        tokens: Arc<Tokens>,
        metrics: Arc<Metrics>,
        detached: Arc<Detached>,
    ) -> Self {
        let slots = metrics.slots("load");
        Images {
            store,
            shutdown,
            load_slots: Slots::new("load", LOAD_SLOTS, LOAD_SLOTS_PER_UID, slots),
            load_idle_timeout,
            tokens,
            metrics,
            detached,
        }
    }
}

/// The archive pieces of a Load stream after its options message, ending with an error when the
/// client sends anything else or nothing for `idle` (then `idled` is set).
fn archive_pieces(
    stream: Streaming<v1::LoadRequest>,
    idle: Duration,
    idled: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> impl Stream<Item = std::io::Result<Piece>> {
    tokio_stream::StreamExt::timeout(stream, idle).map(move |m| match m {
        Ok(Ok(v1::LoadRequest {
            part: Some(Part::Chunk(b)),
        })) => {
            metrics.load_bytes.inc_by(b.len() as u64);
            Ok(Piece::Bytes(b))
        }
        Ok(Ok(v1::LoadRequest {
            part: Some(Part::Elided(n)),
        })) => {
            metrics.load_elided_bytes.inc_by(n);
            Ok(Piece::Elided(n))
        }
        Ok(Ok(_)) => Err(std::io::Error::other(
            "only the first message of a Load stream may hold options",
        )),
        Ok(Err(status)) => Err(std::io::Error::other(format!(
            "client stream: {}",
            status.message()
        ))),
        Err(_) => {
            idled.store(true, Ordering::Relaxed);
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client sent nothing for {}s while holding a load slot",
                    idle.as_secs()
                ),
            ))
        }
    })
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list(
        &self,
        req: Request<v1::ListRequest>,
    ) -> Result<Response<v1::ListResponse>, Status> {
        let answer = listing::list(&self.store, req.into_inner());
        Ok(Response::new(or_shutdown(&self.shutdown, answer).await?))
    }

    type ListStreamStream = Answers<v1::ListResponse>;

    async fn list_stream(
        &self,
        req: Request<v1::ListRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let (store, shutdown) = (self.store.clone(), self.shutdown.clone());
        let pages = listing::list_stream(store, req.into_inner(), shutdown)?;
        Ok(Response::new(pages))
    }

    async fn load(
        &self,
        req: Request<Streaming<v1::LoadRequest>>,
    ) -> Result<Response<v1::LoadResponse>, Status> {
        let uid = peer_uid(&req);
        let mut stream = req.into_inner();
        let first = or_shutdown(&self.shutdown, async { stream.message().await }).await?;
        let options = match first {
            Some(v1::LoadRequest {
                part: Some(Part::Options(o)),
            }) => o,
            _ => {
                return Err(status::invalid_request(
                    "a Load stream starts with an options message",
                ));
            }
        };
        let map = convert::ref_map(options.refs)?;
        let _slot = or_shutdown(&self.shutdown, self.load_slots.take(uid)).await?;
        tracing::info!(uid, refs = map.len(), "load started");
        let idled = Arc::new(AtomicBool::new(false));
        let metrics = self.metrics.clone();
        let pieces = archive_pieces(stream, self.load_idle_timeout, idled.clone(), metrics);
        let loaded = or_shutdown(&self.shutdown, async {
            let loaded = self
                .store
                .images()
                .load_pieces(Box::pin(pieces), &map)
                .await;
            // The store sees a cut stream; the reason says why it was cut.
            loaded.map_err(|e| {
                if idled.load(Ordering::Relaxed) {
                    status::load_idle(e)
                } else {
                    to_status(e)
                }
            })
        })
        .await
        .inspect_err(|s| tracing::warn!(uid, error = %s.message(), "load refused"))?;
        crate::events::loaded(uid, &loaded);
        Ok(Response::new(convert::loaded(uid, loaded)))
    }

    type SaveStream = Answers<v1::SaveResponse>;

    async fn save(
        &self,
        req: Request<v1::SaveRequest>,
    ) -> Result<Response<Self::SaveStream>, Status> {
        let uid = peer_uid(&req);
        let (items, format) = convert::save(req.into_inner())?;
        let images: Vec<&str> = items.iter().map(|i| i.image.as_str()).collect();
        tracing::info!(uid, images = ?images, ?format, "save started");
        let job = self
            .store
            .images()
            .prepare_save(&items, format)
            .await
            .map_err(to_status)?;
        let digests = job.digests();
        // The export writes into one end of a pipe and the response streams from the other: a
        // client that hangs up closes the pipe, which ends the export.
        let (reader, writer) = tokio::io::duplex(CHUNK_SIZE);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let write = async { job.write(writer).await.map(drop).map_err(to_status) };
            let result = or_shutdown(&shutdown, write).await;
            if let Err(s) = &result {
                tracing::warn!(error = %s.message(), "save ended early");
            }
            result
                .is_ok()
                .then(|| crate::events::saved(uid, &items, &digests));
            let _ = done_tx.send(result);
        });
        let metrics = self.metrics.clone();
        let chunks = ReaderStream::with_capacity(reader, CHUNK_SIZE).map(move |r| {
            r.inspect(|chunk| {
                metrics.save_bytes.inc_by(chunk.len() as u64);
            })
            .map(|chunk| v1::SaveResponse { chunk })
            .map_err(|e| status::internal(e.to_string()))
        });
        // After the last chunk, the export's own result: an error reaches the client as the
        // stream's status instead of a silently short archive.
        let outcome = futures_util::stream::once(async move {
            match done_rx.await {
                Ok(Ok(())) => None,
                Ok(Err(s)) => Some(Err(s)),
                Err(_) => Some(Err(status::internal("save task ended without a result"))),
            }
        })
        .filter_map(std::future::ready);
        Ok(Response::new(Box::pin(chunks.chain(outcome))))
    }

    type LoadFileStream = Answers<v1::LoadFileResponse>;

    async fn load_file(
        &self,
        req: Request<v1::LoadFileRequest>,
    ) -> Result<Response<Self::LoadFileStream>, Status> {
        files::load(self, req).await
    }

    type SaveFileStream = Answers<v1::SaveFileResponse>;

    async fn save_file(
        &self,
        req: Request<v1::SaveFileRequest>,
    ) -> Result<Response<Self::SaveFileStream>, Status> {
        files::save(self, req).await
    }

    async fn remove(
        &self,
        req: Request<v1::RemoveRequest>,
    ) -> Result<Response<v1::RemoveResponse>, Status> {
        let uid = peer_uid(&req);
        let req = req.into_inner();
        let store = self.store.clone();
        let removed = self
            .detached
            .run(uid, async move {
                let digest = store.images().digest_of(&req.image).ok();
                let removed = store
                    .images()
                    .remove(&req.image, req.force)
                    .await
                    .map_err(to_status)?;
                tracing::info!(uid, image = %req.image, force = req.force, "removed");
                crate::events::removed(uid, digest.as_ref(), &removed);
                Ok(removed)
            })
            .await?;
        Ok(Response::new(convert::removed(removed)))
    }

    async fn disk_usage(
        &self,
        _req: Request<v1::DiskUsageRequest>,
    ) -> Result<Response<v1::DiskUsageResponse>, Status> {
        let answer = usage::disk_usage(self.store.clone());
        Ok(Response::new(or_shutdown(&self.shutdown, answer).await?))
    }

    async fn prune(
        &self,
        req: Request<v1::PruneRequest>,
    ) -> Result<Response<v1::PruneResponse>, Status> {
        let uid = peer_uid(&req);
        let (store, shutdown) = (self.store.clone(), self.shutdown.clone());
        let answer = async move { usage::prune(&store, uid, req.into_inner(), shutdown).await };
        Ok(Response::new(self.detached.run(uid, answer).await?))
    }

    async fn tag(&self, req: Request<v1::TagRequest>) -> Result<Response<v1::TagResponse>, Status> {
        let uid = peer_uid(&req);
        let req = req.into_inner();
        let target = req.target.parse().map_err(to_status)?;
        let store = self.store.clone();
        self.detached
            .run(uid, async move {
                store
                    .images()
                    .tag(&req.source, &target)
                    .await
                    .map_err(to_status)?;
                tracing::info!(uid, source = %req.source, target = %req.target, "tagged");
                let digest = store.images().digest_of(&req.target).ok();
                crate::events::tagged(uid, &req.source, &target, digest);
                Ok(())
            })
            .await?;
        Ok(Response::new(v1::TagResponse {}))
    }

    async fn inspect(
        &self,
        req: Request<v1::InspectRequest>,
    ) -> Result<Response<v1::InspectResponse>, Status> {
        let i = self
            .store
            .images()
            .inspect(&req.into_inner().image)
            .await
            .map_err(to_status)?;
        let mut summary = store::ImageSummary::new(&i.record, i.names.first().cloned());
        summary.usage = i.usage;
        Ok(Response::new(v1::InspectResponse {
            image: Some(convert::image(&summary)),
            names: i.names.iter().map(ToString::to_string).collect(),
            media_type: i.record.media_type,
            manifest: String::from_utf8_lossy(&i.manifest).into_owned(),
            config: String::from_utf8_lossy(&i.config).into_owned(),
            referrers: i.referrers.iter().map(convert::referrer).collect(),
        }))
    }

    async fn set_pinned(
        &self,
        req: Request<v1::SetPinnedRequest>,
    ) -> Result<Response<v1::SetPinnedResponse>, Status> {
        let uid = peer_uid(&req);
        let pinning = usage::set_pinned(self.store.clone(), uid, req.into_inner());
        self.detached.run(uid, pinning).await.map(Response::new)
    }

    async fn check(
        &self,
        _: Request<v1::CheckRequest>,
    ) -> Result<Response<v1::CheckResponse>, Status> {
        check::unary(&self.store).await.map(Response::new)
    }

    type CheckStreamStream = Answers<v1::CheckStreamResponse>;

    async fn check_stream(
        &self,
        _: Request<v1::CheckRequest>,
    ) -> Result<Response<Self::CheckStreamStream>, Status> {
        let answers = check::streamed(self.store.clone(), self.shutdown.clone());
        Ok(Response::new(answers))
    }

    async fn create_image(
        &self,
        req: Request<v1::CreateImageRequest>,
    ) -> Result<Response<v1::CreateImageResponse>, Status> {
        let uid = peer_uid(&req);
        let req = req.into_inner();
        let digest = convert::digest(&req.digest)?;
        let names = req
            .names
            .iter()
            .map(|n| n.parse())
            .collect::<Result<Vec<_>, _>>()
            .map_err(to_status)?;
        let media_type = convert::non_empty(req.media_type);
        let store = self.store.clone();
        let response = self.detached.run(uid, async move {
            let created = store
                .images()
                .create_image(&digest, media_type.as_deref(), &names)
                .await
                .map_err(to_status)?;
            crate::events::created(uid, None, &created);
            Ok(created_response(uid, created))
        });
        let response = response.await?;
        Ok(Response::new(response))
    }

    async fn referrers(
        &self,
        req: Request<v1::ReferrersRequest>,
    ) -> Result<Response<v1::ReferrersResponse>, Status> {
        let req = req.into_inner();
        let digest = convert::digest(&req.digest)?;
        let artifact_type = convert::non_empty(req.artifact_type);
        let index = self
            .store
            .images()
            .referrers_index(&digest, artifact_type.as_deref())
            .map_err(to_status)?;
        Ok(Response::new(v1::ReferrersResponse {
            index: index.into(),
        }))
    }

    async fn version(
        &self,
        _: Request<v1::VersionRequest>,
    ) -> Result<Response<v1::VersionResponse>, Status> {
        Ok(Response::new(v1::VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            api: "hyperd.v1".to_owned(),
        }))
    }
}

/// What CreateImage answers, logged.
fn created_response(uid: Option<u32>, created: Created) -> v1::CreateImageResponse {
    match created {
        Created::Image(image) => {
            let names: Vec<String> = image.names.iter().map(ToString::to_string).collect();
            tracing::info!(uid, digest = %image.digest, ?names, "image created");
            v1::CreateImageResponse {
                image: Some(convert::loaded_image(&image)),
                referrer: None,
            }
        }
        Created::Referrer(r) => {
            tracing::info!(uid, digest = %r.digest, subject = %r.subject, "referrer created");
            v1::CreateImageResponse {
                image: None,
                referrer: Some(convert::referrer(&r)),
            }
        }
    }
}
