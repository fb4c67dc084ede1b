//! `hyperd.v1.ContentService`: blobs by digest, writes in pieces, leases.

use std::time::Duration;

use futures_util::StreamExt;
use hyperd_proto::CHUNK_SIZE;
use hyperd_proto::v1::{self, content_service_server::ContentService};
use store::limits::MAX_INFO_DIGESTS;
use store::{Began, BlobRead, Store, WriteOutcome, WriteStart, Written};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::slots::{Slot, Slots};
use super::status::{self, to_status};
use super::stream::{Answers, or_shutdown, until_shutdown};
use super::{convert, peer_uid};

/// Largest message hyperd decodes on ContentService: two 1 MiB chunks, and room for a first
/// Write message's fields or an Info of 10,000 digests (~750 KiB). A larger one is refused
/// (OUT_OF_RANGE) rather than buffered.
pub(crate) const MAX_MESSAGE: usize = 2 * CHUNK_SIZE;

/// Write streams that hyperd reads at once; the rest wait for a slot before hyperd reads their
/// data. A stream holding one holds at most a decoded message and its 2 MiB HTTP/2 window,
/// so writes hold at most 16 × 4 MiB, whatever the number of clients; a waiting stream, its
/// window alone. Writes are bound by hashing and disk, like loads, so more would only queue.
const WRITE_SLOTS: usize = 16;
/// Of the write slots, what one uid may hold: half, so that a uid whose streams trickle leaves
/// the other half to everyone else.
const WRITE_SLOTS_PER_UID: usize = 8;

/// The uid refs and leases of a caller without peer credentials belong to (`(uid_t) -1`, never
/// a real user's): it shares them with no one who has credentials.
const NOBODY: u32 = u32::MAX;

pub(crate) struct Content {
    store: Store,
    /// Cancelled at shutdown: reads and writes in flight end with UNAVAILABLE.
    shutdown: CancellationToken,
    write_slots: Slots,
    /// A Write stream holding a slot that receives nothing for this long is ended; its write
    /// stays open to resume.
    idle_timeout: Duration,
}

impl Content {
    pub(crate) fn new(
        store: Store,
        shutdown: CancellationToken,
        idle_timeout: Duration,
        slots: crate::metrics::SlotGauges,
    ) -> Self {
        Content {
            store,
            shutdown,
            write_slots: Slots::new("write", WRITE_SLOTS, WRITE_SLOTS_PER_UID, slots),
            idle_timeout,
        }
    }
}

/// Whose leases a caller may see and delete: root every lease (`None`), another uid its own.
fn leases_of(uid: Option<u32>) -> Option<u32> {
    match uid {
        Some(0) => None,
        uid => Some(uid.unwrap_or(NOBODY)),
    }
}

/// The next message of a Write stream, or an error once the client sent nothing for `idle`.
async fn next_message(
    stream: &mut Streaming<v1::WriteRequest>,
    idle: Duration,
) -> Result<Option<v1::WriteRequest>, Status> {
    tokio::time::timeout(idle, stream.message())
        .await
        .map_err(|_| status::write_idle(idle.as_secs()))?
}

/// Reads one Write stream to its end, holding its write slot. Runs as a task of its own, so
/// that when the client goes away mid-stream the write is handed back whole, for a later stream
/// to resume.
async fn write_stream(
    store: Store,
    mut stream: Streaming<v1::WriteRequest>,
    shutdown: CancellationToken,
    idle: Duration,
    owner: u32,
    _slot: Slot,
) -> Result<Written, Status> {
    let first = or_shutdown(&shutdown, next_message(&mut stream, idle))
        .await?
        .ok_or_else(|| {
            status::invalid_request("a Write stream starts with a message naming the write")
        })?;
    let start = WriteStart {
        reference: first.r#ref,
        expected: convert::digest(&first.expected)?,
        total: first.total,
        lease: convert::non_empty(first.lease),
        offset: first.offset,
    };
    let mut write = match store
        .content()
        .begin_write_as(owner, start)
        .await
        .map_err(to_status)?
    {
        Began::Done(written) => return Ok(written),
        Began::Open(write) => write,
    };
    let mut data = first.data;
    loop {
        if !data.is_empty()
            && let Some(written) = write.write(data).await.map_err(to_status)?
        {
            return Ok(written);
        }
        data = tokio::select! {
            m = next_message(&mut stream, idle) => match m? {
                Some(m) => m.data,
                None => return Ok(write.pending()),
            },
            () = write.aborted() => {
                return Err(status::write_aborted());
            }
            () = shutdown.cancelled() => return Err(status::shutting_down()),
        };
    }
}

#[tonic::async_trait]
impl ContentService for Content {
    async fn info(
        &self,
        req: Request<v1::InfoRequest>,
    ) -> Result<Response<v1::InfoResponse>, Status> {
        let digests = req.into_inner().digests;
        if digests.len() > MAX_INFO_DIGESTS {
            return Err(status::invalid_request(format!(
                "{} digests asked about; at most {MAX_INFO_DIGESTS} per request",
                digests.len()
            )));
        }
        let parsed = digests
            .iter()
            .map(|d| convert::digest(d))
            .collect::<Result<Vec<_>, _>>()?;
        let sizes = self
            .store
            .content()
            .blob_sizes(parsed)
            .await
            .map_err(to_status)?;
        let blobs = digests
            .into_iter()
            .zip(sizes)
            .map(|(digest, size)| v1::BlobInfo {
                digest,
                stored: size.is_some(),
                size: size.unwrap_or(0),
            })
            .collect();
        Ok(Response::new(v1::InfoResponse { blobs }))
    }

    type ReadStream = Answers<v1::ReadResponse>;

    async fn read(
        &self,
        req: Request<v1::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let req = req.into_inner();
        let digest = convert::digest(&req.digest)?;
        let BlobRead { file, len } = self
            .store
            .content()
            .read_blob(&digest, req.offset, req.length)
            .await
            .map_err(to_status)?;
        let mut at = req.offset;
        let chunks = ReaderStream::with_capacity(file.take(len), CHUNK_SIZE).map(move |r| {
            let data = r.map_err(|e| status::internal(format!("reading {digest}: {e}")))?;
            let offset = at;
            at += data.len() as u64;
            Ok(v1::ReadResponse { offset, data })
        });
        Ok(Response::new(until_shutdown(chunks, self.shutdown.clone())))
    }

    async fn write(
        &self,
        req: Request<Streaming<v1::WriteRequest>>,
    ) -> Result<Response<v1::WriteResponse>, Status> {
        let uid = peer_uid(&req);
        let slot = or_shutdown(&self.shutdown, self.write_slots.take(uid)).await?;
        let task = write_stream(
            self.store.clone(),
            req.into_inner(),
            self.shutdown.clone(),
            self.idle_timeout,
            uid.unwrap_or(NOBODY),
            slot,
        );
        let written = tokio::spawn(task)
            .await
            .map_err(|e| status::internal(format!("write task failed: {e}")))?
            .inspect_err(|s| tracing::warn!(uid, error = %s.message(), "write refused"))?;
        if written.outcome == WriteOutcome::Committed {
            tracing::info!(uid, digest = %written.digest, size = written.offset, "blob written");
        }
        Ok(Response::new(v1::WriteResponse {
            digest: written.digest.to_string(),
            offset: written.offset,
            committed: written.outcome != WriteOutcome::Pending,
            already_stored: written.outcome == WriteOutcome::AlreadyStored,
        }))
    }

    async fn status(
        &self,
        req: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        let owner = peer_uid(&req).unwrap_or(NOBODY);
        let s = self
            .store
            .content()
            .write_status_as(owner, &req.into_inner().r#ref)
            .map_err(to_status)?;
        Ok(Response::new(v1::StatusResponse {
            r#ref: s.reference,
            offset: s.offset,
            total: s.total,
            expected: s.expected.to_string(),
            started_at: s.started_at,
            updated_at: s.updated_at,
        }))
    }

    async fn abort(
        &self,
        req: Request<v1::AbortRequest>,
    ) -> Result<Response<v1::AbortResponse>, Status> {
        let owner = peer_uid(&req).unwrap_or(NOBODY);
        self.store
            .content()
            .abort_write_as(owner, &req.into_inner().r#ref)
            .map_err(to_status)?;
        Ok(Response::new(v1::AbortResponse {}))
    }

    async fn create_lease(
        &self,
        req: Request<v1::CreateLeaseRequest>,
    ) -> Result<Response<v1::Lease>, Status> {
        let uid = peer_uid(&req);
        let store::Lease { id, expires_at } = self
            .store
            .leases()
            .create_as(uid.unwrap_or(NOBODY), req.into_inner().ttl_seconds)
            .await
            .map_err(to_status)?;
        tracing::info!(uid, lease = %id, expires_at, "lease created");
        Ok(Response::new(v1::Lease { id, expires_at }))
    }

    async fn delete_lease(
        &self,
        req: Request<v1::DeleteLeaseRequest>,
    ) -> Result<Response<v1::DeleteLeaseResponse>, Status> {
        let uid = peer_uid(&req);
        let id = req.into_inner().id;
        self.store
            .leases()
            .delete_as(leases_of(uid), &id)
            .await
            .map_err(to_status)?;
        tracing::info!(uid, lease = %id, "lease deleted by a client");
        Ok(Response::new(v1::DeleteLeaseResponse {}))
    }

    async fn list_leases(
        &self,
        req: Request<v1::ListLeasesRequest>,
    ) -> Result<Response<v1::ListLeasesResponse>, Status> {
        let leases = self
            .store
            .leases()
            .list(leases_of(peer_uid(&req)))
            .map_err(to_status)?
            .into_iter()
            .map(|l| v1::LeaseInfo {
                id: l.id,
                maker: l.owner.map(v1::lease_info::Maker::Uid),
                created_at: l.created_at.unwrap_or(0),
                expires_at: l.expires_at,
                blobs: l.blobs,
            })
            .collect();
        Ok(Response::new(v1::ListLeasesResponse { leases }))
    }
}
