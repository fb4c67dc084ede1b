//! Check and CheckStream: the store re-hashes every blob (on every core) and checks every
//! reference; CheckStream reports how far it has got while it runs, then the same result.

use futures_util::StreamExt;
use hyperd_proto::v1::{self, check_stream_response::Part};
use store::{CheckCounted, CheckProgress, CheckReport, Store};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::status::to_status;
use super::stream::{Answers, answer, readings};

pub(super) async fn unary(store: &Store) -> Result<v1::CheckResponse, Status> {
    store.check().await.map(response).map_err(to_status)
}

/// Progress every tick that it changed and, once the check is done, its final counts (so a
/// client always gets at least one), then the result. A client that hangs up drops the check,
/// which stops its threads.
pub(super) fn streamed(
    store: Store,
    shutdown: CancellationToken,
) -> Answers<v1::CheckStreamResponse> {
    let progress = CheckProgress::default();
    let (finished, finished_rx) = oneshot::channel::<()>();
    let counting = progress.clone();
    let work = async move {
        let report = store.check_counted(&counting).await;
        let _ = finished.send(());
        report.map(response).map_err(to_status)
    };
    let last = progress.clone();
    let updates = readings(move || progress.counted())
        .take_until(finished_rx)
        .chain(futures_util::stream::once(async move { last.counted() }))
        .map(|c| v1::CheckStreamResponse {
            part: Some(Part::Progress(counted(c))),
        });
    answer(work, updates, shutdown, |r| v1::CheckStreamResponse {
        part: Some(Part::Done(r)),
    })
}

fn response(report: CheckReport) -> v1::CheckResponse {
    v1::CheckResponse {
        blobs_checked: report.blobs_checked as u64,
        unreferenced: report.unreferenced as u64,
        problems: report.problems,
    }
}

fn counted(c: CheckCounted) -> v1::CheckProgress {
    v1::CheckProgress {
        blobs_total: c.blobs_total,
        blobs_done: c.blobs_done,
        bytes_done: c.bytes_done,
    }
}
