//! A real OCI registry (Debian's `docker-registry`, distribution 2.8) on a free loopback port,
//! with its own config, storage and log in a temporary directory: plain HTTP, HTTP with
//! htpasswd basic auth, or HTTPS with a certificate from a CA made for the test. The system
//! `docker-registry` service the package may start (port 5000, all interfaces) is never used.
//! `scripts/test` installs the registry and `htpasswd`.
//!
//! What distribution 2.8 does that a client may not expect: a manifest stored as OCI is
//! answered 404 MANIFEST_UNKNOWN unless the request's Accept lists the OCI media type; blob GETs
//! honour `Range` (206); a mount POST answers 201 only when `from=` names a repository that holds
//! the blob, and otherwise falls back to an upload session (202); there is no referrers endpoint
//! (404 with a plain-text body, not an OCI error).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::tools::{cmd, sh};

mod certs;

use certs::certificates;

const REGISTRY: &str = "/usr/bin/docker-registry";
/// The readiness probe's User-Agent: its requests are left out of `requests()`, so a test sees
/// only the requests it caused.
const PROBE_AGENT: &str = "hyperd-test-probe";
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running registry, killed (and waited for) on drop.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    port: u16,
    creds: Option<(String, String)>,
    /// The CA that signed the server certificate, for the TLS variant.
    ca_pem: Option<String>,
    child: Child,
}

/// One request, from the registry's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path and query as sent, e.g. `/v2/repo/blobs/uploads/?mount=sha256:…&from=other`.
    pub uri: String,
    pub status: u16,
    pub user_agent: String,
}

/// A point in the registry's log: `requests_since` returns the requests logged after it. The
/// access log line is written before the response is finished, so a mark taken after a client
/// has its answer comes after that request.
#[derive(Debug, Clone, Copy)]
pub struct Mark(usize);

impl TestRegistry {
    /// Plain HTTP, anonymous pushes and pulls.
    pub fn plain() -> Self {
        Self::start(temp_dir(), None, false)
    }

    /// Plain HTTP, storage and log under `parent`: a benchmark measures the disk it is given.
    pub fn plain_in(parent: &Path) -> Self {
        Self::start(tempfile::tempdir_in(parent).expect("temp dir"), None, false)
    }

    /// Plain HTTP, every request needing basic auth as `user:pass` (realm `test`).
    pub fn with_auth(user: &str, pass: &str) -> Self {
        Self::start(temp_dir(), Some((user.to_owned(), pass.to_owned())), false)
    }

    /// HTTPS with a server certificate for IP 127.0.0.1 and DNS localhost, signed by a CA made
    /// for this registry (`ca_pem()`); clients trust it only when told to (`certs_d()`).
    pub fn with_tls() -> Self {
        Self::start(temp_dir(), None, true)
    }

    /// As [`TestRegistry::with_tls`], answering every request with a bearer challenge whose
    /// token realm is `realm` (it never accepts a token: the test is what a client sends where).
    pub fn with_tls_and_realm(realm: &str) -> Self {
        Self::start(temp_dir(), Some((String::new(), realm.to_owned())), true)
    }

    /// `creds` is a user and password for htpasswd, or an empty user and a token realm.
    fn start(dir: tempfile::TempDir, creds: Option<(String, String)>, tls: bool) -> Self {
        let mut http_tls = String::new();
        let mut auth = String::new();
        let token_realm = creds.as_ref().filter(|(u, _)| u.is_empty()).cloned();
        let creds = creds.filter(|(u, _)| !u.is_empty());
        if let Some((user, pass)) = &creds {
            // Distribution accepts only bcrypt entries.
            let entry = sh(&mut cmd("htpasswd", &["-Bbn", user, pass]));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, entry).unwrap();
            auth = format!("auth: {{htpasswd: {{realm: test, path: {file:?}}}}}\n");
        }
        let ca_pem = tls.then(|| {
            let (ca, cert, key) = certificates();
            let (c, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::write(&c, cert).unwrap();
            std::fs::write(&k, key).unwrap();
            http_tls = format!(", tls: {{certificate: {c:?}, key: {k:?}}}");
            if let Some((_, realm)) = &token_realm {
                // Distribution wants certificates to check tokens with: any will do.
                let bundle = dir.path().join("token-ca.crt");
                std::fs::write(&bundle, &ca).unwrap();
                auth = format!(
                    "auth: {{token: {{realm: {realm:?}, service: hyperd-test, \
                     issuer: hyperd-test, rootcertbundle: {bundle:?}}}}}\n"
                );
            }
            ca
        });
        // Another process may take the port between our probe and the registry's bind: retry.
        for _ in 0..10 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log: {{level: info, accesslog: {{disabled: false}}}}\n\
                     storage: {{filesystem: {{rootdirectory: {:?}}}, delete: {{enabled: true}}}}\n\
                     http: {{addr: \"127.0.0.1:{port}\", secret: hyperd-test{http_tls}}}\n{auth}",
                    dir.path().join("data"),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let mut child = Command::new(REGISTRY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {REGISTRY}: {e} (scripts/test installs it)"));
            if wait_ready(&mut child, dir.path(), port, tls) {
                let reg = TestRegistry {
                    dir,
                    port,
                    creds,
                    ca_pem,
                    child,
                };
                if let Some(ca) = &reg.ca_pem {
                    write_certs_d(&reg.certs_d(), &reg.host(), ca);
                }
                return reg;
            }
        }
        panic!("docker-registry found no free port in 10 tries");
    }

    /// `127.0.0.1:PORT`, as image references and credentials name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` or, for the TLS variant, `https://…`.
    pub fn base_url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host())
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG`, the skopeo reference for `repo_tag`.
    pub fn docker_ref(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.host())
    }

    /// The user and password of the auth variant.
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The PEM of the CA that signed the TLS variant's certificate.
    pub fn ca_pem(&self) -> &str {
        self.ca_pem
            .as_deref()
            .expect("ca_pem() is for TestRegistry::with_tls()")
    }

    /// A directory in docker's `certs.d` layout trusting this registry: `<dir>/<host>/ca.crt`
    /// (written for the TLS variant only).
    pub fn certs_d(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    /// The directory holding `ca.crt` alone, as skopeo's `--cert-dir` takes it.
    pub fn cert_dir(&self) -> PathBuf {
        self.certs_d().join(self.host())
    }

    /// The registry's storage root.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the filesystem driver keeps the bytes of blob `digest` (`sha256:HEX` or `HEX`):
    /// rewrite it to serve corrupt content. The registry does not verify what it reads back.
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        assert!(
            hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a sha256 digest: {digest}"
        );
        self.data_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Everything the registry logged: logrus lines (`time=… level=info msg="response
    /// completed" … http.request.method=GET http.request.uri=/v2/ … http.response.status=200`)
    /// and access lines in Apache combined format.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log_bytes()).into_owned()
    }

    fn log_bytes(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The end of the log so far.
    pub fn mark(&self) -> Mark {
        Mark(self.log_bytes().len())
    }

    /// Every request the registry answered since it started, the readiness probe's excepted.
    pub fn requests(&self) -> Vec<Request> {
        self.requests_since(Mark(0))
    }

    /// The requests logged after `mark`.
    pub fn requests_since(&self, mark: Mark) -> Vec<Request> {
        let log = self.log_bytes();
        String::from_utf8_lossy(log.get(mark.0..).unwrap_or_default())
            .lines()
            .filter_map(parse_access_line)
            .filter(|r| r.user_agent != PROBE_AGENT)
            .collect()
    }

    /// How many `method` requests had a URI containing `uri_contains`.
    pub fn count(&self, method: &str, uri_contains: &str) -> usize {
        self.count_since(Mark(0), method, uri_contains)
    }

    pub fn count_since(&self, mark: Mark, method: &str, uri_contains: &str) -> usize {
        self.requests_since(mark)
            .iter()
            .filter(|r| r.method == method && r.uri.contains(uri_contains))
            .count()
    }

    /// skopeo's flags for reaching this registry, each prefixed with `prefix`: `"src-"` or
    /// `"dest-"` for `copy`, `""` for `inspect`. Plain HTTP needs `tls-verify=false` (skopeo does
    /// not treat loopback as insecure); TLS needs the CA's directory; auth needs the creds.
    pub fn skopeo_args(&self, prefix: &str) -> Vec<String> {
        let mut args = Vec::new();
        if self.ca_pem.is_some() {
            args.push(format!("--{prefix}cert-dir={}", self.cert_dir().display()));
        } else {
            args.push(format!("--{prefix}tls-verify=false"));
        }
        if let Some((user, pass)) = self.creds() {
            args.push(format!("--{prefix}creds={user}:{pass}"));
        }
        args
    }

    /// `skopeo copy SOURCE docker://HOST/REPO:TAG`. A blob skopeo's blob-info cache has seen in
    /// another repository of this registry is mounted from there (POST `?mount=…&from=…`, 201)
    /// rather than uploaded: count uploads with that in mind.
    pub fn skopeo_copy_to(&self, source: &str, repo_tag: &str) {
        sh(Command::new("skopeo")
            .args(["copy", "-q"])
            .args(self.skopeo_args("dest-"))
            .args([source, &self.docker_ref(repo_tag)]));
    }

    /// `skopeo copy docker://HOST/REPO:TAG DEST`.
    pub fn skopeo_copy_from(&self, repo_tag: &str, dest: &str) {
        let out = self.skopeo_try_copy_from(repo_tag, dest);
        assert!(
            out.status.success(),
            "skopeo copy from {repo_tag} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `skopeo copy docker://HOST/REPO:TAG DEST`, whatever its outcome.
    pub fn skopeo_try_copy_from(&self, repo_tag: &str, dest: &str) -> Output {
        Command::new("skopeo")
            .args(["copy", "-q"])
            .args(self.skopeo_args("src-"))
            .args([&self.docker_ref(repo_tag), dest])
            .output()
            .expect("running skopeo (scripts/test installs it)")
    }

    /// The manifest exactly as the registry serves it (`skopeo inspect --raw`).
    pub fn skopeo_inspect_raw(&self, repo_tag: &str) -> String {
        sh(Command::new("skopeo")
            .args(["inspect", "--raw"])
            .args(self.skopeo_args(""))
            .arg(self.docker_ref(repo_tag)))
    }

    /// `sha256:HEX` of the raw manifest: the digest the registry stores it under.
    pub fn skopeo_digest(&self, repo_tag: &str) -> String {
        let raw = self.skopeo_inspect_raw(repo_tag);
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw.as_bytes()))
        )
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A port the kernel just had free. The listener is dropped before the registry binds, hence
/// the caller's retry.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// Waits for the registry to answer. False when the port was taken (the registry has exited);
/// panics with the log on any other exit, or after `READY_TIMEOUT`.
fn wait_ready(child: &mut Child, dir: &Path, port: u16, tls: bool) -> bool {
    let log = || std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("polling docker-registry") {
            let log = log();
            if log.contains("address already in use") {
                return false;
            }
            panic!("docker-registry exited with {status} before it was ready; its log:\n{log}");
        }
        // distribution logs "listening on ADDR" once bound. Over TLS, that line is the signal,
        // so that no handshake-less probe fills the log with handshake errors.
        let ready = if tls {
            log().contains(&format!("listening on 127.0.0.1:{port}"))
        } else {
            matches!(probe(port), Some(200 | 401))
        };
        if ready {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "docker-registry on port {port} not ready within {READY_TIMEOUT:?}; its log:\n{}",
        log()
    );
}

/// The status of `GET /v2/` over plain HTTP, if the registry answers.
fn probe(port: u16) -> Option<u16> {
    let addr = ([127, 0, 0, 1], port).into();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let req = format!(
        "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: {PROBE_AGENT}\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    // A timeout after the status line still leaves the status to read.
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    resp.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// One access log line (gorilla's combined format), e.g.
/// `127.0.0.1 - - [01/Dec/2026:08:23:37 +0000] "GET /v2/a/manifests/v1 HTTP/1.1" 200 345 "" "skopeo/1.9.3"`.
/// None for anything else (logrus lines, Go's own `http: TLS handshake error` lines).
fn parse_access_line(line: &str) -> Option<Request> {
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let (method, rest_of_request) = request.split_once(' ')?;
    let (uri, proto) = rest_of_request.rsplit_once(' ')?;
    if !proto.starts_with("HTTP/") || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let status = rest.split(' ').next()?.parse().ok()?;
    // The last quoted field is the User-Agent.
    let user_agent = rest.strip_suffix('"')?.rsplit_once('"')?.1;
    Some(Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
        status,
        user_agent: user_agent.to_owned(),
    })
}

/// Writes `<dir>/config.json` with credentials for `host`, as docker (and `DOCKER_CONFIG=dir`)
/// reads them: `{"auths":{"HOST":{"auth":"base64(user:pass)"}}}`. Returns the file.
pub fn write_docker_config(dir: &Path, host: &str, user: &str, pass: &str) -> PathBuf {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let config = serde_json::json!({ "auths": { host: { "auth": auth } } });
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("config.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    file
}

/// Writes `ca_pem` as `<dir>/<host>/ca.crt`, docker's `certs.d` layout. Returns the host's
/// directory (what skopeo's `--cert-dir` takes).
pub fn write_certs_d(dir: &Path, host: &str, ca_pem: &str) -> PathBuf {
    let host_dir = dir.join(host);
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("ca.crt"), ca_pem).unwrap();
    host_dir
}
