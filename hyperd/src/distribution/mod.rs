//! The store served as an OCI registry (distribution spec v1.1: pulls and content discovery, and
//! pushes when enabled), over HTTP/1.1 on TCP (`--registry-listen`); no gRPC here.
//!
//! - `route.rs` reads the path and query, `names.rs` maps a `<name>` (and containerd's
//!   `?ns=HOST`) to the store's repository, `handler.rs` dispatches to `manifests.rs`,
//!   `blobs.rs` (with `range.rs`), `listing.rs` (tags and catalog) and `referrers.rs`;
//!   `error.rs` builds every refusal as the spec's JSON body.
//! - **What a name may see.** A manifest, blob or referrer is served under a repository only
//!   when an image tagged there uses it (`store.images().may_see`): no blob reaches a name that
//!   does not reference it, whatever digest is asked for.
//! - **No paths from requests.** Digests are parsed into `store::Digest`; the store opens the
//!   blob by it. Nothing of a request is joined into a path.
//! - **Exposure.** A listener on a non-loopback address needs TLS (`--registry-tls-cert`,
//!   `--registry-tls-key`) unless `--registry-insecure`; hyperd refuses to start otherwise.
//! - **Costs.** At most [`Config::max_connections`] connections at once, and
//!   [`Config::max_connections_per_ip`] from one client (`peers.rs`); past either a connection
//!   is closed at accept. A client must send a request's headers, and finish a TLS
//!   handshake, within [`Config::stall`], and a client that reads nothing of an answer for that
//!   long is cut off (`stall.rs`); a blob is streamed in 256 KiB reads, two ahead (`body.rs`),
//!   and hyper queues at most [`connections::MAX_BUFFER`] of it for the socket.
//! - **Push** (`--registry-push`, off by default: write methods are then 405 UNSUPPORTED):
//!   `uploads.rs` takes blobs (monolithic, chunked, mounted) through the store's uploads,
//!   `manifest_push.rs` writes a manifest through the content API and makes it an image with
//!   `create_image`; `pushed.rs` keeps who may push and what was pushed but is not yet used by
//!   an image. At most 16 pushes read their bytes at once, a 1 MiB piece each.
//! - **Who.** With `--registry-htpasswd`, only the file's users, by basic auth (`auth.rs`);
//!   with `--registry-push-user`, only those of them push. Pushes need the file, on loopback
//!   too: every local user reaches a loopback port, whatever the gRPC socket's rights.
//! - **Pull-through** (`--registry-pull-through`, `through.rs`): a manifest the store lacks is
//!   pulled from the repository's registry first; what it pulled is then a stored image, served
//!   as any other.

mod auth;
mod blobs;
mod body;
mod connections;
mod error;
mod handler;
mod listing;
mod manifest_push;
mod manifests;
mod names;
mod peers;
mod pushed;
mod range;
mod referrers;
mod route;
mod stall;
mod through;
mod tls;
mod uploads;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use store::Store;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::registry::{Config as RegistryConfig, Credentials, PullThrough};

/// What an operator chooses about the registry endpoint.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The addresses to listen on; none: the endpoint is off.
    pub listen: Vec<SocketAddr>,
    /// The certificate chain and key (PEM) to serve TLS with.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve plain HTTP on non-loopback addresses.
    pub insecure: bool,
    /// An htpasswd file (bcrypt entries) whose users alone may read.
    pub htpasswd: Option<PathBuf>,
    /// Connections open at once, over all the listeners.
    pub max_connections: usize,
    /// How long a client may take to finish a TLS handshake or send a request's headers.
    pub stall: Duration,
    /// Pull what mirror requests miss from their registries; off when `None`.
    pub pull_through: Option<PullThroughConfig>,
    /// Take pushes; off when `None`.
    pub push: Option<PushConfig>,
    /// Connections one client address (an IPv6 client's /64) holds at once; 0: no such cap.
    pub max_connections_per_ip: usize,
}

/// `--registry-push` and what goes with it.
#[derive(Clone, Debug, Default)]
pub struct PushConfig {
    /// The users of the htpasswd file who may push; none named: every user of the file.
    pub users: Vec<String>,
}

/// `--registry-pull-through` and what goes with it.
#[derive(Clone, Debug)]
pub struct PullThroughConfig {
    /// How long a tag looked up upstream is served before it is looked up again.
    pub tag_age: Duration,
    /// A docker `config.json` whose `auths` are hyperd's own credentials for the registries it
    /// pulls through from.
    pub credentials: Option<PathBuf>,
}

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "--registry-listen {0} is not a loopback address: serving it needs \
         --registry-tls-cert and --registry-tls-key, or --registry-insecure for plain HTTP"
    )]
    Exposed(SocketAddr),
    #[error(
        "--registry-htpasswd on {0}, not a loopback address, needs TLS: basic auth over plain \
         HTTP would send the passwords in the clear"
    )]
    PasswordsInClear(SocketAddr),
    #[error(
        "--registry-push needs --registry-htpasswd: anyone who reaches the endpoint, every local \
         user on loopback, could otherwise write any image name into the store"
    )]
    PushUnauthenticated,
    #[error(
        "--registry-push and --registry-pull-through exclude each other: pushed tags and tags \
         refreshed from upstream would overwrite each other"
    )]
    PushAndPullThrough,
    #[error("--registry-push-user {0} is no user of the --registry-htpasswd file")]
    PushUser(String),
    #[error("--registry-tls-cert and --registry-tls-key go together")]
    HalfTls,
    #[error("--registry-htpasswd {0}")]
    Htpasswd(String),
    #[error("--registry-pull-through-auth {0}")]
    Credentials(String),
    #[error("registry TLS: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The endpoint's sockets, bound and checked, before hyperd reports ready.
pub struct Listeners {
    sockets: Vec<TcpListener>,
    tls: Option<TlsAcceptor>,
    auth: Option<Arc<auth::Htpasswd>>,
    credentials: Credentials,
    /// `host:port` of each bound address, as repository names would spell it.
    own_hosts: Vec<String>,
    config: Config,
}

/// Checks `config` and binds its addresses, logging each bound address (`127.0.0.1:0` gets a
/// port of the kernel's choice).
pub async fn bind(config: Config) -> Result<Listeners, StartError> {
    let tls = match &config.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let exposed = config.listen.iter().find(|a| !a.ip().is_loopback());
    if let (None, Some(exposed)) = (&tls, exposed) {
        if !config.insecure {
            return Err(StartError::Exposed(*exposed));
        }
        // Basic auth over plain HTTP off this machine would hand out the passwords.
        if config.htpasswd.is_some() {
            return Err(StartError::PasswordsInClear(*exposed));
        }
    }
    if config.push.is_some() {
        if config.htpasswd.is_none() {
            return Err(StartError::PushUnauthenticated);
        }
        if config.pull_through.is_some() {
            return Err(StartError::PushAndPullThrough);
        }
    }
    let auth = config
        .htpasswd
        .as_deref()
        .map(auth::Htpasswd::load)
        .transpose()?;
    for user in config.push.iter().flat_map(|p| &p.users) {
        if auth.as_ref().is_some_and(|a| !a.has_user(user)) {
            return Err(StartError::PushUser(user.clone()));
        }
    }
    let credentials = match config
        .pull_through
        .as_ref()
        .and_then(|p| p.credentials.as_ref())
    {
        Some(path) => Credentials::read(path).map_err(StartError::Credentials)?,
        None => Credentials::default(),
    };
    let mut sockets = Vec::new();
    let mut own_hosts = Vec::new();
    for &addr in &config.listen {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let bound = socket
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %bound, scheme, "registry endpoint listening");
        own_hosts.push(bound.to_string());
        if bound.ip().is_loopback() {
            own_hosts.push(format!("localhost:{}", bound.port()));
        }
        sockets.push(socket);
    }
    Ok(Listeners {
        sockets,
        tls,
        auth,
        credentials,
        own_hosts,
        config,
    })
}

/// The TLS pair from `--registry-tls-cert` and `--registry-tls-key`: both or neither.
pub fn tls_pair(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<(PathBuf, PathBuf)>, StartError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        _ => Err(StartError::HalfTls),
    }
}

/// Serves `store` on every listener until `cancel`: then the listeners close and each
/// connection ends after its request in flight. Pull-through pulls as hyperd's own pulls do,
/// with `registries`.
pub(crate) fn serve(
    listeners: Listeners,
    store: Store,
    registries: RegistryConfig,
    cancel: CancellationToken,
) {
    let cap = Arc::new(Semaphore::new(listeners.config.max_connections));
    let peers = peers::Peers::new(listeners.config.max_connections_per_ip);
    let through = listeners.config.pull_through.as_ref().map(|p| {
        let credentials = listeners.credentials.clone();
        Arc::new(PullThrough::new(
            store.clone(),
            registries,
            credentials,
            p.tag_age,
        ))
    });
    let push = listeners.config.push.as_ref().map(|p| {
        let users = (!p.users.is_empty()).then(|| p.users.iter().cloned().collect());
        Arc::new(pushed::Push::new(users, listeners.config.stall))
    });
    let own_hosts = Arc::new(listeners.own_hosts);
    for socket in listeners.sockets {
        let serving = connections::Serving {
            endpoint: handler::Endpoint {
                store: store.clone(),
                auth: listeners.auth.clone(),
                through: through.clone(),
                push: push.clone(),
                own_hosts: own_hosts.clone(),
            },
            tls: listeners.tls.clone(),
            stall: listeners.config.stall,
            cancel: cancel.clone(),
        };
        tokio::spawn(connections::accept_loop(
            socket,
            serving,
            cap.clone(),
            peers.clone(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str) -> Config {
        Config {
            listen: vec![listen.parse().unwrap()],
            max_connections: 1,
            stall: Duration::from_secs(1),
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn only_loopback_is_served_without_tls_unless_insecure() {
        for exposed in ["0.0.0.0:0", "192.0.2.1:5000", "[::]:0"] {
            let e = bind(config(exposed)).await.err().expect(exposed);
            assert!(matches!(e, StartError::Exposed(_)), "{e}");
        }
        let bound = bind(config("127.0.0.1:0")).await.unwrap();
        assert_eq!(bound.sockets.len(), 1);
        let clear = Config {
            insecure: true,
            htpasswd: Some(PathBuf::from("/nonexistent/htpasswd")),
            ..config("0.0.0.0:0")
        };
        let e = bind(clear).await.err().expect("passwords in the clear");
        assert!(matches!(e, StartError::PasswordsInClear(_)), "{e}");
        let open = Config {
            push: Some(PushConfig::default()),
            ..config("127.0.0.1:0")
        };
        let e = bind(open).await.err().expect("anyone could push");
        assert!(matches!(e, StartError::PushUnauthenticated), "{e}");
        let both = Config {
            push: Some(PushConfig::default()),
            htpasswd: Some(PathBuf::from("/nonexistent/htpasswd")),
            pull_through: Some(PullThroughConfig {
                tag_age: Duration::from_secs(1),
                credentials: None,
            }),
            ..config("127.0.0.1:0")
        };
        let e = bind(both).await.err().expect("push and pull-through");
        assert!(matches!(e, StartError::PushAndPullThrough), "{e}");
        let path = || Some(PathBuf::from("x"));
        assert!(matches!(tls_pair(path(), None), Err(StartError::HalfTls)));
        assert!(matches!(tls_pair(None, path()), Err(StartError::HalfTls)));
        assert!(matches!(tls_pair(None, None), Ok(None)));
    }
}
