//! The content API against the real daemon: blobs by digest, writes in pieces that survive a
//! client cut off mid-stream, leases that keep blobs from collection until they expire, nothing
//! visible before it was verified (also across a kill -9), and images created from written blobs.

mod bounds;
pub(crate) mod client;
mod create;
mod referrers;

use client::*;
use hyperd_proto::tonic::Code;
use hyperd_proto::v1;
use integration::TestDaemon;
use integration::fixtures::*;
use integration::wait::eventually;
use tokio_stream::wrappers::ReceiverStream;

const MIB: usize = 1 << 20;

fn blob_file(d: &TestDaemon, digest: &str) -> std::path::PathBuf {
    d.root.join("blobs/sha256").join(hex_of(digest))
}

/// A Write stream held open: messages go in through the sender, the answer comes from the task.
fn open_write(
    c: &Content,
) -> (
    tokio::sync::mpsc::Sender<v1::WriteRequest>,
    tokio::task::JoinHandle<Result<v1::WriteResponse, hyperd_proto::tonic::Status>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut c = c.clone();
    let task = tokio::spawn(async move {
        c.write(ReceiverStream::new(rx))
            .await
            .map(|r| r.into_inner())
    });
    (tx, task)
}

async fn wait_offset(c: &mut Content, reference: &str, offset: u64) {
    eventually(10, "the write reaching its offset", async || {
        status(c, reference).await.is_ok_and(|s| s.offset == offset)
    })
    .await;
}

async fn load_and_remove(d: &TestDaemon, label: &str) {
    let img = noise_image(label, 1, 4, None).await;
    let name = format!("{label}:1");
    let archive = d.path(&format!("{label}.tar"));
    let refs = [("io.containerd.image.name", name.as_str())];
    std::fs::write(&archive, oci_archive(&[(&img, &refs)]).await).unwrap();
    d.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    // The removal collects.
    d.ok(&["rmi", &name]);
}

#[tokio::test]
async fn info_and_ranged_reads_of_stored_blobs() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let layer = noise("info", 3 * MIB + 5);
    let digest = sha(&layer);
    write(&mut c, "info", &layer, "").await.unwrap();
    let absent = sha(b"absent");
    let answer = c
        .info(v1::InfoRequest {
            digests: vec![absent.clone(), digest.clone()],
        })
        .await
        .unwrap()
        .into_inner()
        .blobs;
    assert_eq!(
        answer,
        [
            v1::BlobInfo {
                digest: absent.clone(),
                stored: false,
                size: 0
            },
            v1::BlobInfo {
                digest: digest.clone(),
                stored: true,
                size: layer.len() as u64
            },
        ]
    );
    let bad = format!("sha256:{}", "A".repeat(64));
    let r = c.info(v1::InfoRequest {
        digests: vec![bad.clone()],
    });
    refused(r.await, Code::InvalidArgument, &bad);
    let r = c.info(v1::InfoRequest {
        digests: vec![absent.clone(); 10_001],
    });
    refused(r.await, Code::InvalidArgument, "10000");

    assert!(read(&mut c, &digest, 0, 0).await.unwrap() == layer);
    let part = read(&mut c, &digest, MIB as u64 + 3, 2 * MIB as u64)
        .await
        .unwrap();
    assert!(part == layer[MIB + 3..3 * MIB + 3]);
    let tail = read(&mut c, &digest, 3 * MIB as u64, 0).await.unwrap();
    assert!(tail == layer[3 * MIB..]);
    assert!(
        read(&mut c, &digest, layer.len() as u64, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let len = layer.len() as u64;
    refused(
        read(&mut c, &digest, len + 1, 0).await,
        Code::OutOfRange,
        "offset",
    );
    refused(
        read(&mut c, &digest, 10, len).await,
        Code::OutOfRange,
        "length",
    );
    refused(read(&mut c, &absent, 0, 0).await, Code::NotFound, &absent);
    refused(
        read(&mut c, "sha256:xyz", 0, 0).await,
        Code::InvalidArgument,
        "xyz",
    );
}

#[tokio::test]
async fn a_written_blob_reads_back_and_a_stored_one_is_answered_without_data() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let blob = noise("write", 2 * MIB + 77);
    let w = write(&mut c, "w1", &blob, "").await.unwrap();
    assert_eq!(
        w,
        v1::WriteResponse {
            digest: sha(&blob),
            offset: blob.len() as u64,
            committed: true,
            already_stored: false
        }
    );
    assert!(read(&mut c, &sha(&blob), 0, 0).await.unwrap() == blob);
    assert!(std::fs::read(blob_file(&d, &sha(&blob))).unwrap() == blob);
    // Only the first message, no data: the store holds it already.
    let again = c
        .write(tokio_stream::iter([first("w2", &blob, "", 0, &[])]))
        .await
        .unwrap()
        .into_inner();
    assert!(again.committed && again.already_stored, "{again:?}");
    assert_eq!(again.offset, blob.len() as u64);
    // The empty blob commits on its first message.
    let empty = write(&mut c, "empty", b"", "").await.unwrap();
    assert!(empty.committed && empty.offset == 0, "{empty:?}");
    assert_eq!(info(&mut c, &sha(b"")).await, (true, 0));
}

#[tokio::test]
async fn mismatched_or_overlong_bytes_are_refused_and_nothing_is_visible() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let blob = noise("lie", MIB + 10);
    let mut other = blob.clone();
    other[MIB] ^= 1;
    // The bytes of `other` under the digest of `blob`.
    let msgs = vec![
        first("lie", &blob, "", 0, &other[..MIB]),
        more(&other[MIB..]),
    ];
    let r = c.write(tokio_stream::iter(msgs)).await;
    refused(r, Code::DataLoss, &sha(&blob));
    // The client's mistake, refused; not damage to the store.
    let log = d.log();
    assert!(log.contains("write refused"), "{log}");
    assert!(!log.contains("damaged data"), "{log}");
    assert_eq!(info(&mut c, &sha(&blob)).await, (false, 0));
    assert_eq!(info(&mut c, &sha(&other)).await, (false, 0));
    assert!(!blob_file(&d, &sha(&blob)).exists());
    refused(status(&mut c, "lie").await, Code::NotFound, "lie");

    let msgs = vec![first("long", &blob, "", 0, &blob), more(b"x")];
    let r = c.write(tokio_stream::iter(msgs)).await;
    // The whole blob commits with the first message; what follows is not read.
    assert!(r.unwrap().into_inner().committed);
    let short = noise("short", 100);
    let msgs = vec![first("past", &short, "", 0, &short[..60]), more(&[0; 41])];
    let r = c.write(tokio_stream::iter(msgs)).await;
    refused(r, Code::InvalidArgument, "past the total");
    refused(status(&mut c, "past").await, Code::NotFound, "past");
    assert_eq!(info(&mut c, &sha(&short)).await, (false, 0));
    let bad_ref = "x".repeat(257);
    refused(
        write(&mut c, &bad_ref, &short, "").await,
        Code::InvalidArgument,
        "256",
    );
    let mut huge = first("huge", &short, "", 0, &[]);
    huge.total = (1 << 40) + 1;
    let r = c.write(tokio_stream::iter([huge])).await;
    refused(r, Code::InvalidArgument, "limit");
    refused(
        write(&mut c, "nolease", &short, "nope").await,
        Code::NotFound,
        "nope",
    );
    d.ok(&["check"]);
}

#[tokio::test]
async fn a_write_cut_off_mid_stream_resumes_where_it_stopped() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let blob = noise("resume", 3 * MIB + 1);
    let digest = sha(&blob);

    // The client is cut off after one MiB: the stream is reset, not closed.
    let (tx, task) = open_write(&c);
    tx.send(first("r", &blob, "", 0, &blob[..MIB]))
        .await
        .unwrap();
    wait_offset(&mut c, "r", MIB as u64).await;
    task.abort();
    drop(tx);
    let s = status(&mut c, "r").await.unwrap();
    assert_eq!(
        (s.offset, s.total, s.expected.as_str()),
        (MIB as u64, blob.len() as u64, digest.as_str())
    );
    assert!(s.started_at > 0 && s.updated_at >= s.started_at);
    assert_eq!(info(&mut c, &digest).await, (false, 0));

    // Once hyperd has seen the reset, the write is free to resume; not from elsewhere.
    let mut resumed = None;
    eventually(10, "the cut-off stream releasing its write", async || {
        let msgs = vec![first("r", &blob, "", 2 * MIB as u64, &[])];
        match c.write(tokio_stream::iter(msgs)).await {
            Err(s) if s.code() == Code::FailedPrecondition => false,
            other => {
                resumed = Some(other);
                true
            }
        }
    })
    .await;
    refused(resumed.unwrap(), Code::OutOfRange, "at offset 1048576");
    let other = noise("other", 10);
    refused(
        write_from(&mut c, "r", &other, "", 0).await,
        Code::FailedPrecondition,
        "abort it",
    );

    // A stream that ends early leaves the write open and says where it is.
    let msgs = vec![first("r", &blob, "", MIB as u64, &blob[MIB..2 * MIB])];
    let pending = c
        .write(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((pending.committed, pending.offset), (false, 2 * MIB as u64));

    // While one stream writes a ref, another is refused. The first has the write once its
    // bytes show in the offset; it holds it until its stream ends.
    let (tx, task) = open_write(&c);
    tx.send(first(
        "r",
        &blob,
        "",
        2 * MIB as u64,
        &blob[2 * MIB..3 * MIB],
    ))
    .await
    .unwrap();
    wait_offset(&mut c, "r", 3 * MIB as u64).await;
    let probe = vec![first("r", &blob, "", 3 * MIB as u64, &[])];
    refused(
        c.write(tokio_stream::iter(probe)).await,
        Code::FailedPrecondition,
        "being written by another client",
    );
    tx.send(more(&blob[3 * MIB..])).await.unwrap();
    let done = task.await.unwrap().unwrap();
    assert!(
        done.committed && done.offset == blob.len() as u64,
        "{done:?}"
    );
    assert!(read(&mut c, &digest, 0, 0).await.unwrap() == blob);
    refused(status(&mut c, "r").await, Code::NotFound, "r");
    d.ok(&["check"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_digest_both_commit_it_once() {
    let d = TestDaemon::start();
    let c = content(&d.socket).await;
    let blob = noise("twice", 2 * MIB);
    let (tx_a, a) = open_write(&c);
    let (tx_b, b) = open_write(&c);
    tx_a.send(first("a", &blob, "", 0, &blob[..MIB]))
        .await
        .unwrap();
    tx_b.send(first("b", &blob, "", 0, &blob[..MIB]))
        .await
        .unwrap();
    tx_a.send(more(&blob[MIB..])).await.unwrap();
    tx_b.send(more(&blob[MIB..])).await.unwrap();
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert!(a.committed && b.committed, "{a:?} {b:?}");
    let mut c = c;
    assert_eq!(info(&mut c, &sha(&blob)).await, (true, blob.len() as u64));
    assert!(std::fs::read(blob_file(&d, &sha(&blob))).unwrap() == blob);
    d.ok(&["check"]);
}

#[tokio::test]
async fn abort_ends_the_stream_writing_and_drops_the_bytes() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let blob = noise("abort", 2 * MIB);
    let (tx, task) = open_write(&c);
    tx.send(first("ab", &blob, "", 0, &blob[..MIB]))
        .await
        .unwrap();
    wait_offset(&mut c, "ab", MIB as u64).await;
    c.abort(v1::AbortRequest { r#ref: "ab".into() })
        .await
        .unwrap();
    refused(task.await.unwrap(), Code::Aborted, "aborted");
    refused(status(&mut c, "ab").await, Code::NotFound, "ab");
    let r = c.abort(v1::AbortRequest { r#ref: "ab".into() }).await;
    refused(r, Code::NotFound, "ab");
    assert_eq!(
        std::fs::read_dir(d.root.join("ingest/content"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(info(&mut c, &sha(&blob)).await, (false, 0));
}

#[tokio::test]
async fn leased_and_in_flight_blobs_survive_collection_until_the_lease_ends() {
    let mut d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let long = lease(&mut c, 3600).await;
    let short = lease(&mut c, 3).await;
    assert!(short.expires_at < long.expires_at);
    let kept = noise("kept", 1000);
    let brief = noise("brief", 1000);
    let own = noise("own", 1000);
    let in_flight = noise("in flight", 2 * MIB);
    write(&mut c, "kept", &kept, &long.id).await.unwrap();
    write(&mut c, "brief", &brief, &short.id).await.unwrap();
    write(&mut c, "own", &own, "").await.unwrap();
    let msgs = vec![first("fly", &in_flight, &long.id, 0, &in_flight[..MIB])];
    c.write(tokio_stream::iter(msgs)).await.unwrap();

    load_and_remove(&d, "trigger").await;
    for b in [&kept, &own] {
        assert_eq!(info(&mut c, &sha(b)).await, (true, 1000));
    }
    let done = write_from(&mut c, "fly", &in_flight, &long.id, MIB)
        .await
        .unwrap();
    assert!(done.committed);

    // The short lease's blob goes when the janitor sees it expire.
    eventually(30, "the expired lease's blob being collected", async || {
        !info(&mut c, &sha(&brief)).await.0
    })
    .await;
    let r = write(&mut c, "late", &noise("late", 10), &short.id).await;
    refused(r, Code::NotFound, &short.id);

    // Leases survive a restart; deleting one frees what only it held.
    d.restart();
    let mut c = content(&d.socket).await;
    assert_eq!(info(&mut c, &sha(&kept)).await, (true, 1000));
    assert_eq!(info(&mut c, &sha(&in_flight)).await, (true, 2 * MIB as u64));
    let del = |id: &str| v1::DeleteLeaseRequest { id: id.into() };
    c.delete_lease(del(&long.id)).await.unwrap();
    assert_eq!(info(&mut c, &sha(&kept)).await, (false, 0));
    assert_eq!(info(&mut c, &sha(&in_flight)).await, (false, 0));
    assert_eq!(info(&mut c, &sha(&own)).await, (true, 1000));
    refused(
        c.delete_lease(del(&long.id)).await,
        Code::NotFound,
        &long.id,
    );
    let r = c
        .create_lease(v1::CreateLeaseRequest {
            ttl_seconds: 8 * 86400,
        })
        .await;
    refused(r, Code::InvalidArgument, "at most");
    let default = lease(&mut c, 0).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((default.expires_at - now - 3600).abs() <= 5, "{default:?}");
}

#[tokio::test]
async fn an_idle_write_expires() {
    let d = TestDaemon::start_with_args(&["--content-write-expiry", "1"]);
    let mut c = content(&d.socket).await;
    let blob = noise("idle", 100);
    let msgs = vec![first("idle", &blob, "", 0, &blob[..10])];
    // The answer shows the write was left open; by the next call it may have expired already.
    let pending = c
        .write(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((pending.committed, pending.offset), (false, 10));
    eventually(30, "the idle write expiring", async || {
        status(&mut c, "idle").await.is_err()
    })
    .await;
    assert_eq!(
        std::fs::read_dir(d.root.join("ingest/content"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn kill_9_mid_write_leaves_nothing_visible() {
    let mut d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let blob = noise("crash", 3 * MIB);
    let (tx, task) = open_write(&c);
    tx.send(first("crash", &blob, "", 0, &blob[..MIB]))
        .await
        .unwrap();
    tx.send(more(&blob[MIB..2 * MIB])).await.unwrap();
    wait_offset(&mut c, "crash", 2 * MIB as u64).await;
    d.kill();
    assert!(task.await.unwrap().is_err());
    drop(tx);
    d.restart();
    let mut c = content(&d.socket).await;
    refused(status(&mut c, "crash").await, Code::NotFound, "crash");
    assert_eq!(info(&mut c, &sha(&blob)).await, (false, 0));
    assert_eq!(std::fs::read_dir(d.root.join("ingest")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(d.root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    let out = d.ok(&["check"]);
    assert!(out.contains(": 0 problems, 0 unreferenced"), "{out}");
    // And the ref starts afresh.
    assert!(write(&mut c, "crash", &blob, "").await.unwrap().committed);
}
