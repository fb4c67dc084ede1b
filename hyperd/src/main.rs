//! `hyperd`: parse flags, open the store, bind the socket, serve until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// The hyperd image store daemon.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Store root directory [default: /var/lib/hyperd as root, else $XDG_DATA_HOME/hyperd or
    /// ~/.local/share/hyperd]
    #[arg(long, env = "HYPERD_ROOT")]
    root: Option<PathBuf>,
    /// Unix socket to listen on [default: /run/hyperd/hyperd.sock as root, else
    /// $XDG_RUNTIME_DIR/hyperd.sock; without XDG_RUNTIME_DIR there is no default]
    #[arg(long, env = "HYPERD_SOCKET")]
    socket: Option<PathBuf>,
    /// Group (name or ID) that owns the socket (mode 0660), so that its members may use hyperd
    #[arg(long, env = "HYPERD_GROUP")]
    group: Option<String>,
    /// End a load, or a content Write stream, whose client sends nothing for this many seconds
    /// while it holds one of the four load slots or sixteen write slots, so that a stalled
    /// client cannot keep others waiting (the content write stays open to resume)
    #[arg(
        long,
        env = "HYPERD_LOAD_IDLE_TIMEOUT",
        value_name = "SECONDS",
        default_value_t = 120
    )]
    load_idle_timeout: u64,
    /// Drop a content write (ContentService.Write) that receives nothing for this many seconds
    #[arg(
        long,
        env = "HYPERD_CONTENT_WRITE_EXPIRY",
        value_name = "SECS",
        default_value_t = 3600
    )]
    content_write_expiry: u64,
    /// CAs to trust per registry, in docker's layout: DIR/HOST[:PORT]/*.crt; and the mirrors
    /// pulls of a registry try first, in containerd's DIR/HOST[:PORT]/hosts.toml
    #[arg(
        long,
        env = "HYPERD_CERTS_DIR",
        value_name = "DIR",
        default_value = "/etc/hyperd/certs.d"
    )]
    certs_dir: PathBuf,
    /// A registry (HOST[:PORT]) that may be reached over plain HTTP when it does not answer
    /// HTTPS, beside those on loopback addresses; repeatable
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registries: Vec<String>,
    /// Give up on a registry that accepts no connection, or sends nothing, for this many
    /// seconds (retried twice when transient)
    #[arg(
        long,
        env = "HYPERD_REGISTRY_TIMEOUT",
        value_name = "SECS",
        default_value_t = 60
    )]
    registry_timeout: u64,
    /// Connections hyperd holds open at once, all users together (root and hyperd's own user
    /// may exceed it by 32)
    #[arg(
        long,
        env = "HYPERD_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 1024
    )]
    max_connections: usize,
    /// Connections hyperd holds open at once from any one user (uid)
    #[arg(
        long,
        env = "HYPERD_MAX_CONNECTIONS_PER_UID",
        value_name = "N",
        default_value_t = 128
    )]
    max_connections_per_uid: usize,
    /// Close a connection whose client has not sent a request's headers this many seconds after
    /// connecting, or leaves a header block or a frame unfinished this long
    #[arg(
        long,
        env = "HYPERD_STALL_TIMEOUT",
        value_name = "SECS",
        default_value_t = 30
    )]
    stall_timeout: u64,
    /// Serve Prometheus metrics at /metrics on ADDR: a loopback IP:PORT (127.0.0.1:9464) or a
    /// Unix socket path (anything with a `/`, given --group's group); off unless set
    #[arg(long, env = "HYPERD_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    gc: GcArgs,
}

/// The daemon's GC policy (`store::GcPolicy`); every rule is off unless set.
#[derive(clap::Args)]
struct GcArgs {
    /// Remove images, least recently used first, when the store's filesystem is more than this
    /// percent full, until it is at most --gc-low percent full
    #[arg(long, env = "HYPERD_GC_HIGH", value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=99))]
    gc_high: Option<u8>,
    /// With --gc-high: the percent of the filesystem a collection brings it down to
    /// [default: --gc-high minus 5]
    #[arg(long, env = "HYPERD_GC_LOW", value_name = "PERCENT", requires = "gc_high", value_parser = clap::value_parser!(u8).range(0..=99))]
    gc_low: Option<u8>,
    /// Remove images not used for this long (`30d`, `12h`); an image with no recorded use
    /// counts from hyperd's start
    #[arg(long, env = "HYPERD_GC_MAX_UNUSED", value_name = "DURATION", value_parser = humantime::parse_duration)]
    gc_max_unused: Option<std::time::Duration>,
    /// Keep the tags of the N most recently used images of each repository, and remove the
    /// others' (an image goes with its last name)
    #[arg(long, env = "HYPERD_GC_KEEP", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    gc_keep: Option<u32>,
    /// The GC policy never removes an image used more recently than this
    #[arg(long, env = "HYPERD_GC_MIN_AGE", value_name = "DURATION", default_value = "2m", value_parser = humantime::parse_duration)]
    gc_min_age: std::time::Duration,
}

impl GcArgs {
    fn policy(self) -> anyhow::Result<store::GcPolicy> {
        let watermarks = match self.gc_high {
            Some(high) => {
                let low = self.gc_low.unwrap_or(high.saturating_sub(5));
                anyhow::ensure!(
                    low < high,
                    "--gc-low ({low}) must be under --gc-high ({high})"
                );
                Some(store::Watermarks { high, low })
            }
            None => None,
        };
        Ok(store::GcPolicy {
            watermarks,
            max_unused: self.gc_max_unused,
            keep: self.gc_keep.map(|n| n as usize),
            min_age: self.gc_min_age,
        })
    }
}

/// The registry endpoint's flags (`hyperd::distribution`).
#[derive(clap::Args)]
struct EndpointArgs {
    /// Serve the store as an OCI registry (distribution spec; reads, and pushes with
    /// --registry-push) on this address
    /// (`127.0.0.1:5000`; port 0: any); repeatable. Off when not given
    #[arg(long = "registry-listen", value_name = "ADDR")]
    registry_listen: Vec<std::net::SocketAddr>,
    /// Certificate chain (PEM) for the registry endpoint's TLS, with --registry-tls-key
    #[arg(long, env = "HYPERD_REGISTRY_TLS_CERT", value_name = "FILE")]
    registry_tls_cert: Option<PathBuf>,
    /// Private key (PEM) for the registry endpoint's TLS
    #[arg(long, env = "HYPERD_REGISTRY_TLS_KEY", value_name = "FILE")]
    registry_tls_key: Option<PathBuf>,
    /// Serve the registry endpoint over plain HTTP on addresses other than loopback
    #[arg(long)]
    registry_insecure: bool,
    /// Serve the registry endpoint only to the users of this htpasswd file (bcrypt entries, as
    /// `htpasswd -B` makes them), by basic auth
    #[arg(long, env = "HYPERD_REGISTRY_HTPASSWD", value_name = "FILE")]
    registry_htpasswd: Option<PathBuf>,
    /// Connections the registry endpoint holds open at once, over all its addresses
    #[arg(
        long,
        env = "HYPERD_REGISTRY_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 512
    )]
    registry_max_connections: usize,
    /// Take pushes on the registry endpoint (uploads, mounts, manifests by tag and digest) from
    /// the users of --registry-htpasswd, which it needs
    #[arg(long)]
    registry_push: bool,
    /// With --registry-push: a user of the --registry-htpasswd file who may push
    /// (repeatable); none named: every user of the file may
    #[arg(long, value_name = "USER", requires = "registry_push")]
    registry_push_user: Vec<String>,
    /// Pull what a registry-endpoint client asks for and the store lacks from the repository's
    /// own registry (containerd's `?ns=HOST`, a podman prefix `HOST/REPO`, Docker Hub for short
    /// names), store it, then serve it
    #[arg(long)]
    registry_pull_through: bool,
    /// With --registry-pull-through: seconds a tag looked up upstream is served before it is
    /// looked up again (digests never are)
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    registry_pull_through_age: u64,
    /// With --registry-pull-through: a docker config.json whose `auths` hold hyperd's own
    /// credentials for the registries it pulls through from
    #[arg(long, value_name = "FILE")]
    registry_pull_through_auth: Option<PathBuf>,
    /// Connections the registry endpoint holds open at once from one client address (an IPv6
    /// client's /64), within --registry-max-connections; 0: no cap per address
    #[arg(
        long,
        env = "HYPERD_REGISTRY_MAX_CONNECTIONS_PER_IP",
        value_name = "N",
        default_value_t = 64
    )]
    registry_max_connections_per_ip: usize,
}

impl EndpointArgs {
    /// The endpoint's configuration; `stall` is `--stall-timeout`, which it shares.
    fn config(
        self,
        stall: std::time::Duration,
    ) -> Result<hyperd::distribution::Config, hyperd::distribution::StartError> {
        Ok(hyperd::distribution::Config {
            tls: hyperd::distribution::tls_pair(self.registry_tls_cert, self.registry_tls_key)?,
            listen: self.registry_listen,
            insecure: self.registry_insecure,
            htpasswd: self.registry_htpasswd,
            max_connections: self.registry_max_connections,
            max_connections_per_ip: self.registry_max_connections_per_ip,
            stall,
            pull_through: self.registry_pull_through.then(|| {
                hyperd::distribution::PullThroughConfig {
                    tag_age: std::time::Duration::from_secs(self.registry_pull_through_age),
                    credentials: self.registry_pull_through_auth,
                }
            }),
            push: self
                .registry_push
                .then_some(hyperd::distribution::PushConfig {
                    users: self.registry_push_user,
                }),
        })
    }
}

fn main() -> anyhow::Result<()> {
    hyperd_proto::bound_allocator_caching();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let served = runtime.block_on(serve(Args::parse()));
    // A copy stuck in a read that never returns (a handed-over file on a hung FUSE mount) never
    // reaches its stop check: hyperd exits without it rather than hang.
    runtime.shutdown_timeout(EXIT_GRACE);
    served
}

/// How long hyperd waits at exit for blocking work that did not stop when asked.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn serve(args: Args) -> anyhow::Result<()> {
    init_tracing();
    let gc = args.gc.policy()?;
    let root = match args.root {
        Some(r) => r,
        None => hyperd::default_root()?,
    };
    let socket = match args.socket {
        Some(s) => s,
        None => hyperd_proto::default_socket()?,
    };
    let store = store::Store::open(&root)
        .await
        .with_context(|| format!("opening store {}", root.display()))?;
    let stall = std::time::Duration::from_secs(args.stall_timeout);
    let registry = hyperd::distribution::bind(args.endpoint.config(stall)?)
        .await
        .context("starting the registry endpoint")?;
    // Before the socket exists: a client may send SIGTERM as soon as it can connect.
    let stop = stop_signal();
    let fd_socket = hyperd_proto::fd_socket(&socket);
    let metrics = match args.metrics_listen {
        Some(a) => {
            let gid = args.group.as_deref().map(hyperd::group_id).transpose()?;
            Some(hyperd::MetricsListener::bind(&a, gid)?)
        }
        None => None,
    };
    if let Some(m) = &metrics {
        tracing::info!(at = m.address(), "serving metrics");
    }
    let (listener, fd_listener, owns_socket) = match hyperd::activated_listeners()? {
        Some((l, fd)) => (l, fd, false),
        None => {
            let gid = args.group.as_deref().map(hyperd::group_id).transpose()?;
            let listener = hyperd::bind(&socket, gid)?;
            (listener, Some(hyperd::bind(&fd_socket, gid)?), true)
        }
    };
    if owns_socket {
        tracing::info!(root = %root.display(), socket = %socket.display(), "hyperd ready");
    } else {
        tracing::info!(root = %root.display(), "hyperd ready on the socket systemd passed");
    }
    // Outside systemd there is no NOTIFY_SOCKET and this does nothing.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let settings = hyperd::Settings {
        load_idle_timeout: std::time::Duration::from_secs(args.load_idle_timeout),
        content_write_expiry: std::time::Duration::from_secs(args.content_write_expiry),
        registry: hyperd::RegistryConfig {
            certs_dir: args.certs_dir,
            insecure: args.insecure_registries,
            timeout: std::time::Duration::from_secs(args.registry_timeout),
        },
        connections: hyperd::ConnectionLimits {
            total: args.max_connections,
            per_uid: args.max_connections_per_uid,
            stall: std::time::Duration::from_secs(args.stall_timeout),
        },
        metrics,
        events_dir: root.join("events"),
        gc,
    };
    let result = hyperd::run(store, listener, fd_listener, settings, registry, stop).await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // A socket systemd passed belongs to systemd, which keeps listening on it.
    for path in [&socket, &fd_socket].into_iter().filter(|_| owns_socket) {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(socket = %path.display(), error = %e, "could not remove socket");
        }
    }
    tracing::info!("stopped");
    result
}

/// Installs the handlers now; the future completes at SIGINT or SIGTERM.
fn stop_signal() -> impl Future<Output = ()> {
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

fn init_tracing() {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // The journal stamps each line itself.
    if journal {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
