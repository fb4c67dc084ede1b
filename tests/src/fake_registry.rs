//! A fake OCI registry on loopback that misbehaves on demand, as no real registry can be made
//! to: it serves manifests and blobs from memory, gives any path a [`Fault`], and records every
//! request so that tests can count attempts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{StreamExt, stream};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::fixtures::{Image, sha};

type Body = UnsyncBoxBody<Bytes, Infallible>;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// How one path misbehaves.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Sends the first `n` bytes of the body, then nothing more, the connection kept open.
    StallAfter(usize),
    /// Promises the whole body in Content-Length, sends its first `n` bytes, then closes.
    TruncateAt(usize),
    /// Sends these bytes with their length in place of the content, under the content's headers
    /// (its digest, its media type), as a registry with a corrupted store would.
    Body(Vec<u8>),
    /// As `Body`, but chunked: no Content-Length tells the client how much is coming.
    Chunked(Vec<u8>),
    /// Answers 307 with this `Location`.
    Redirect(String),
    /// Answers 503 this many times, then serves the content.
    Unavailable(usize),
    /// Answers this status, always.
    Status(u16),
    /// Answers this status with this body, always.
    Refuse(u16, Vec<u8>),
    /// Answers this status with `bytes` bytes of `x`, made as they are sent (never held
    /// whole), with their Content-Length when `announced`, else chunked.
    Huge {
        status: u16,
        bytes: u64,
        announced: bool,
    },
}

#[derive(Default)]
struct State {
    /// Path → (bytes, Content-Type).
    content: HashMap<String, (Bytes, String)>,
    faults: HashMap<String, Fault>,
    /// Path → the `Link` header its answer carries (a referrers listing's next page).
    links: HashMap<String, String>,
    /// (method, path) of every request, in order.
    requests: Vec<(String, String)>,
    /// The paths of the requests that carried an `Authorization` header, with it.
    authorized: Vec<(String, String)>,
    /// What `/v2/` answers a 401 with in `WWW-Authenticate`; none answers 200.
    challenge: Option<String>,
}

/// The registry, served by a runtime of its own until dropped.
pub struct FakeRegistry {
    port: u16,
    state: Arc<Mutex<State>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeRegistry {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the fake registry");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binding the fake registry");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let state = shared.clone();
                let service = hyper::service::service_fn(move |req| {
                    std::future::ready(Ok::<_, Infallible>(answer(&state, &req)))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service),
                );
            }
        });
        FakeRegistry {
            port,
            state,
            runtime: Some(runtime),
        }
    }

    /// `127.0.0.1:<port>`, as a reference names the registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    pub fn manifest_path(repo: &str, reference: &str) -> String {
        format!("/v2/{repo}/manifests/{reference}")
    }

    pub fn blob_path(repo: &str, digest: &str) -> String {
        format!("/v2/{repo}/blobs/{digest}")
    }

    /// Serves `image` as `repo:tag` and by its digest, with its config and layers.
    pub fn put_image(&self, repo: &str, tag: &str, image: &Image) {
        self.put_manifest(repo, tag, &image.manifest);
        self.put_manifest(repo, &sha(&image.manifest), &image.manifest);
        self.put_blob(repo, &image.config);
        for (layer, _) in &image.layers {
            self.put_blob(repo, layer);
        }
    }

    /// Serves `bytes` under `repo:reference` with the media type they declare.
    pub fn put_manifest(&self, repo: &str, reference: &str, bytes: &[u8]) {
        let json: serde_json::Value = serde_json::from_slice(bytes).expect("a JSON manifest");
        let media_type = json["mediaType"].as_str().expect("a mediaType").to_owned();
        let path = Self::manifest_path(repo, reference);
        self.state()
            .content
            .insert(path, (bytes.to_vec().into(), media_type));
    }

    pub fn put_blob(&self, repo: &str, bytes: &[u8]) {
        let path = Self::blob_path(repo, &sha(bytes));
        let content = (bytes.to_vec().into(), "application/octet-stream".to_owned());
        self.state().content.insert(path, content);
    }

    /// Serves the referrers API's listing of `subject` in `pages` (each a list of descriptors),
    /// linked by `Link: <…>; rel="next"` headers as distribution's spec pages them.
    pub fn put_referrers(&self, repo: &str, subject: &str, pages: &[Vec<serde_json::Value>]) {
        let first = format!("/v2/{repo}/referrers/{subject}");
        let path = |i: usize| match i {
            0 => first.clone(),
            i => format!("{first}?page={i}"),
        };
        let mut state = self.state();
        for (i, manifests) in pages.iter().enumerate() {
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": manifests,
            });
            let content = (Bytes::from(index.to_string()), OCI_INDEX.to_owned());
            state.content.insert(path(i), content);
            if i + 1 < pages.len() {
                let link = format!("<{}>; rel=\"next\"", path(i + 1));
                state.links.insert(path(i), link);
            }
        }
    }

    /// Serves `bytes` as they are under `path` (its query ignored), as `content_type`.
    pub fn put_raw(&self, path: &str, bytes: &[u8], content_type: &str) {
        let content = (bytes.to_vec().into(), content_type.to_owned());
        self.state().content.insert(path.to_owned(), content);
    }

    /// Makes `/v2/` answer 401 with this `WWW-Authenticate` challenge.
    pub fn challenge(&self, header: &str) {
        self.state().challenge = Some(header.to_owned());
    }

    /// (path, `Authorization` header) of every request that carried a credential.
    pub fn authorized(&self) -> Vec<(String, String)> {
        self.state().authorized.clone()
    }

    /// A fault for `path`; one without a query applies to that path whatever its query.
    pub fn fault(&self, path: &str, fault: Fault) {
        self.state().faults.insert(path.to_owned(), fault);
    }

    /// (method, path) of every request so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state().requests.clone()
    }

    /// How many `method` requests went to exactly `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        let state = self.state();
        state
            .requests
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("fake registry state")
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        // Stalled responses would otherwise keep their connections, and the runtime, alive.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn answer(state: &Mutex<State>, req: &Request<Incoming>) -> Response<Body> {
    let path = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path(), |p| p.as_str())
        .to_owned();
    let mut state = state.lock().expect("fake registry state");
    state
        .requests
        .push((req.method().to_string(), path.clone()));
    if let Some(auth) = req.headers().get(hyper::header::AUTHORIZATION) {
        let auth = String::from_utf8_lossy(auth.as_bytes()).into_owned();
        state.authorized.push((path.clone(), auth));
    }
    if path == "/v2/" {
        return version_check(state.challenge.as_deref());
    }
    let bare = req.uri().path();
    let fault = state.faults.get(&path).or(state.faults.get(bare)).cloned();
    if let Some(Fault::Unavailable(n)) = fault
        && n > 0
    {
        state.faults.insert(path.clone(), Fault::Unavailable(n - 1));
        return refusal(503);
    }
    if let Some(resp) = fault.clone().and_then(instead) {
        return resp;
    }
    let held = state.content.get(&path).or(state.content.get(bare));
    let Some((content, media_type)) = held.cloned() else {
        return refusal(404);
    };
    let digest = sha(&content);
    let len = content.len();
    let (body, length) = match fault {
        Some(Fault::StallAfter(n)) => {
            let sent = stream::iter([content.slice(..n)]);
            (streamed(sent.chain(stream::pending())), Some(len))
        }
        Some(Fault::TruncateAt(n)) => {
            // A pause before the end, so that hyper flushes what was sent before it gives up on
            // the body and closes the connection.
            let pause = tokio::time::sleep(Duration::from_millis(20));
            let end = stream::once(pause).filter_map(|()| std::future::ready(None));
            (
                streamed(stream::iter([content.slice(..n)]).chain(end)),
                Some(len),
            )
        }
        Some(Fault::Body(bytes)) => (whole(bytes.clone().into()), Some(bytes.len())),
        Some(Fault::Chunked(bytes)) => {
            let chunks: Vec<Bytes> = bytes.chunks(64 << 10).map(Bytes::copy_from_slice).collect();
            (streamed(stream::iter(chunks)), None)
        }
        _ => (whole(content), Some(len)),
    };
    // As distribution does, a range from 0 (what oci-client asks for a blob) gets a 206.
    let ranged = req.headers().contains_key(RANGE) && length.is_some();
    let status = if ranged {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut resp = reply(status, length, body);
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, media_type.parse().unwrap());
    headers.insert("docker-content-digest", digest.parse().unwrap());
    if let Some(link) = state.links.get(&path) {
        headers.insert(hyper::header::LINK, link.parse().unwrap());
    }
    if let (true, Some(n)) = (ranged, length) {
        let range = format!("bytes 0-{}/{n}", n.saturating_sub(1));
        headers.insert(CONTENT_RANGE, range.parse().unwrap());
    }
    resp
}

/// What a fault answers in place of the content, if it replaces it whole.
fn instead(fault: Fault) -> Option<Response<Body>> {
    Some(match fault {
        Fault::Status(code) => refusal(code),
        Fault::Refuse(code, body) => {
            let status = StatusCode::from_u16(code).expect("an HTTP status");
            reply(status, Some(body.len()), whole(body.into()))
        }
        Fault::Huge {
            status,
            bytes,
            announced,
        } => huge(status, bytes, announced),
        Fault::Redirect(to) => {
            let mut resp = reply(StatusCode::TEMPORARY_REDIRECT, Some(0), whole(Bytes::new()));
            resp.headers_mut().insert(LOCATION, to.parse().unwrap());
            resp
        }
        _ => return None,
    })
}

fn version_check(challenge: Option<&str>) -> Response<Body> {
    let Some(challenge) = challenge else {
        return reply(StatusCode::OK, Some(2), whole(b"{}".as_slice().into()));
    };
    let mut resp = refusal(401);
    let header = challenge.parse().expect("a header value");
    resp.headers_mut()
        .insert(hyper::header::WWW_AUTHENTICATE, header);
    resp
}

/// `bytes` bytes of `x` in 64 KiB pieces, each the same shared buffer.
fn huge(status: u16, bytes: u64, announced: bool) -> Response<Body> {
    const PIECE: u64 = 64 << 10;
    let piece = Bytes::from(vec![b'x'; PIECE as usize]);
    let (whole_pieces, rest) = (bytes / PIECE, (bytes % PIECE) as usize);
    let pieces = stream::repeat(piece.clone())
        .take(whole_pieces as usize)
        .chain(stream::iter((rest > 0).then(|| piece.slice(..rest))));
    let status = StatusCode::from_u16(status).expect("an HTTP status");
    let length = announced.then_some(bytes as usize);
    let mut resp = reply(status, length, streamed(pieces));
    resp.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().unwrap());
    resp
}

/// An error in distribution's JSON envelope; a 5xx as a proxy in front would send it, in text.
fn refusal(code: u16) -> Response<Body> {
    let status = StatusCode::from_u16(code).expect("an HTTP status");
    let (error, message) = match code {
        401 => ("UNAUTHORIZED", "authentication required"),
        403 => ("DENIED", "requested access to the resource is denied"),
        404 => ("NOT_FOUND", "not found"),
        _ => {
            let text = Bytes::from("try again later");
            return reply(status, Some(text.len()), whole(text));
        }
    };
    let envelope = serde_json::json!({"errors": [{"code": error, "message": message}]});
    let body = Bytes::from(envelope.to_string());
    let mut resp = reply(status, Some(body.len()), whole(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().unwrap());
    resp
}

fn reply(status: StatusCode, length: Option<usize>, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        "registry/2.0".parse().unwrap(),
    );
    if let Some(n) = length {
        resp.headers_mut().insert(CONTENT_LENGTH, n.into());
    }
    resp
}

fn whole(bytes: Bytes) -> Body {
    http_body_util::Full::new(bytes).boxed_unsync()
}

/// A body of unknown length to hyper, so that the Content-Length set by hand is what it sends.
fn streamed(chunks: impl futures_util::Stream<Item = Bytes> + Send + 'static) -> Body {
    StreamBody::new(chunks.map(|b| Ok(Frame::data(b)))).boxed_unsync()
}
