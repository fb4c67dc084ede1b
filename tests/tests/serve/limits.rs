//! What a registry client may cost: a connection that owes its request's headers is cut off
//! after `--stall-timeout`, connections past `--registry-max-connections` are closed at accept,
//! a client that stops reading an answer is cut off after `--stall-timeout` too, fifty pulls at
//! once stay small, and hyperd stops cleanly with registry connections open.

use std::io::{Read, Write};
use std::net::TcpStream;

use integration::TestDaemon;
use integration::serve::{get, registry_addr};
use integration::wait::until;

/// Reads until hyperd closes the connection; what it sent before.
fn until_closed(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn a_client_that_owes_its_headers_is_cut_off() {
    let d =
        TestDaemon::start_with_args(&["--registry-listen", "127.0.0.1:0", "--stall-timeout", "2"]);
    let addr = registry_addr(&d);
    let stalls: [&[u8]; 3] = [b"", b"GET /v2/ HT", b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"];
    let conns: Vec<TcpStream> = stalls
        .iter()
        .map(|bytes| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.write_all(bytes).unwrap();
            s
        })
        .collect();
    for conn in conns {
        // Cut off, never answered as a request (hyper may say 408 first).
        let said = String::from_utf8_lossy(&until_closed(conn)).into_owned();
        assert!(
            said.is_empty() || said.starts_with("HTTP/1.1 408"),
            "{said}"
        );
    }
    assert_eq!(get(&format!("http://{addr}/v2/")).status, 200);
}

#[test]
fn connections_past_the_cap_are_closed_until_one_ends() {
    let d = TestDaemon::start_with_args(&[
        "--registry-listen",
        "127.0.0.1:0",
        "--registry-max-connections",
        "2",
        "--stall-timeout",
        "3600",
    ]);
    let addr = registry_addr(&d);
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // The third is accepted and closed unanswered, though it sends a whole request.
    let mut third = TcpStream::connect(&addr).unwrap();
    let _ = third.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(until_closed(third).is_empty());
    drop(held);
    until(30, "a connection served after the cap freed", || {
        let mut s = TcpStream::connect(&addr).unwrap();
        let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        until_closed(s).starts_with(b"HTTP/1.1 200")
    });
}

#[tokio::test]
async fn a_client_that_stops_reading_a_blob_is_cut_off() {
    use integration::fixtures::*;
    let d = TestDaemon::start_with_args(&[
        "--registry-listen",
        "127.0.0.1:0",
        "--registry-max-connections",
        "1",
        "--stall-timeout",
        "2",
    ]);
    // Far more than the sockets' buffers hold.
    let image = big_image(&d, "stop reading", 1).await;
    let addr = registry_addr(&d);
    let mut reader = TcpStream::connect(&addr).unwrap();
    let blob = sha(&image.layers[0].0);
    write!(
        reader,
        "GET /v2/big/blobs/{blob} HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    // It holds the one place under the cap until hyperd gives up on it.
    until(
        60,
        "a connection served after the stalled reader was cut off",
        || {
            let mut s = TcpStream::connect(&addr).unwrap();
            let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            until_closed(s).starts_with(b"HTTP/1.1 200")
        },
    );
    drop(reader);
}

#[test]
fn hyperd_stops_with_registry_connections_open() {
    let mut d = TestDaemon::start_with_args(&["--registry-listen", "127.0.0.1:0"]);
    let addr = registry_addr(&d);
    let mut open = TcpStream::connect(&addr).unwrap();
    open.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = [0; 12];
    open.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let _idle = TcpStream::connect(&addr).unwrap();
    assert!(d.terminate().success(), "{}", d.log());
    assert!(TcpStream::connect(&addr).is_err());
}

#[tokio::test]
async fn fifty_concurrent_pulls_of_one_image_stay_small() {
    use integration::fixtures::*;
    let d = TestDaemon::start_with_args(&["--registry-listen", "127.0.0.1:0"]);
    let image = big_image(&d, "fifty", 2).await;
    let addr = registry_addr(&d);
    d.reset_peak_rss();
    let before = d.peak_rss_mib();
    let mut urls = vec![
        format!("http://{addr}/v2/big/manifests/1"),
        format!("http://{addr}/v2/big/blobs/{}", image.id()),
    ];
    urls.extend(
        image
            .layers
            .iter()
            .map(|(b, _)| format!("http://{addr}/v2/big/blobs/{}", sha(b))),
    );
    let pulls: Vec<_> = (0..50)
        .map(|_| {
            std::process::Command::new("curl")
                .args([
                    "-sS",
                    "--fail",
                    "-o",
                    "/dev/null",
                    "-o",
                    "/dev/null",
                    "-o",
                    "/dev/null",
                    "-o",
                    "/dev/null",
                ])
                .args(&urls)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut pull in pulls {
        assert!(pull.wait().unwrap().success());
    }
    let peak = d.peak_rss_mib();
    eprintln!("hyperd peak RSS: {before} MiB before the pulls, {peak} MiB with them");
    assert!(peak <= 128, "{peak} MiB");
}

/// An image of `layers` 32 MiB layers loaded into `d` as `big:1`.
async fn big_image(d: &TestDaemon, seed: &str, layers: usize) -> integration::fixtures::Image {
    use integration::fixtures::*;
    let image = noise_image(seed, layers, 32 << 10, None).await;
    let archive = oci_archive(&[(&image, &[("org.opencontainers.image.ref.name", "big:1")])]).await;
    d.ok(&[
        "load",
        "-i",
        integration::tools::p(&d.write_file("big.tar", &archive)),
    ]);
    image
}
