//! What keeps writes from using up hyperd: lease-less writes share leases, a blob an image uses
//! is held by nothing else, write streams wait for slots, large messages are refused, a stalled
//! stream gives its slot up; and the already-stored answer leaves another stream's write alone.

use hyperd_proto::tonic::Code;
use integration::TestDaemon;
use integration::fixtures::*;

use super::client::*;
use super::{MIB, eventually, load_and_remove, open_write, wait_offset};

#[tokio::test]
async fn lease_less_writes_share_a_lease_and_never_use_up_the_lease_table() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let blob = noise("shared", 100);
    write(&mut c, "first", &blob, "").await.unwrap();
    // Each of these used to create a lease of its own: 4,096 of them filled the table.
    for i in 0..4_100 {
        let again = write(&mut c, &format!("again-{i}"), &blob, "")
            .await
            .unwrap();
        assert!(again.already_stored, "{again:?}");
    }
    let fresh = write(&mut c, "fresh", &noise("fresh", 100), "")
        .await
        .unwrap();
    assert!(fresh.committed && !fresh.already_stored, "{fresh:?}");
    let l = lease(&mut c, 60).await;
    assert!(!l.id.is_empty());
    // And collection keeps what they hold.
    load_and_remove(&d, "collect").await;
    assert_eq!(info(&mut c, &sha(&blob)).await, (true, 100));
    assert_eq!(info(&mut c, &sha(&noise("fresh", 100))).await, (true, 100));
}

#[tokio::test]
async fn a_blob_an_image_uses_is_not_held_again_by_a_lease_less_write() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let img = noise_image("used", 1, 4, None).await;
    let archive = d.path("used.tar");
    let refs = [("io.containerd.image.name", "used:1")];
    std::fs::write(&archive, oci_archive(&[(&img, &refs)]).await).unwrap();
    d.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
    let unused = noise("unused", 100);
    write(&mut c, "unused", &unused, "").await.unwrap();
    let again = write(&mut c, "config", &img.config, "").await.unwrap();
    assert!(again.already_stored, "{again:?}");
    // The image was its only root: removing the image frees it, while the blob no image uses
    // stays held.
    d.ok(&["rmi", "used:1"]);
    assert_eq!(info(&mut c, &img.id()).await, (false, 0));
    assert_eq!(info(&mut c, &sha(&unused)).await, (true, 100));
}

#[tokio::test]
async fn a_stored_blob_written_under_a_busy_ref_leaves_the_stream_writing_it_alone() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let stored = noise("stored", 100);
    write(&mut c, "s", &stored, "").await.unwrap();
    let blob = noise("busy", 2 * MIB);
    let (tx, task) = open_write(&c);
    tx.send(first("busy", &blob, "", 0, &blob[..MIB]))
        .await
        .unwrap();
    wait_offset(&mut c, "busy", MIB as u64).await;
    let answer = write(&mut c, "busy", &stored, "").await.unwrap();
    assert!(answer.already_stored, "{answer:?}");
    tx.send(more(&blob[MIB..])).await.unwrap();
    let done = task.await.unwrap().unwrap();
    assert!(done.committed, "{done:?}");

    // A write left open under the ref, with no stream on it, is dropped.
    let open = noise("left open", 100);
    let msgs = vec![first("idle", &open, "", 0, &open[..10])];
    let pending = c.write(tokio_stream::iter(msgs)).await.unwrap();
    assert_eq!(pending.into_inner().offset, 10);
    assert!(
        write(&mut c, "idle", &stored, "")
            .await
            .unwrap()
            .already_stored
    );
    refused(status(&mut c, "idle").await, Code::NotFound, "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_streams_wait_for_a_slot_before_their_data_is_read() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let blob = noise("slot", 100);
    // Eight streams take every slot one uid may hold (8 of the 16; the test runs as one uid).
    let mut holders = Vec::new();
    for conn in 0..1 {
        let client = content(&d.socket).await;
        for i in 0..8 {
            let reference = format!("hold-{conn}-{i}");
            let (tx, task) = open_write(&client);
            tx.send(first(&reference, &blob, "", 0, &blob[..10]))
                .await
                .unwrap();
            wait_offset(&mut c, &reference, 10).await;
            holders.push((tx, task));
        }
    }
    let (tx, task) = open_write(&c);
    tx.send(first("waiter", &blob, "", 0, &blob[..10]))
        .await
        .unwrap();
    eventually(10, "the ninth write waiting", async || {
        d.log().contains("write waiting for a free slot")
    })
    .await;
    // Waiting, its first message is not read: no write exists under its ref.
    refused(status(&mut c, "waiter").await, Code::NotFound, "waiter");
    let (first_tx, first_task) = holders.remove(0);
    drop(first_tx);
    assert!(!first_task.await.unwrap().unwrap().committed);
    wait_offset(&mut c, "waiter", 10).await;
    tx.send(more(&blob[10..])).await.unwrap();
    assert!(task.await.unwrap().unwrap().committed);
    for (tx, task) in holders {
        drop(tx);
        assert_eq!(task.await.unwrap().unwrap().offset, 10);
    }
}

#[tokio::test]
async fn a_write_message_over_two_chunks_is_refused() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let blob = noise("large", 3 * MIB);
    let limit = 2 * hyperd_proto::CHUNK_SIZE;
    let r = c
        .write(tokio_stream::iter([first(
            "large",
            &blob,
            "",
            0,
            &blob[..limit],
        )]))
        .await;
    refused(r, Code::OutOfRange, "too large");
    // Two chunks of data fit, with the first message's fields.
    let msgs = vec![
        first("large", &blob, "", 0, &blob[..limit - 4096]),
        more(&blob[limit - 4096..]),
    ];
    let done = c
        .write(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert!(done.committed, "{done:?}");
}

#[tokio::test]
async fn a_stalled_write_gives_its_slot_up_and_stays_open() {
    let d = TestDaemon::start_with_args(&["--load-idle-timeout", "1"]);
    let mut c = content(&d.socket).await;
    let blob = noise("stall", 100);
    let (tx, task) = open_write(&c);
    tx.send(first("stall", &blob, "", 0, &blob[..10]))
        .await
        .unwrap();
    let ended = task.await.unwrap();
    refused(ended, Code::DeadlineExceeded, "sent nothing for 1s");
    drop(tx);
    assert_eq!(status(&mut c, "stall").await.unwrap().offset, 10);
    let done = write_from(&mut c, "stall", &blob, "", 10).await.unwrap();
    assert!(done.committed, "{done:?}");
}
