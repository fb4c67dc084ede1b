//! Pull-through for the registry endpoint: what a mirror client asks for and the store lacks is
//! pulled from its upstream through the one pull path (only missing blobs, every digest
//! checked), with hyperd's own credentials for that host. Concurrent requests for one reference
//! share one pull; a tag is looked up upstream again once its last lookup is older than the
//! configured age, a digest never (its bytes cannot change).
//!
//! An index is pulled whole (`--all-platforms`): a mirror must answer the digests the upstream
//! gives, and a client picks its platform from the index after fetching it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use store::{Digest, Referrers, Store};
use tokio::sync::{OnceCell, mpsc};

use super::endpoint::Config;
use super::error::{Error, Result};
use super::pull::{PullOptions, Pulled, pull};
use super::{Credential, Events};

/// One pull shared by every request for the same reference while it runs.
type Shared = Arc<OnceCell<Result<Arc<Pulled>, Arc<Error>>>>;

/// Pulls what mirror requests miss.
pub(crate) struct PullThrough {
    store: Store,
    config: Config,
    credentials: Credentials,
    /// How long a tag's upstream lookup stays good.
    tag_age: Duration,
    running: Mutex<HashMap<String, Shared>>,
    /// When each tag (a full reference) was last looked up upstream.
    looked_up: Mutex<HashMap<String, Instant>>,
    /// The images pulled by digest, by repository: stored untagged, they are that repository's
    /// only through having been pulled from it.
    by_digest: Mutex<HashMap<String, HashSet<Digest>>>,
}

impl PullThrough {
    pub(crate) fn new(
        store: Store,
        config: Config,
        credentials: Credentials,
        tag_age: Duration,
    ) -> Self {
        PullThrough {
            store,
            config,
            credentials,
            tag_age,
            running: Mutex::new(HashMap::new()),
            looked_up: Mutex::new(HashMap::new()),
            by_digest: Mutex::new(HashMap::new()),
        }
    }

    /// The images pulled by digest from `repository` since hyperd started.
    pub(crate) fn pulled_by_digest(&self, repository: &str) -> Vec<Digest> {
        let by_digest = self.by_digest.lock().expect("pull-through lock poisoned");
        by_digest
            .get(repository)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the stored answer for the tag `reference` (`host/repo:tag`) is older than the
    /// configured age; a tag not looked up since hyperd started is.
    pub(crate) fn is_stale(&self, reference: &str) -> bool {
        let looked_up = self.looked_up.lock().expect("pull-through lock poisoned");
        looked_up
            .get(reference)
            .is_none_or(|at| at.elapsed() >= self.tag_age)
    }

    /// Pulls `reference` (`host/repo:tag` or `host/repo@sha256:…`), or waits for the pull of it
    /// already running. A caller that gives up leaves the pull to the next one waiting.
    pub(crate) async fn pull(&self, reference: &str) -> Result<Arc<Pulled>, Arc<Error>> {
        let shared = {
            let mut running = self.running.lock().expect("pull-through lock poisoned");
            running.entry(reference.to_owned()).or_default().clone()
        };
        let pulled = shared
            .get_or_init(|| async {
                let pulled = self.pull_now(reference).await;
                if let Ok(p) = &pulled {
                    self.note(reference, p);
                }
                pulled.map(Arc::new).map_err(Arc::new)
            })
            .await
            .clone();
        let mut running = self.running.lock().expect("pull-through lock poisoned");
        if running
            .get(reference)
            .is_some_and(|s| Arc::ptr_eq(s, &shared))
        {
            running.remove(reference);
        }
        pulled
    }

    /// A tag's lookup time, or an image pulled by digest under its repository.
    fn note(&self, reference: &str, pulled: &Pulled) {
        match reference.split_once('@') {
            None => {
                let mut looked_up = self.looked_up.lock().expect("pull-through lock poisoned");
                looked_up.insert(reference.to_owned(), Instant::now());
            }
            Some((repository, _)) => {
                let mut by_digest = self.by_digest.lock().expect("pull-through lock poisoned");
                let images = by_digest.entry(repository.to_owned()).or_default();
                images.insert(pulled.digest.clone());
            }
        }
    }

    async fn pull_now(&self, reference: &str) -> Result<Pulled> {
        let host = reference.split('/').next().unwrap_or_default();
        let opts = PullOptions {
            reference: reference.to_owned(),
            credential: self.credentials.of(host),
            platform: None,
            all_platforms: true,
            // A mirror's clients verify signatures and read SBOMs through it.
            referrers: Referrers::Include,
        };
        // Nobody watches a pull-through's progress: a closed channel drops every event.
        let (tx, _) = mpsc::channel(1);
        let pulled = pull(&self.store, &self.config, opts, &Events::new(tx)).await;
        // hyperd's own pull, for the registry endpoint: no local user caused it.
        pulled.iter().for_each(|p| crate::events::pulled(None, p));
        match &pulled {
            Ok(p) => tracing::info!(reference, digest = %p.digest, "pulled through"),
            Err(e) => tracing::warn!(reference, error = %e, "pull-through failed"),
        }
        pulled
    }
}

/// hyperd's own registry credentials: the `auths` of a docker `config.json`, by host.
#[derive(Clone, Default)]
pub(crate) struct Credentials(HashMap<String, Credential>);

impl Credentials {
    /// Reads `auths` from a docker-style config file (`{"auths": {"HOST": {"auth":
    /// base64("user:password")}}}`); credential helpers are not consulted.
    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn parse(text: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(default)]
            auths: HashMap<String, Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            auth: Option<String>,
            identitytoken: Option<String>,
        }
        let file: File = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let mut credentials = HashMap::new();
        for (host, entry) in file.auths {
            let mut credential = Credential::default();
            if let Some(auth) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| format!("auth of {host}: {e}"))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| format!("auth of {host} is not user:password"))?;
                let (user, password) = decoded
                    .split_once(':')
                    .ok_or_else(|| format!("auth of {host} is not user:password"))?;
                credential.username = user.to_owned();
                credential.password = password.to_owned();
            }
            credential.token = entry.identitytoken.unwrap_or_default();
            credentials.insert(registry_host(&host).to_owned(), credential);
        }
        Ok(Credentials(credentials))
    }

    /// The credential for `host`, anonymous when there is none.
    fn of(&self, host: &str) -> Credential {
        self.0.get(host).cloned().unwrap_or_default()
    }
}

/// `https://index.docker.io/v1/` and other URL-shaped keys docker writes, as the host pulls name.
fn registry_host(key: &str) -> &str {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        host => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_a_docker_config_by_host() {
        let config = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNzOndvcmQ="},
            "127.0.0.1:5000": {"auth": "YTpi"},
            "ghcr.io": {"identitytoken": "tok"}
        }}"#;
        let c = Credentials::parse(config).unwrap();
        let hub = c.of("docker.io");
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pass:word")
        );
        assert_eq!(c.of("127.0.0.1:5000").username, "a");
        assert_eq!(c.of("ghcr.io").token, "tok");
        assert!(c.of("quay.io").username.is_empty());
        assert!(Credentials::parse(br#"{"auths": {"x": {"auth": "bm9jb2xvbg=="}}}"#).is_err());
    }
}
