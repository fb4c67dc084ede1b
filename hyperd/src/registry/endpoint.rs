//! How a registry, or one of its mirrors, is reached: HTTPS verified against the system's
//! roots plus the CAs in `<certs-dir>/<host[:port]>/` (and those its `hosts.toml` entry names),
//! or plain HTTP for a loopback or configured-insecure registry that does not answer HTTPS, or
//! a host `hosts.toml` names with `http://`. Which one is decided by asking the API root (`/v2/`,
//! the distribution spec's version check), once per request; a host `hosts.toml` lists may
//! answer it with any status (containerd never asks). A mirror is asked for the registry's
//! content with `?ns=REGISTRY` on each request, as containerd asks. CA files are read off the
//! async threads, each at most [`MAX_CA_FILE`] bytes of PEM certificates; one that is not is
//! the operator's mistake, failing the request with the file's name. A token realm is reached
//! as a registry no file describes, whatever `hosts.toml` says of the host that named it.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderMap;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::error::{Error, Result, chain};
use super::hosts::{Host, Scheme};

/// Largest CA file read: a bundle of every public root is about 220 KiB.
const MAX_CA_FILE: u64 = 1 << 20;

/// What an operator configures about registries.
#[derive(Clone, Debug)]
pub struct Config {
    /// docker's `certs.d` layout: `<dir>/<host[:port]>/*.crt` are CAs trusted for that registry
    /// (or mirror); `<dir>/<host[:port]>/hosts.toml` lists the registry's mirrors, in
    /// containerd's format (`hosts.rs`).
    pub certs_dir: PathBuf,
    /// `host[:port]` of registries that may be reached over plain HTTP, beside loopback ones.
    pub insecure: Vec<String>,
    /// How long a registry may keep a connection attempt or a read waiting.
    pub timeout: Duration,
}

/// A registry, reached.
pub(super) struct Endpoint {
    /// `host[:port]`, as requests name it (`index.docker.io` for docker.io).
    pub(super) host: String,
    /// `https://host` or `http://host`.
    pub(super) base: String,
    /// The API root: `base` and the host's path, `https://host/v2` unless `hosts.toml` says.
    api: String,
    /// The registry a mirror is asked for: `?ns=` on each request.
    ns: Option<String>,
    /// For manifests, tokens, uploads and the version check: no redirects, bodies read with a
    /// limit.
    pub(super) http: reqwest::Client,
    /// For blob downloads: follows redirects (blob storage often lives elsewhere), never from
    /// HTTPS down to plain HTTP.
    pub(super) blobs: reqwest::Client,
    /// The version check's answer: its `WWW-Authenticate` challenge, if it asked for one.
    pub(super) challenge: Option<String>,
}

/// Plain HTTP is allowed for loopback registries, as docker allows it, and those configured.
pub(super) fn allows_http(host: &str, insecure: &[String]) -> bool {
    if insecure.iter().any(|i| i == host) {
        return true;
    }
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Endpoint {
    /// Reaches `host`, asking it for `ns`'s content when it is a mirror of that registry.
    pub(super) async fn connect(
        config: &Config,
        host: &Host,
        ns: Option<&str>,
    ) -> Result<Endpoint> {
        let name = host.authority.as_str();
        let (dir, files) = (config.certs_dir.join(name), host.ca.clone());
        let certs = tokio::task::spawn_blocking(move || read_cas(&dir, &files))
            .await
            .map_err(|e| Error::unavailable(format!("reading the CAs for {name}: {e}")))??;
        let scheme = match host.scheme {
            Scheme::Http => "http",
            Scheme::Https | Scheme::HttpsElseHttp => "https",
        };
        let first = Self::build(config, host, scheme, &certs, ns)?;
        let first_err = match first.ping(host.listed).await {
            Ok(challenge) => return Ok(Endpoint { challenge, ..first }),
            Err(e) => e,
        };
        if host.scheme != Scheme::HttpsElseHttp
            || !allows_http(name, &config.insecure)
            || !matches!(first_err, Error::Unavailable { .. })
        {
            return Err(first_err);
        }
        let http = Self::build(config, host, "http", &certs, ns)?;
        match http.ping(host.listed).await {
            Ok(challenge) => {
                tracing::info!(registry = name, "registry answers plain HTTP only");
                Ok(Endpoint { challenge, ..http })
            }
            // The HTTPS failure is the one that explains: a certificate not trusted, say.
            Err(_) => Err(first_err),
        }
    }

    fn build(
        config: &Config,
        host: &Host,
        scheme: &str,
        roots: &[reqwest::Certificate],
        ns: Option<&str>,
    ) -> Result<Endpoint> {
        let name = host.authority.as_str();
        let headers: HeaderMap = host.headers.iter().cloned().collect();
        let client = |redirect| {
            let builder = reqwest::Client::builder()
                .tls_certs_merge(roots.to_vec())
                .danger_accept_invalid_certs(host.skip_verify)
                .default_headers(headers.clone())
                .redirect(redirect);
            build_client(config, builder, name)
        };
        let base = format!("{scheme}://{name}");
        Ok(Endpoint {
            host: name.to_owned(),
            api: format!("{base}{}", host.path),
            base,
            ns: ns.map(str::to_owned),
            http: client(reqwest::redirect::Policy::none())?,
            blobs: client(blob_redirects(scheme == "https"))?,
            challenge: None,
        })
    }

    /// The URL of `tail` (`REPO/manifests/REF`, say) under the API root, with the `ns` a mirror
    /// is asked for.
    pub(super) fn url(&self, tail: &str) -> String {
        let url = format!("{}/{tail}", self.api);
        match &self.ns {
            Some(ns) => with_ns(&url, ns),
            None => url,
        }
    }

    /// Whether this host is asked for another registry's content: a mirror.
    pub(super) fn is_mirror(&self) -> bool {
        self.ns.is_some()
    }

    /// `url`, a URL on this host, with the `ns` a mirror is asked for if it lacks one.
    pub(super) fn keep_ns(&self, url: String) -> String {
        match &self.ns {
            Some(ns) if !has_ns(&url) => with_ns(&url, ns),
            _ => url,
        }
    }

    /// `GET /v2/` (the API root): 200, or 401 with a challenge, is a registry. A host that
    /// `hosts.toml` lists may answer anything else there: containerd never asks, so neither
    /// answer says it is not one, only that it asks for no credential up front.
    async fn ping(&self, listed: bool) -> Result<Option<String>> {
        let url = format!("{}/", self.api);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| Error::http(&self.host, "reaching the registry", &e))?;
        let challenge = resp
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match resp.status().as_u16() {
            200 => Ok(None),
            401 => Ok(challenge),
            code if listed => {
                tracing::debug!(%url, code, "a host hosts.toml lists answers its API root so");
                Ok(None)
            }
            code => Err(Error::BadRemote(format!(
                "{url} answered {code}: is {} a registry?",
                self.host
            ))),
        }
    }
}

/// A client for a registry's token realm, another host perhaps: reached as hyperd reaches any
/// host (the system's roots and the CAs of the realm's own `certs.d` directory), never with
/// the `skip_verify`, CAs or headers `hosts.toml` gives the host that named the realm, which
/// containerd applies to that host alone. No redirects, as for manifests.
pub(super) async fn realm_client(config: &Config, realm: &Url) -> Result<reqwest::Client> {
    let name = match (realm.host_str(), realm.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    };
    // The realm is the remote's word: `https://../` must not name the certs directory's parent.
    let one_name = {
        let mut parts = Path::new(&name).components();
        matches!(
            (parts.next(), parts.next()),
            (Some(Component::Normal(_)), None)
        )
    };
    let certs = match one_name {
        true => {
            let dir = config.certs_dir.join(&name);
            tokio::task::spawn_blocking(move || read_cas(&dir, &[]))
                .await
                .map_err(|e| Error::unavailable(format!("reading the CAs for {realm}: {e}")))??
        }
        false => Vec::new(),
    };
    let builder = reqwest::Client::builder()
        .tls_certs_merge(certs)
        .redirect(reqwest::redirect::Policy::none());
    build_client(config, builder, &name)
}

/// `builder` with what every client of hyperd's has: its timeouts and its name.
fn build_client(
    config: &Config,
    builder: reqwest::ClientBuilder,
    name: &str,
) -> Result<reqwest::Client> {
    builder
        .read_timeout(config.timeout)
        .connect_timeout(config.timeout)
        .user_agent(concat!("hyperd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::unavailable(format!("setting up a client for {name}: {}", chain(&e))))
}

/// `url` with `ns=REGISTRY` added to its query, encoded as containerd encodes it
/// (`ns=127.0.0.1%3A5000`).
fn with_ns(url: &str, ns: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            parsed.query_pairs_mut().append_pair("ns", ns);
            parsed.into()
        }
        Err(_) => url.to_owned(),
    }
}

fn has_ns(url: &str) -> bool {
    Url::parse(url).is_ok_and(|u| u.query_pairs().any(|(k, _)| k == "ns"))
}

/// Redirects a blob download follows: as many as reqwest's default (10), and never from a
/// registry reached over HTTPS to a plain HTTP address.
fn blob_redirects(https: bool) -> reqwest::redirect::Policy {
    const MOST: usize = 10;
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MOST {
            attempt.error(format!("more than {MOST} redirects"))
        } else if https && attempt.url().scheme() != "https" {
            let to = attempt.url().to_string();
            attempt.error(format!("a redirect from HTTPS to {to}, which is not HTTPS"))
        } else {
            attempt.follow()
        }
    })
}

/// The CAs trusted for a host: the PEM files in its certificate directory (`*.crt`, as docker
/// reads them; none when it does not exist), then the `ca` files its `hosts.toml` entry names.
/// Blocking: run off the async threads.
fn read_cas(dir: &Path, files: &[PathBuf]) -> Result<Vec<reqwest::Certificate>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => Some(entries),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::InvalidArgument(format!(
                "reading {}: {e}",
                dir.display()
            )));
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    paths.sort();
    paths.extend(files.iter().cloned());
    let mut roots = Vec::new();
    for path in &paths {
        roots.extend(read_pem(path)?);
    }
    Ok(roots)
}

/// The certificates of one PEM file of at most [`MAX_CA_FILE`] bytes. A file that cannot be
/// read, is too large, is not PEM or holds no certificate is the operator's mistake, named:
/// it fails the request rather than passing it to another host as if this one were down.
fn read_pem(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let bad = |why: String| Error::InvalidArgument(format!("{}: {why}", path.display()));
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE + 1).read_to_end(&mut pem))
        .map_err(|e| bad(format!("reading a CA file: {e}")))?;
    if pem.len() as u64 > MAX_CA_FILE {
        return Err(bad(format!("a CA file of more than {MAX_CA_FILE} bytes")));
    }
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(format!("not a PEM file of certificates: {e}")))?;
    if ders.is_empty() {
        return Err(bad("no PEM certificate in it".to_owned()));
    }
    ders.iter()
        .map(|der| {
            reqwest::Certificate::from_der(der)
                .map_err(|e| bad(format!("a certificate that cannot be used: {}", chain(&e))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{allows_http, with_ns};

    #[test]
    fn a_mirror_is_told_the_registry_in_the_query() {
        assert_eq!(
            with_ns("http://m:5000/v2/a/b/manifests/1", "127.0.0.1:5601"),
            "http://m:5000/v2/a/b/manifests/1?ns=127.0.0.1%3A5601"
        );
        assert_eq!(
            with_ns("https://m/v2/a/referrers/sha256:1?n=2", "docker.io"),
            "https://m/v2/a/referrers/sha256:1?n=2&ns=docker.io"
        );
    }

    #[test]
    fn plain_http_only_for_loopback_and_listed_registries() {
        let listed = vec!["registry.lan:5000".to_owned()];
        for host in [
            "127.0.0.1:5000",
            "127.3.2.1",
            "localhost:5000",
            "[::1]:5000",
            "registry.lan:5000",
        ] {
            assert!(allows_http(host, &listed), "{host}");
        }
        for host in [
            "registry.lan",
            "10.0.0.1:5000",
            "quay.io",
            "[::2]:5000",
            "localhost.example:5000",
        ] {
            assert!(!allows_http(host, &listed), "{host}");
        }
    }
}
