//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, a page at a time (`n`, `last`), with a
//! `Link` to the next page when there is one. Each page is one range of the store's tags. The
//! catalog lists what a request can name: without `ns`, no repository of a registry with a port.

use http::{HeaderValue, Response, header};
use store::MAX_PAGE;

use super::body::Body;
use super::error::Problem;
use super::handler::{Ask, json};
use super::names;
use super::route::next_page;

/// `n`: how many at most; without it a page of [`MAX_PAGE`], with a `Link` to the rest.
fn page_size(ask: &Ask<'_>) -> Result<usize, Problem> {
    match ask.query.n.as_deref() {
        None => Ok(MAX_PAGE),
        Some(n) => n
            .parse::<usize>()
            .map(|n| n.min(MAX_PAGE))
            .map_err(|_| Problem::pagination_invalid(n)),
    }
}

pub(super) fn tags(ask: &Ask<'_>, name: &str) -> Result<Response<Body>, Problem> {
    let repository = ask.known_repository(name)?;
    let n = page_size(ask)?;
    let page = ask
        .store
        .images()
        .tags_page(&repository, ask.query.last.as_deref(), n)?;
    let body = serde_json::json!({"name": name, "tags": page.names});
    let next = page.names.last().filter(|_| page.more);
    let link = next.map(|last| {
        format!(
            "/v2/{name}/tags/list?{}",
            next_page(n, last, ask.query.ns.as_deref())
        )
    });
    Ok(with_link(
        json(ask, "application/json", to_vec(&body)),
        link,
    ))
}

pub(super) fn catalog(ask: &Ask<'_>) -> Result<Response<Body>, Problem> {
    let registry = match ask.query.ns.as_deref() {
        Some(ns) => Some(names::registry_of(ns).map_err(|e| Problem::name_invalid(e.0))?),
        None => None,
    };
    let n = page_size(ask)?;
    // `last` is as the client saw it: under `ns`, relative to its registry.
    let last = ask.query.last.as_deref().map(|l| match &registry {
        Some(r) => format!("{r}/{l}"),
        None => l.to_owned(),
    });
    // Without `ns`, only what a path can name: a path's name has no port.
    let listed = |host: &str| registry.is_some() || names::reachable_without_ns(host);
    let page =
        ask.store
            .images()
            .repositories_page(registry.as_deref(), last.as_deref(), n, listed)?;
    let shown: Vec<String> = page
        .names
        .iter()
        .map(|r| names::shown(r, registry.as_deref()))
        .collect();
    let next = shown.last().filter(|_| page.more);
    let link = next.map(|last| {
        format!(
            "/v2/_catalog?{}",
            next_page(n, last, ask.query.ns.as_deref())
        )
    });
    let body = serde_json::json!({"repositories": shown});
    Ok(with_link(
        json(ask, "application/json", to_vec(&body)),
        link,
    ))
}

fn to_vec(body: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(body).expect("a listing serialises")
}

/// The spec's `Link: <URL>; rel="next"`.
fn with_link(mut response: Response<Body>, next: Option<String>) -> Response<Body> {
    if let Some(url) = next
        && let Ok(value) = HeaderValue::from_str(&format!("<{url}>; rel=\"next\""))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}
