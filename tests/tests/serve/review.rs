//! What a review of the registry endpoint found: `Accept` read as RFC 9110 says (case, `q=0`),
//! a catalog that lists only names a request can ask for, and a HEAD of a manifest that says
//! what its GET says, from the store's records when it has them, and a cap on the connections
//! of one client address.

use std::io::{Read, Write};
use std::net::TcpStream;

use integration::TestDaemon;
use integration::fixtures::{multi_platform, sha, tar};
use integration::serve::{get, registry_addr, request};
use integration::tools::p;
use integration::wait::until;

use super::conformance::served;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test]
async fn accept_ignores_case_and_q_zero_refuses() {
    let s = served().await;
    let url = format!("{}/v2/app/manifests/1", s.base);
    let ask = |accept: &str| request("GET", &url, &[("Accept", accept)]);
    let upper = ask(&OCI_MANIFEST.to_ascii_uppercase());
    assert_eq!(upper.status, 200, "{upper:?}");
    assert_eq!(upper.header("content-type"), Some(OCI_MANIFEST));
    for refused in [
        format!("{OCI_MANIFEST};q=0"),
        format!("*/*, {OCI_MANIFEST}; q=0"),
    ] {
        let r = ask(&refused);
        assert_eq!(
            (r.status, r.code().as_str()),
            (404, "MANIFEST_UNKNOWN"),
            "{refused}"
        );
    }
    assert_eq!(ask(&format!("*/*;q=0, {OCI_MANIFEST}")).status, 200);
}

#[tokio::test]
async fn the_catalog_lists_without_ns_only_names_a_path_can_ask_for() {
    let s = served().await;
    // No path names these: a path's name has no port. `?ns=` does.
    s.d.ok(&["tag", "app:1", "registry.example:5000/app:1"]);
    s.d.ok(&["tag", "app:1", "127.0.0.1:5601/team/app:1"]);
    let catalog = |query: &str| get(&format!("{}/v2/_catalog{query}", s.base));
    let reachable = ["docker.io/library/app", "made.up.example/other"];
    assert_eq!(
        catalog("").json()["repositories"],
        serde_json::json!(reachable)
    );
    // Every listed name is served as it is shown.
    for name in reachable {
        let tags = get(&format!("{}/v2/{name}/tags/list", s.base));
        assert_eq!(tags.status, 200, "{name}: {tags:?}");
    }
    let first = catalog("?n=1");
    assert_eq!(
        first.json()["repositories"],
        serde_json::json!(["docker.io/library/app"])
    );
    assert_eq!(
        first.header("link"),
        Some("</v2/_catalog?n=1&last=docker.io%2Flibrary%2Fapp>; rel=\"next\"")
    );
    // The last listed name ends the catalog: no link to a page of what is not listed.
    let last = catalog("?n=1&last=docker.io/library/app");
    assert_eq!(
        last.json()["repositories"],
        serde_json::json!(["made.up.example/other"])
    );
    assert_eq!(last.header("link"), None);
    assert_eq!(catalog("?n=2").header("link"), None);
    for (ns, name) in [
        ("registry.example:5000", "app"),
        ("registry.example%3A5000", "app"),
        ("127.0.0.1:5601", "team/app"),
    ] {
        let under = catalog(&format!("?ns={ns}"));
        assert_eq!(
            under.json()["repositories"],
            serde_json::json!([name]),
            "{ns}"
        );
        let tags = get(&format!("{}/v2/{name}/tags/list?ns={ns}", s.base));
        assert_eq!(tags.json()["tags"], serde_json::json!(["1"]), "{ns}");
    }
}

#[tokio::test]
async fn a_head_of_a_manifest_says_what_its_get_says() {
    let s = served().await;
    let (entries, amd, _arm, index) = multi_platform("docker.io/library/multi:1").await;
    let archive = s.d.write_file("multi.tar", &tar(&entries).await);
    s.d.ok(&["load", "-i", p(&archive)]);
    // Recorded: an image's manifest, an index, a referrer. Read: a manifest inside an index.
    let cases = [
        ("app", "1".to_owned(), s.app.manifest.len()),
        ("app", sha(&s.app.manifest), s.app.manifest.len()),
        ("app", s.sig.digest(), s.sig.manifest.len()),
        ("multi", "1".to_owned(), index.len()),
        ("multi", sha(&amd.manifest), amd.manifest.len()),
    ];
    for (name, reference, len) in cases {
        let url = format!("{}/v2/{name}/manifests/{reference}", s.base);
        let got = request("GET", &url, &[]);
        let head = request("HEAD", &url, &[]);
        assert_eq!((got.status, head.status), (200, 200), "{url}: {head:?}");
        assert!(head.body.is_empty());
        assert_eq!(got.body.len(), len, "{url}");
        for h in [
            "content-type",
            "content-length",
            "docker-content-digest",
            "etag",
        ] {
            assert_eq!(got.header(h), head.header(h), "{url}: {h}");
        }
    }
}

/// Whether `s` is answered `GET /v2/`, the connection kept open.
fn answered(s: &mut TcpStream) -> bool {
    let _ = s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut said = Vec::new();
    let mut buf = [0; 1024];
    // `/v2/` answers `{}` after its headers: then the whole answer is in.
    while !said.ends_with(b"\r\n\r\n{}") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => said.extend_from_slice(&buf[..n]),
        }
    }
    said.starts_with(b"HTTP/1.1 200")
}

/// A connection to `addr` from the local address `from`.
async fn connect_from(from: &str, addr: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

#[tokio::test]
async fn one_address_past_its_cap_is_closed_while_others_are_served() {
    let d = TestDaemon::start_with_args(&[
        "--registry-listen",
        "127.0.0.1:0",
        "--registry-max-connections-per-ip",
        "2",
        "--stall-timeout",
        "3600",
    ]);
    let addr = registry_addr(&d);
    let mut held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    for s in &mut held {
        assert!(answered(s));
    }
    // The third from 127.0.0.1 is accepted and closed unanswered.
    let mut third = TcpStream::connect(&addr).unwrap();
    assert!(!answered(&mut third));
    // Another address has its own two places.
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut other = connect_from("127.0.0.2", &addr).await;
        assert!(answered(&mut other));
        others.push(other);
    }
    let mut past = connect_from("127.0.0.2", &addr).await;
    assert!(!answered(&mut past));
    // One of 127.0.0.1's closes: it has a place again, and one only.
    drop(held.pop());
    let mut again = None;
    until(
        30,
        "127.0.0.1 served after one of its connections closed",
        || {
            let mut s = TcpStream::connect(&addr).unwrap();
            let ok = answered(&mut s);
            again = ok.then_some(s);
            ok
        },
    );
    let mut over = TcpStream::connect(&addr).unwrap();
    assert!(!answered(&mut over), "{}", d.log());
    assert!(d.log().contains("a client's cap reached"));
    drop((again, others));
}
