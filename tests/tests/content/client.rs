//! A ContentService client for the content tests: writes in 1 MiB messages, ranged reads, lookups.

use std::path::Path;

use hyperd_proto::tonic::transport::Channel;
use hyperd_proto::tonic::{Code, Status};
use hyperd_proto::v1::content_service_client::ContentServiceClient;
use hyperd_proto::v1::{self, WriteRequest};
use tokio_stream::StreamExt;

pub(crate) type Content = ContentServiceClient<Channel>;
pub(crate) use integration::grpc::images;

pub(crate) async fn content(socket: &Path) -> Content {
    ContentServiceClient::new(hyperd_proto::connect(socket.to_path_buf()).await.unwrap())
}

/// The first message of a write of `blob` under `reference`, carrying `data`.
pub(crate) fn first(
    reference: &str,
    blob: &[u8],
    lease: &str,
    offset: u64,
    data: &[u8],
) -> WriteRequest {
    WriteRequest {
        r#ref: reference.into(),
        expected: integration::fixtures::sha(blob),
        total: blob.len() as u64,
        lease: lease.into(),
        offset,
        data: data.to_vec().into(),
    }
}

/// A later message: data only.
pub(crate) fn more(data: &[u8]) -> WriteRequest {
    WriteRequest {
        data: data.to_vec().into(),
        ..WriteRequest::default()
    }
}

/// Writes `blob` from `offset` on, in 1 MiB messages, under `lease` ("" for none).
pub(crate) async fn write_from(
    c: &mut Content,
    reference: &str,
    blob: &[u8],
    lease: &str,
    offset: usize,
) -> Result<v1::WriteResponse, Status> {
    let mut chunks = blob[offset..].chunks(hyperd_proto::CHUNK_SIZE);
    let mut msgs = vec![first(
        reference,
        blob,
        lease,
        offset as u64,
        chunks.next().unwrap_or_default(),
    )];
    msgs.extend(chunks.map(more));
    c.write(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

pub(crate) async fn write(
    c: &mut Content,
    reference: &str,
    blob: &[u8],
    lease: &str,
) -> Result<v1::WriteResponse, Status> {
    write_from(c, reference, blob, lease, 0).await
}

/// Reads a blob's range, checking that each message's offset follows the last.
pub(crate) async fn read(
    c: &mut Content,
    digest: &str,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, Status> {
    let req = v1::ReadRequest {
        digest: digest.into(),
        offset,
        length,
    };
    let mut stream = c.read(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        assert_eq!(
            msg.offset,
            offset + out.len() as u64,
            "offsets follow each other"
        );
        assert!(msg.data.len() <= hyperd_proto::CHUNK_SIZE);
        out.extend_from_slice(&msg.data);
    }
    Ok(out)
}

/// (stored, size) of one blob.
pub(crate) async fn info(c: &mut Content, digest: &str) -> (bool, u64) {
    let blobs = c
        .info(v1::InfoRequest {
            digests: vec![digest.into()],
        })
        .await
        .unwrap()
        .into_inner()
        .blobs;
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].digest, digest);
    (blobs[0].stored, blobs[0].size)
}

pub(crate) async fn status(c: &mut Content, reference: &str) -> Result<v1::StatusResponse, Status> {
    c.status(v1::StatusRequest {
        r#ref: reference.into(),
    })
    .await
    .map(|r| r.into_inner())
}

pub(crate) async fn lease(c: &mut Content, ttl: u64) -> v1::Lease {
    c.create_lease(v1::CreateLeaseRequest { ttl_seconds: ttl })
        .await
        .unwrap()
        .into_inner()
}

/// Fails the test unless `result` is an error with `code` whose message contains `text`.
#[track_caller]
pub(crate) fn refused<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    text: &str,
) -> Status {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(text), "{status:?} lacks {text:?}");
    status
}
