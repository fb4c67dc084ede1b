//! LoadFile and SaveFile: a load or save through a file handed over on the companion socket,
//! answered with progress while it runs and its result at the end.

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use hyperd_proto::v1::{self, load_file_response, save_file_response};
use store::Progress;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::convert;
use super::images::{Images, peer_uid};
use crate::handoff;
use super::status::to_status;

/// A server-streamed answer: progress messages, then the result or an error status.
pub(crate) type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// How often progress is reported: often enough for a progress bar, rarely enough to cost
/// nothing.
const TICK: Duration = Duration::from_millis(200);

pub(super) async fn load(
    images: &Images,
    req: Request<v1::LoadFileRequest>,
) -> Result<Response<Answers<v1::LoadFileResponse>>, Status> {
    use load_file_response::Part;
    let uid = peer_uid(&req);
    let req = req.into_inner();
    let file = handoff::redeem(&images.tokens, &req.fd_token, uid)?;
    let map = convert::ref_map(req.options.unwrap_or_default().refs)?;
    let (store, slots, start) = (images.store.clone(), images.load_slots.clone(), req.offset);
    let progress = Progress::default();
    let done = progress.clone();
    let work = async move {
        if slots.available_permits() == 0 {
            tracing::info!(uid, "load waiting for a free slot");
        }
        let _slot = slots.acquire_owned().await.map_err(|_| shutting_down())?;
        tracing::info!(
            uid,
            refs = map.len(),
            start,
            "load from a handed-over file started"
        );
        let loaded = store
            .load_file(file, start, &map, &done)
            .await
            .map_err(to_status)
            .inspect_err(|s| tracing::warn!(uid, error = %s.message(), "load refused"))?;
        Ok(convert::loaded(uid, loaded))
    };
    Ok(Response::new(answer(
        work,
        progress,
        images.shutdown.clone(),
        |n| v1::LoadFileResponse {
            part: Some(Part::Progress(n)),
        },
        |r| v1::LoadFileResponse {
            part: Some(Part::Done(r)),
        },
    )))
}

pub(super) async fn save(
    images: &Images,
    req: Request<v1::SaveFileRequest>,
) -> Result<Response<Answers<v1::SaveFileResponse>>, Status> {
    use save_file_response::Part;
    let uid = peer_uid(&req);
    let req = req.into_inner();
    let file = handoff::redeem(&images.tokens, &req.fd_token, uid)?;
    let save = req
        .save
        .ok_or_else(|| Status::invalid_argument("a SaveFile request needs `save`"))?;
    let (items, format) = convert::save(save)?;
    let names: Vec<&str> = items.iter().map(|i| i.image.as_str()).collect();
    tracing::info!(uid, images = ?names, ?format, "save into a handed-over file started");
    let job = images
        .store
        .prepare_save(&items, format)
        .await
        .map_err(to_status)?;
    let progress = Progress::default();
    let written = progress.clone();
    let work = async move {
        job.write_file(file, &written)
            .await
            .map_err(to_status)
            .inspect_err(|s| tracing::warn!(error = %s.message(), "save ended early"))
    };
    Ok(Response::new(answer(
        work,
        progress,
        images.shutdown.clone(),
        |n| v1::SaveFileResponse {
            part: Some(Part::Progress(n)),
        },
        |n| v1::SaveFileResponse {
            part: Some(Part::Done(n)),
        },
    )))
}

/// Runs `work` on its own task, reporting `progress` as it changes. A client that hangs up
/// drops the work (a load's staging goes with it); shutdown ends it with UNAVAILABLE.
fn answer<T: Send + 'static, R: Send + 'static>(
    work: impl Future<Output = Result<R, Status>> + Send + 'static,
    progress: Progress,
    shutdown: CancellationToken,
    tick: fn(u64) -> T,
    done: fn(R) -> T,
) -> Answers<T> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        tokio::pin!(work);
        let mut ticks = tokio::time::interval(TICK);
        let mut reported = 0;
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                () = shutdown.cancelled() => break Err(shutting_down()),
                () = tx.closed() => return,
                _ = ticks.tick() => {
                    let n = progress.bytes();
                    if n == reported {
                        continue;
                    }
                    reported = n;
                    // A client slow to read misses a report, not the work's progress.
                    if let Err(TrySendError::Closed(_)) = tx.try_send(Ok(tick(n))) {
                        return;
                    }
                }
            }
        };
        let _ = tx.send(result.map(done)).await;
    });
    Box::pin(ReceiverStream::new(rx))
}

fn shutting_down() -> Status {
    Status::unavailable("hyperd is shutting down")
}
