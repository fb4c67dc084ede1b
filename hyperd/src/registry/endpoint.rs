//! How a registry is reached: HTTPS verified against the system's roots plus the CAs in
//! `<certs-dir>/<host[:port]>/`, or plain HTTP for a loopback or configured-insecure registry
//! that does not answer HTTPS. Which one is decided by asking `/v2/` (the distribution spec's
//! version check), once per request.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{Error, Result, chain};

/// What an operator configures about registries.
#[derive(Clone, Debug)]
pub struct Config {
    /// docker's `certs.d` layout: `<dir>/<host[:port]>/*.crt` are CAs trusted for that registry.
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
    pub(super) async fn connect(config: &Config, host: &str) -> Result<Endpoint> {
        let certs = read_cas(&config.certs_dir.join(host))?;
        let https = Self::build(config, host, "https", &certs)?;
        let https_err = match https.ping().await {
            Ok(challenge) => return Ok(Endpoint { challenge, ..https }),
            Err(e) => e,
        };
        if !allows_http(host, &config.insecure) || !matches!(https_err, Error::Unavailable { .. }) {
            return Err(https_err);
        }
        let http = Self::build(config, host, "http", &certs)?;
        match http.ping().await {
            Ok(challenge) => {
                tracing::info!(registry = host, "registry answers plain HTTP only");
                Ok(Endpoint { challenge, ..http })
            }
            // The HTTPS failure is the one that explains: a certificate not trusted, say.
            Err(_) => Err(https_err),
        }
    }

    fn build(config: &Config, host: &str, scheme: &str, certs: &[Vec<u8>]) -> Result<Endpoint> {
        let mut roots = Vec::new();
        for pem in certs {
            roots.push(
                reqwest::Certificate::from_pem(pem).map_err(|e| {
                    Error::InvalidArgument(format!("a CA for {host}: {}", chain(&e)))
                })?,
            );
        }
        let client = |redirect| {
            reqwest::Client::builder()
                .tls_certs_merge(roots.clone())
                .read_timeout(config.timeout)
                .connect_timeout(config.timeout)
                .redirect(redirect)
                .user_agent(concat!("hyperd/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| {
                    Error::unavailable(format!("setting up a client for {host}: {}", chain(&e)))
                })
        };
        Ok(Endpoint {
            host: host.to_owned(),
            base: format!("{scheme}://{host}"),
            http: client(reqwest::redirect::Policy::none())?,
            blobs: client(blob_redirects(scheme == "https"))?,
            challenge: None,
        })
    }

    /// `GET /v2/`: 200, or 401 with a challenge, is a registry.
    async fn ping(&self) -> Result<Option<String>> {
        let url = format!("{}/v2/", self.base);
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
            code => Err(Error::BadRemote(format!(
                "{url} answered {code}: is {} a registry?",
                self.host
            ))),
        }
    }
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

/// The PEM files in a registry's certificate directory (`*.crt`, as docker reads them);
/// none when it does not exist.
fn read_cas(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::InvalidArgument(format!(
                "reading {}: {e}",
                dir.display()
            )));
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            std::fs::read(p)
                .map_err(|e| Error::InvalidArgument(format!("reading {}: {e}", p.display())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::allows_http;

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
