//! `hyperd.v1.EventService`: a subscription (`crate::events`) streamed to the client until
//! `until` passes, the client hangs up, it falls too far behind, or hyperd stops.

use hyperd_proto::v1::{self, event_service_server::EventService};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::status;
use super::stream::Answers;
use crate::events::{self, Filter, Next, Record, Start, Subscription};

/// Events queued for a client that reads slowly, beside the live channel's own queue.
const QUEUED: usize = 16;

pub(crate) struct Events {
    shutdown: CancellationToken,
}

impl Events {
    pub(crate) fn new(shutdown: CancellationToken) -> Self {
        Events { shutdown }
    }
}

#[tonic::async_trait]
impl EventService for Events {
    type SubscribeStream = Answers<v1::Event>;

    async fn subscribe(
        &self,
        req: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let viewer = super::peer_uid(&req);
        let req = req.into_inner();
        let filter =
            Filter::new(&req.types, req.images, viewer).map_err(status::invalid_request)?;
        let (since, until) = (req.since_unix_nano, req.until_unix_nano);
        if let (Some(s), Some(u)) = (since, until)
            && u < s
        {
            return Err(status::invalid_request("`until` is before `since`"));
        }
        let hub = events::hub().ok_or_else(|| status::internal("the event hub is not running"))?;
        let start = Start {
            since,
            after: req.after_sequence,
        };
        let mut subscription = Subscription::open(hub, filter, start, until)
            .await
            .map_err(|e| status::internal(format!("reading the event log: {e}")))?;
        let (tx, rx) = mpsc::channel(QUEUED);
        let shutdown = self.shutdown.clone();
        // Told if there is room: a client that reads no more must not hold hyperd's stop up.
        let stopped = |tx: &mpsc::Sender<_>| drop(tx.try_send(Err(status::shutting_down())));
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = subscription.next() => next,
                    () = shutdown.cancelled() => return stopped(&tx),
                    () = tx.closed() => return,
                };
                let answer = match next {
                    Next::Event(r) => Ok(event(&r, subscription.shows_uid(&r))),
                    Next::Lost(n) => Err(status::events_lost(n)),
                    Next::End => return,
                };
                let last = answer.is_err();
                let sent = tokio::select! {
                    sent = tx.send(answer) => sent.is_ok(),
                    () = shutdown.cancelled() => return stopped(&tx),
                };
                if !sent || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// `r` as sent, with its `uid` only when the subscriber may see it.
fn event(r: &Record, shows_uid: bool) -> v1::Event {
    v1::Event {
        time_unix_nano: r.time_unix_nano,
        sequence: r.sequence,
        r#type: r.kind.as_str().to_owned(),
        digest: r.digest.clone(),
        name: r.name.clone(),
        id: r.id.clone(),
        uid: r.uid.filter(|_| shows_uid),
        attributes: r.attributes.clone().into_iter().collect(),
    }
}
