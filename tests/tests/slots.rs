//! Load slots: four loads stream at once, at most two of one uid, and the rest wait. Waiting loads on one connection must
//! not starve the ones holding slots there, and a client that stalls gives its slot up.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyperd_proto::v1;
use integration::TestDaemon;
use integration::fixtures::*;
use integration::grpc::{Images as Client, images, load_messages};
use integration::wait::eventually;

/// How far a load stream may send ahead of hyperd (its `LOAD_WINDOW`): two chunks.
const LOAD_WINDOW: usize = 2 << 20;

/// Load messages that count how many of them the client has taken to send.
struct Counted {
    msgs: std::vec::IntoIter<v1::LoadRequest>,
    taken: Arc<AtomicUsize>,
}

impl futures_util::Stream for Counted {
    type Item = v1::LoadRequest;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.msgs.next();
        if next.is_some() {
            self.taken.fetch_add(1, Ordering::SeqCst);
        }
        Poll::Ready(next)
    }
}

/// A load of `requests` on its own task: the ID it loaded, and `id`, the one expected.
fn spawn_load(
    client: &Client,
    requests: impl futures_util::Stream<Item = v1::LoadRequest> + Send + 'static,
    id: String,
) -> tokio::task::JoinHandle<(Result<String, hyperd_proto::tonic::Status>, String)> {
    let mut c = client.clone();
    tokio::spawn(async move {
        let loaded = c.load(requests).await;
        (loaded.map(|r| r.into_inner().images[0].id.clone()), id)
    })
}

/// How many times the daemon's log says `what`.
fn logged(d: &TestDaemon, what: &str) -> usize {
    d.log().matches(what).count()
}

async fn archive_of(label: &str, kib: usize) -> (bytes::Bytes, String) {
    let img = noise_image(label, 1, kib, None).await;
    let name = format!("{label}:1");
    let tar = oci_archive(&[(&img, &[("io.containerd.image.name", name.as_str())])]).await;
    (bytes::Bytes::from(tar), img.id())
}

/// Four loads take the slots and pause after their first chunk; twelve more on the same
/// connection send everything their windows allow while they wait. When the four go on, the
/// connection must still have room for their data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loads_waiting_on_one_connection_leave_room_for_the_slot_holders() {
    let d = TestDaemon::start();
    let client = images(&d.socket).await;
    let mut tasks = Vec::new();
    let mut resume = Vec::new();
    // Messages each waiting load has handed to the connection.
    let mut taken = Vec::new();
    for i in 0..16 {
        // More than a stream window each, so that waiting loads fill theirs.
        let (archive, id) = archive_of(&format!("conn{i}"), 6 << 10).await;
        let msgs = load_messages(&archive);
        let task = if i < 2 {
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let mut msgs = msgs.into_iter();
            for m in msgs.by_ref().take(2) {
                tx.send(m).await.unwrap();
            }
            resume.push((tx, msgs.collect::<Vec<_>>()));
            spawn_load(&client, tokio_stream::wrappers::ReceiverStream::new(rx), id)
        } else {
            let count = Arc::new(AtomicUsize::new(0));
            taken.push(count.clone());
            let msgs = msgs.into_iter();
            spawn_load(&client, Counted { msgs, taken: count }, id)
        };
        tasks.push(task);
        if i == 1 {
            // The two take the slots one uid may hold (2 of the 4; the test runs as one uid)
            // before the others arrive.
            eventually(30, "two loads taking the slots", async || {
                logged(&d, "load started") == 2
            })
            .await;
        }
    }
    // The fourteen wait for a slot, and each has sent all its window allows: its options and
    // a window of chunks.
    let window = 1 + LOAD_WINDOW / hyperd_proto::CHUNK_SIZE;
    eventually(30, "fourteen loads waiting with full windows", async || {
        logged(&d, "load waiting for a free slot") == 14
            && taken.iter().all(|t| t.load(Ordering::SeqCst) >= window)
    })
    .await;
    for (tx, rest) in resume {
        for m in rest {
            tx.send(m).await.unwrap();
        }
    }
    let all = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(tasks),
    )
    .await
    .expect("loads waiting on the connection starved the ones holding slots");
    for result in all {
        let (loaded, id) = result.unwrap();
        assert_eq!(loaded.unwrap(), id);
    }
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_clients_give_their_slots_up() {
    let d = TestDaemon::start_with_args(&["--load-idle-timeout", "1"]);
    let (archive, id) = archive_of("after-stall", 3 << 10).await;
    // Four clients take every slot, send half an archive and stop without hanging up.
    let mut stalled = Vec::new();
    for _ in 0..4 {
        let mut c = images(&d.socket).await;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut msgs = load_messages(&archive);
        msgs.truncate(2);
        for m in msgs {
            tx.send(m).await.unwrap();
        }
        stalled.push(tokio::spawn(async move {
            let answer = c
                .load(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await;
            drop(tx);
            answer
        }));
    }
    // A fifth client waits for a slot, gets one when the stalled loads time out, and loads.
    let mut c = images(&d.socket).await;
    let loaded = tokio::time::timeout(
        Duration::from_secs(60),
        c.load(tokio_stream::iter(load_messages(&archive))),
    )
    .await
    .expect("the stalled loads kept their slots")
    .unwrap();
    assert_eq!(loaded.into_inner().images[0].id, id);
    for s in stalled {
        let status = s.await.unwrap().unwrap_err();
        assert!(
            status.message().contains("sent nothing for 1s"),
            "{status:?}"
        );
    }
}

/// stdin that is neither a file nor a pipe (a socket, as a service manager may pass) is read on a
/// thread nothing can cancel: once hyperd ends the stalled load, hyperctl must exit anyway.
#[test]
fn a_load_from_a_silent_stdin_ends_when_hyperd_gives_up_on_it() {
    let d = TestDaemon::start_with_args(&["--load-idle-timeout", "1"]);
    let (mut feeder, stdin) = std::os::unix::net::UnixStream::pair().unwrap();
    // A tar starts: hyperctl begins the load, then hears nothing more.
    std::io::Write::write_all(&mut feeder, &[0u8; 1024]).unwrap();
    let mut child = d
        .ctl()
        .args(["load", "--no-fd"])
        .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(stdin)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut exited = None;
    integration::wait::until(60, "hyperctl's exit once hyperd ended its load", || {
        exited = child.try_wait().unwrap();
        exited.is_some()
    });
    let out = child.wait_with_output().unwrap();
    assert!(!exited.unwrap().success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sent nothing for 1s"), "{err}");
    drop(feeder);
}
