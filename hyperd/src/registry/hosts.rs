//! containerd's `hosts.toml`, as containerd 1.6 documents it (`docs/hosts.md`): the hosts that
//! serve a registry's images, in the order they are tried. Each `[host."URL"]` table comes in
//! the file's order, then the `server` (the registry's own endpoint; the registry itself when
//! the file names none). The file's top-level `capabilities`, `ca`, `skip_verify`, `header`
//! and `override_path` describe the server. Pure: the caller reads the file.
//!
//! A host's API root is its URL's path with `/v2` appended (unless the path ends in `/v2`, or
//! `override_path` says the path is the root itself). A host without `capabilities` may pull,
//! resolve (turn a tag into a digest) and push. Paths of `ca` files are relative to the file's
//! directory. Where containerd ignores what it does not know, hyperd refuses it by name: a
//! `client` certificate or a `proxy` it would not use is better said than silently dropped.

use std::path::{Path, PathBuf};

use http::{HeaderName, HeaderValue};
use reqwest::Url;
use serde::Deserialize;

use super::error::{Error, Result};

/// What a host may be asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Capabilities {
    /// Serve content by digest.
    pub(super) pull: bool,
    /// Say which digest a tag names: trusted, as the digest decides what is pulled.
    pub(super) resolve: bool,
    pub(super) push: bool,
}

impl Capabilities {
    pub(super) const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
}

/// How a host is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scheme {
    Https,
    Http,
    /// HTTPS, else plain HTTP where hyperd allows it (loopback, `--insecure-registry`): the
    /// registry itself when no file names its server, as hyperd reaches any registry.
    HttpsElseHttp,
}

/// One host of a registry: a mirror, or the registry's own server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Host {
    pub(super) scheme: Scheme,
    /// `host[:port]`.
    pub(super) authority: String,
    /// The API root on the host: `/v2` by default.
    pub(super) path: String,
    pub(super) capabilities: Capabilities,
    /// CA files trusted for this host, beside the system's and its `certs.d` directory's.
    pub(super) ca: Vec<PathBuf>,
    pub(super) skip_verify: bool,
    /// Sent with every request to the host.
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether a `hosts.toml` lists it. containerd never asks such a host's API root, so that
    /// root need not answer as a registry's does (a host with `override_path` often does not):
    /// hyperd's version check then only learns a challenge, where one comes.
    pub(super) listed: bool,
}

impl Host {
    /// The registry `authority` itself, as hyperd reaches a registry no file describes.
    pub(super) fn registry(authority: &str) -> Host {
        Host {
            scheme: Scheme::HttpsElseHttp,
            authority: authority.to_owned(),
            path: "/v2".to_owned(),
            capabilities: Capabilities::ALL,
            ca: Vec::new(),
            skip_verify: false,
            headers: Vec::new(),
            listed: false,
        }
    }
}

/// What one host's table (or the file's top level, for the server) may say.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Table {
    capabilities: Option<Vec<String>>,
    ca: Option<OneOrMany>,
    skip_verify: Option<bool>,
    header: Option<toml::Table>,
    #[serde(default)]
    override_path: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The hosts of `file`'s text, mirrors first in the file's order, the server last;
/// `registry` is the server when the file names none.
pub(super) fn parse(text: &str, file: &Path, registry: &str) -> Result<Vec<Host>> {
    let bad = |why: String| Error::InvalidArgument(format!("{}: {why}", file.display()));
    let mut top: toml::Table = toml::from_str(text).map_err(|e| bad(located(text, &e)))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let server = match top.remove("server") {
        None => None,
        Some(toml::Value::String(s)) => Some(s),
        Some(other) => return Err(bad(format!("server is a {}, not a URL", other.type_str()))),
    };
    let tables = match top.remove("host") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            return Err(bad(
                "host is not a table of [host.\"URL\"] tables".to_owned()
            ));
        }
    };
    let mut hosts = Vec::new();
    for (url, table) in tables {
        let in_table = |why: String| bad(format!("[host.{url:?}]: {why}"));
        let table: Table = table.try_into().map_err(|e| in_table(message(&e)))?;
        hosts.push(host(Some(&url), table, dir).map_err(in_table)?);
    }
    let root: Table = toml::Value::Table(top)
        .try_into()
        .map_err(|e| bad(message(&e)))?;
    let mut last =
        host(server.as_deref(), root, dir).map_err(|why| bad(format!("server: {why}")))?;
    if server.is_none() {
        // containerd's rule: the registry itself, when it is the server, may do everything.
        last = Host {
            ca: last.ca,
            skip_verify: last.skip_verify,
            headers: last.headers,
            listed: true,
            ..Host::registry(registry)
        };
    }
    hosts.push(last);
    Ok(hosts)
}

/// A host from its URL (`None` for the registry itself, filled in by the caller) and table.
fn host(url: Option<&str>, table: Table, dir: &Path) -> std::result::Result<Host, String> {
    let (scheme, authority, path) = match url {
        Some(url) => locate(url, table.override_path)?,
        None => (Scheme::HttpsElseHttp, String::new(), "/v2".to_owned()),
    };
    let capabilities = match table.capabilities {
        Some(names) if !names.is_empty() => capabilities(&names)?,
        _ => Capabilities::ALL,
    };
    let ca = table.ca.map(OneOrMany::into_vec).unwrap_or_default();
    let ca = ca.into_iter().map(|p| dir.join(p)).collect();
    let mut headers = Vec::new();
    for (name, values) in table.header.unwrap_or_default() {
        let values = OneOrMany::deserialize(values)
            .map_err(|_| format!("header {name} is neither a string nor a list of strings"))?;
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        for v in values.into_vec() {
            let value = HeaderValue::from_str(&v)
                .map_err(|_| format!("header {name}: {v:?} is not a header value"))?;
            headers.push((name.clone(), value));
        }
    }
    Ok(Host {
        scheme,
        authority,
        path,
        capabilities,
        ca,
        skip_verify: table.skip_verify.unwrap_or(false),
        headers,
        listed: true,
    })
}

/// A host URL's scheme, `host[:port]` and API root. Without a scheme it is HTTPS.
fn locate(url: &str, override_path: bool) -> std::result::Result<(Scheme, String, String), String> {
    let full = match url.contains("://") {
        true => url.to_owned(),
        false => format!("https://{url}"),
    };
    let parsed = Url::parse(&full).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = match parsed.scheme() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        other => return Err(format!("{url:?}: scheme {other:?}, not http or https")),
    };
    let name = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{url:?} names no host"))?;
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(format!(
            "{url:?}: a host is a scheme, a host and a path, nothing else"
        ));
    }
    let authority = match parsed.port() {
        Some(port) => format!("{name}:{port}"),
        None => name.to_owned(),
    };
    let path = parsed.path().trim_end_matches('/');
    let path = match (path.is_empty(), override_path || path.ends_with("/v2")) {
        (true, true) => String::new(),
        (true, false) => "/v2".to_owned(),
        (false, true) => path.to_owned(),
        (false, false) => format!("{path}/v2"),
    };
    Ok((scheme, authority, path))
}

fn capabilities(names: &[String]) -> std::result::Result<Capabilities, String> {
    let mut c = Capabilities {
        pull: false,
        resolve: false,
        push: false,
    };
    for name in names {
        match name.to_ascii_lowercase().as_str() {
            "pull" => c.pull = true,
            "resolve" => c.resolve = true,
            "push" => c.push = true,
            _ => return Err(format!("unknown capability {name:?} (pull, resolve, push)")),
        }
    }
    Ok(c)
}

/// A parse error on one line: where it is, and what.
fn located(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", message(e))
        }
        None => message(e),
    }
}

fn message(e: &toml::de::Error) -> String {
    e.message().trim().replace('\n', " ")
}

#[cfg(test)]
mod tests;
