//! hyperd's registry endpoint as tests reach it: its address from the daemon's log, and
//! requests made with curl, answered with status, headers and body.

use std::process::Command;

use crate::TestDaemon;

/// The address of the last registry endpoint hyperd reported listening on (`127.0.0.1:PORT`).
pub fn registry_addr(d: &TestDaemon) -> String {
    let log = d.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("registry endpoint listening"))
        .unwrap_or_else(|| panic!("no registry endpoint in the log:\n{log}"));
    let addr = line.split_once("addr=").expect("addr= in the line").1;
    addr.split_whitespace().next().unwrap().to_owned()
}

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The spec's error code of the first error in the body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {self:?}"))
            .to_owned()
    }
}

/// `method url` with these request headers, through curl (`--path-as-is`: the path goes as
/// written, `..` included).
pub fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    exchange(method, url, headers, None)
}

/// As [`request`], sending `body` (with its `Content-Length`).
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    exchange(method, url, headers, Some(body))
}

fn exchange(method: &str, url: &str, headers: &[(&str, &str)], sent: Option<&[u8]>) -> Reply {
    let dir = tempfile::tempdir().unwrap();
    let (head, body) = (dir.path().join("head"), dir.path().join("body"));
    let mut curl = Command::new("curl");
    curl.args(["-sS", "-g", "--path-as-is", "-k", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body);
    match method {
        "HEAD" => curl.arg("--head"),
        _ => curl.args(["-X", method]),
    };
    for (name, value) in headers {
        curl.arg("-H").arg(format!("{name}: {value}"));
    }
    if let Some(sent) = sent {
        let file = dir.path().join("sent");
        std::fs::write(&file, sent).unwrap();
        // No `Expect: 100-continue` round trip, and no form content type of curl's own.
        curl.arg("--data-binary")
            .arg(format!("@{}", file.display()));
        curl.args(["-H", "Expect:"]);
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            curl.args(["-H", "Content-Type: application/octet-stream"]);
        }
    }
    let out = curl.arg(url).output().expect("running curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read_to_string(&head).unwrap();
    // The last block of headers is the answer (after any 100 Continue).
    let block = head.trim_end().rsplit("\r\n\r\n").next().unwrap();
    let mut lines = block.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status: status.parse().unwrap(),
        headers,
        // curl writes a HEAD answer's headers where the body would go, and reads no body.
        body: match method {
            "HEAD" => Vec::new(),
            _ => std::fs::read(&body).unwrap_or_default(),
        },
    }
}

pub fn get(url: &str) -> Reply {
    request("GET", url, &[])
}

/// The user and password a [`taking_pushes`] daemon admits, as `user:password`.
pub const PUSHER: &str = "ann:secret";

/// A daemon whose registry endpoint, on loopback, takes pushes from [`PUSHER`] (pushes need an
/// htpasswd file; hyperd reads it at start).
pub fn taking_pushes() -> TestDaemon {
    let (user, password) = PUSHER.split_once(':').unwrap();
    let entry = crate::tools::sh(&mut crate::tools::cmd(
        "htpasswd",
        &["-nbB", user, password],
    ));
    let htpasswd = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(htpasswd.path(), entry).unwrap();
    TestDaemon::start_with_args(&[
        "--registry-listen",
        "127.0.0.1:0",
        "--registry-push",
        "--registry-htpasswd",
        crate::tools::p(htpasswd.path()),
    ])
}
