//! LoadFile and SaveFile: a load or save through a file handed over on the companion socket,
//! answered with progress while it runs and its result at the end.
//!
//! The job runs on a task of its own, which the call only asks to stop: a load or save copies on
//! blocking threads that dropping a future cannot stop, so a client that hangs up (or shutdown)
//! cancels the job's token, and the job ends once its copies have (`store`'s `blob/threads.rs`).
//! A load's slot goes with the job, so it is free only when the copying is over.

use std::time::Instant;

use futures_util::StreamExt;
use hyperd_proto::v1::{self, load_file_response, save_file_response};
use store::Progress;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::images::Images;
use super::status::{self, to_status};
use super::stream::{Answers, answer, ticks};
use super::{convert, peer_uid};
use crate::handoff::{Redeemed, Refused, Tokens};

pub(super) async fn load(
    images: &Images,
    req: Request<v1::LoadFileRequest>,
) -> Result<Response<Answers<v1::LoadFileResponse>>, Status> {
    use load_file_response::Part;
    let uid = peer_uid(&req);
    let req = req.into_inner();
    let Redeemed { file, held } = redeem(&images.tokens, &req.fd_token, uid)?;
    let map = convert::ref_map(req.options.unwrap_or_default().refs)?;
    let (store, slots, start) = (images.store.clone(), images.load_slots.clone(), req.offset);
    let progress = Progress::default();
    let (done, read) = (progress.clone(), progress.clone());
    // A load that succeeds has passed over the whole archive, its end-of-archive blocks too.
    let length = file.metadata().map_or(0, |m| m.len()).saturating_sub(start);
    let metrics = images.metrics.clone();
    let stop = images.shutdown.child_token();
    let work = on_own_task(stop.clone(), async move {
        // The file counts against the uid's quota until the work ends and closes it.
        let _held = held;
        let Some(slot) = stop.run_until_cancelled(slots.take(uid)).await else {
            return Err(status::shutting_down());
        };
        let _slot = slot?;
        tracing::info!(
            uid,
            refs = map.len(),
            start,
            "load from a handed-over file started"
        );
        let loaded = store
            .images()
            .load_file(file, start, &map, &done, stop)
            .await;
        metrics
            .load_bytes
            .inc_by(loaded.as_ref().map_or(read.bytes(), |_| length));
        // Logged while the slot is still held: a load's copies have stopped by now.
        tracing::info!(
            uid,
            ok = loaded.is_ok(),
            "load from a handed-over file ended"
        );
        let loaded = loaded
            .map_err(to_status)
            .inspect_err(|s| tracing::warn!(uid, error = %s.message(), "load refused"))?;
        crate::events::loaded(uid, &loaded);
        Ok(convert::loaded(uid, loaded))
    });
    let updates = ticks(progress).map(|n| v1::LoadFileResponse {
        part: Some(Part::Progress(n)),
    });
    Ok(Response::new(answer(
        work,
        updates,
        images.shutdown.clone(),
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
    let Redeemed { file, held } = redeem(&images.tokens, &req.fd_token, uid)?;
    let save = req
        .save
        .ok_or_else(|| status::invalid_request("a SaveFile request needs `save`"))?;
    let (items, format) = convert::save(save)?;
    let names: Vec<&str> = items.iter().map(|i| i.image.as_str()).collect();
    tracing::info!(uid, images = ?names, ?format, "save into a handed-over file started");
    let job = images
        .store
        .images()
        .prepare_save(&items, format)
        .await
        .map_err(to_status)?;
    let digests = job.digests();
    let progress = Progress::default();
    let written = progress.clone();
    let metrics = images.metrics.clone();
    let stop = images.shutdown.child_token();
    let work = on_own_task(stop.clone(), async move {
        let _held = held;
        let saved = job.write_file(file, &written, stop).await;
        metrics.save_bytes.inc_by(written.bytes());
        saved
            .map_err(to_status)
            .inspect(|_| crate::events::saved(uid, &items, &digests))
            .inspect_err(|s| tracing::warn!(error = %s.message(), "save ended early"))
    });
    let updates = ticks(progress).map(|n| v1::SaveFileResponse {
        part: Some(Part::Progress(n)),
    });
    Ok(Response::new(answer(
        work,
        updates,
        images.shutdown.clone(),
        |n| v1::SaveFileResponse {
            part: Some(Part::Done(n)),
        },
    )))
}

/// Runs `job` on a task of its own, to its end: dropping the returned future (the client hung
/// up) cancels `stop` instead, which the job heeds, so what the job holds is let go only once
/// its work has stopped.
async fn on_own_task<R: Send + 'static>(
    stop: CancellationToken,
    job: impl Future<Output = Result<R, Status>> + Send + 'static,
) -> Result<R, Status> {
    let _stop_when_dropped = stop.drop_guard();
    tokio::spawn(job).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a load or save task failed");
        Err(status::internal(
            "a load or save task failed; see hyperd's log",
        ))
    })
}

/// The file behind `token` for the caller with `uid`.
fn redeem(tokens: &Tokens, token: &str, uid: Option<u32>) -> Result<Redeemed, Status> {
    let uid = uid.ok_or_else(status::no_peer_credentials)?;
    tokens
        .take(token, uid, Instant::now())
        .map_err(|r| match r {
            Refused::Unknown => status::fd_token_unknown(),
            Refused::OtherUser => status::fd_token_other_user(),
        })
}
