//! One request to one answer: the method, the route, the name, then the endpoint's module.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;

use store::Store;

use super::auth::{Htpasswd, Verdict};
use super::body::{Body, full};
use super::error::Problem;
use super::names;
use super::pushed::Push;
use super::route::{self, Route};
use super::{blobs, listing, manifest_push, manifests, referrers, through, uploads};
use crate::registry::PullThrough;

/// Why a repository may see a digest.
#[derive(Debug)]
pub(super) enum Sight {
    /// An image tagged there uses it (that image's top-level digest).
    Image(store::Digest),
    /// It was pushed there, or pulled through for it.
    Other,
}

/// What every endpoint module is handed.
pub(super) struct Ask<'a> {
    pub(super) store: &'a Store,
    pub(super) through: Option<&'a PullThrough>,
    pub(super) push: Option<&'a Push>,
    /// `host:port` of this endpoint's own addresses, never pulled through.
    pub(super) own_hosts: &'a [String],
    pub(super) head: bool,
    pub(super) headers: &'a http::HeaderMap,
    pub(super) query: route::Query,
}

impl Ask<'_> {
    /// The store's repository for the request's `name`.
    pub(super) fn repository(&self, name: &str) -> Result<String, Problem> {
        names::repository(name, self.query.ns.as_deref()).map_err(|e| Problem::name_invalid(e.0))
    }

    /// Whether an image tagged in `repository` uses `digest`, it was pushed there, or (with
    /// pull-through) an image pulled from it by digest uses it.
    pub(super) async fn may_see(
        &self,
        repository: &str,
        digest: &store::Digest,
    ) -> Result<bool, Problem> {
        Ok(self.sight(repository, digest).await?.is_some())
    }

    /// Why `repository` may see `digest`, if it may: the image tagged there that uses it (a few
    /// keyed reads from the blob up, off the async threads), else a push or a pull-through.
    pub(super) async fn sight(
        &self,
        repository: &str,
        digest: &store::Digest,
    ) -> Result<Option<Sight>, Problem> {
        let (store, r, d) = (self.store.clone(), repository.to_owned(), digest.clone());
        let image = tokio::task::spawn_blocking(move || store.images().seen_through(&r, &d))
            .await
            .expect("a registry lookup panicked")?;
        if let Some(image) = image {
            return Ok(Some(Sight::Image(image)));
        }
        let other = self.push.is_some_and(|p| p.has(repository, digest))
            || self
                .through
                .is_some_and(|t| through::pulled_uses(self, t, repository, digest));
        Ok(other.then_some(Sight::Other))
    }

    /// The repository a manifest or blob is looked up in: any, with pull-through (what is not
    /// stored yet may be pulled), else only one the store holds a tag of.
    pub(super) fn serving_repository(&self, name: &str) -> Result<String, Problem> {
        match self.through {
            Some(_) => self.repository(name),
            None => self.known_repository(name),
        }
    }

    /// As [`Ask::repository`], and NAME_UNKNOWN when the store holds no tag of it (and nothing
    /// was pushed under it).
    pub(super) fn known_repository(&self, name: &str) -> Result<String, Problem> {
        let repository = self.repository(name)?;
        if self.push.is_some_and(|p| p.has_repository(&repository))
            || self.store.images().has_repository(&repository)?
        {
            return Ok(repository);
        }
        Err(Problem::name_unknown(name))
    }
}

/// What answers requests: the store, and who may ask.
#[derive(Clone)]
pub(super) struct Endpoint {
    pub(super) store: Store,
    pub(super) auth: Option<Arc<Htpasswd>>,
    pub(super) through: Option<Arc<PullThrough>>,
    pub(super) push: Option<Arc<Push>>,
    pub(super) own_hosts: Arc<Vec<String>>,
}

pub(super) async fn handle(endpoint: &Endpoint, request: Request<Incoming>) -> Response<Body> {
    let (request, body) = request.into_parts();
    let head = request.method == Method::HEAD;
    let authorization = request.headers.get(header::AUTHORIZATION);
    let verdict = match &endpoint.auth {
        None => None,
        Some(auth) => Some(auth.admits(authorization.map(HeaderValue::as_bytes)).await),
    };
    let answered = match verdict {
        None => answer(endpoint, &request, None, body).await,
        Some(Verdict::User(user)) => answer(endpoint, &request, Some(&user), body).await,
        Some(Verdict::Denied) => Err(Problem::unauthorized()),
        Some(Verdict::Busy) => Err(Problem::too_many_requests()),
    };
    let mut response = match answered {
        Ok(response) => response,
        Err(problem) => problem.into_response(head),
    };
    tracing::debug!(
        method = %request.method,
        path = request.uri.path(),
        status = response.status().as_u16(),
        "registry request"
    );
    response.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn answer(
    endpoint: &Endpoint,
    request: &http::request::Parts,
    user: Option<&str>,
    body: Incoming,
) -> Result<Response<Body>, Problem> {
    let method = &request.method;
    let path = request.uri.path();
    let route = route::route(path).ok_or_else(|| Problem::no_route(path))?;
    let ask = Ask {
        store: &endpoint.store,
        through: endpoint.through.as_deref(),
        push: endpoint.push.as_deref(),
        own_hosts: &endpoint.own_hosts,
        head: method == Method::HEAD,
        headers: &request.headers,
        query: route::query(request.uri.query()),
    };
    if *method == Method::GET || *method == Method::HEAD {
        return read(&ask, route).await;
    }
    let Some(push) = endpoint.push.as_deref() else {
        return Err(Problem::read_only(method));
    };
    if !push.may_push(user) {
        return Err(Problem::denied(user.unwrap_or_default()));
    }
    match (route, method.as_str()) {
        (Route::Uploads { name }, "POST") => uploads::start(&ask, push, name, body).await,
        (Route::Upload { name, id }, "PATCH") => uploads::append(&ask, push, name, id, body).await,
        (Route::Upload { name, id }, "PUT") => uploads::end(&ask, push, name, id, body).await,
        (Route::Upload { name, id }, "DELETE") => uploads::cancel(&ask, name, id),
        (Route::Manifest { name, reference }, "PUT") => {
            manifest_push::put(&ask, push, user, name, reference, body).await
        }
        _ => Err(Problem::method_not_allowed(method)),
    }
}

/// The read side: `GET` and `HEAD`.
async fn read(ask: &Ask<'_>, route: Route<'_>) -> Result<Response<Body>, Problem> {
    match route {
        Route::Base => Ok(base()),
        Route::Catalog => listing::catalog(ask),
        Route::Tags { name } => listing::tags(ask, name),
        Route::Manifest { name, reference } => manifests::get(ask, name, reference).await,
        Route::Blob { name, digest } => blobs::get(ask, name, digest).await,
        Route::Referrers { name, digest } => referrers::get(ask, name, digest).await,
        Route::Uploads { .. } => Err(Problem::method_not_allowed(&Method::GET)),
        Route::Upload { name, id } => match ask.push {
            Some(_) => uploads::status(ask, name, id),
            None => Err(Problem::read_only(&Method::GET)),
        },
    }
}

/// `/v2/`: an empty JSON object, as distribution answers.
fn base() -> Response<Body> {
    let mut response = Response::new(full(&b"{}"[..]));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, 2.into());
    response
}

/// A JSON answer (a listing, a referrers index) of `media_type`, with its length.
pub(super) fn json(ask: &Ask<'_>, media_type: &'static str, bytes: Vec<u8>) -> Response<Body> {
    let len = bytes.len();
    let mut response = Response::new(full(if ask.head { Vec::new() } else { bytes }));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(header::CONTENT_LENGTH, len.into());
    response
}

/// A request's digest: sha256 only, the one algorithm the store names blobs by. DIGEST_INVALID
/// when it does not parse; `unknown` (the endpoint's "not here") for another algorithm.
pub(super) fn digest(
    raw: &str,
    unknown: impl FnOnce(&str) -> Problem,
) -> Result<store::Digest, Problem> {
    let Some((algorithm, hex)) = raw.split_once(':') else {
        return Err(Problem::digest_invalid(raw));
    };
    let lower_alnum = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
    };
    if algorithm != "sha256" {
        return match lower_alnum(algorithm) && lower_alnum(hex) {
            true => Err(unknown(raw)),
            false => Err(Problem::digest_invalid(raw)),
        };
    }
    store::Digest::from_hex(hex).map_err(|_| Problem::digest_invalid(raw))
}
