//! The hosts a pull reads a registry's images from, and the one a push writes to, as the
//! registry's `hosts.toml` in the certs directory lists them (`hosts.rs`; containerd's rules):
//! without the file, the registry alone.
//!
//! A pull asks the hosts in order, each reached on first use: a tag goes only to hosts that may
//! `resolve` and `pull` (the digest it names decides what is pulled), a digest (manifests,
//! blobs) to those that may `pull`. A host that cannot be reached, fails, or lacks what is
//! asked for passes the request to the next; the last host's failure is the pull's. A host
//! that could not be reached is not tried again during the pull. What any host sends is
//! checked as the registry's would be: digests decide. A mirror whose body of a blob fails
//! (cut short, stalled, or not what its digest says) is passed over for that blob, which the
//! next host then sends. A push goes to the first host that may `push`, as containerd's does,
//! and without `ns`, as containerd's pusher sends it.
//!
//! A mirror (a host other than the registry) is asked with `?ns=REGISTRY` and is never sent
//! the credential, which belongs to the registry; it gets no credential at all. Nor does the
//! registry's own host when the file names it with `http://` where hyperd would not speak
//! plain HTTP (not loopback, not `--insecure-registry`).

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::Stream;
use oci_client::{Reference, RegistryOperation, RegistryOperation::Pull};
use store::Digest;
use tokio::sync::OnceCell;

use super::Credential;
use super::endpoint::{Config, allows_http};
use super::error::{Error, Result};
use super::hosts::{self, Capabilities, Host, Scheme};
use super::remote::{Fetched, Remote};

/// One host as a transfer reaches it.
pub(super) struct Target {
    pub(super) host: Host,
    /// The registry a mirror is asked for; none for the registry's own hosts.
    pub(super) ns: Option<String>,
    pub(super) credential: Credential,
    /// Why the host gets no credential, when hyperd keeps the registry's from it.
    pub(super) withheld: Option<String>,
}

/// The hosts of the registry `reference` names, in order, with the file that listed them.
fn targets(
    config: &Config,
    reference: &Reference,
    credential: &Credential,
) -> Result<(Option<PathBuf>, Vec<Target>)> {
    let registry = reference.registry();
    let (file, hosts) = match read_hosts(&config.certs_dir, registry)? {
        Some((file, text)) => {
            let hosts = hosts::parse(&text, &file, reference.resolve_registry())?;
            (Some(file), hosts)
        }
        None => (None, vec![Host::registry(reference.resolve_registry())]),
    };
    let targets = hosts
        .into_iter()
        .map(|host| {
            let own = same_registry(&host.authority, registry);
            let withheld = withheld(&host, registry, &config.insecure);
            Target {
                ns: (!own).then(|| registry.to_owned()),
                credential: match withheld {
                    None => credential.clone(),
                    Some(_) => Credential::default(),
                },
                withheld,
                host,
            }
        })
        .collect();
    Ok((file, targets))
}

/// The registry's `hosts.toml`: `<certs-dir>/<host>_<port>_/` or `<certs-dir>/<host:port>/`,
/// the directories containerd looks in.
fn read_hosts(certs_dir: &Path, registry: &str) -> Result<Option<(PathBuf, String)>> {
    for dir in host_dirs(registry) {
        let file = certs_dir.join(dir).join("hosts.toml");
        match std::fs::read_to_string(&file) {
            Ok(text) => return Ok(Some((file, text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                let why = format!("reading {}: {e}", file.display());
                return Err(Error::InvalidArgument(why));
            }
        }
    }
    Ok(None)
}

/// The directories that may hold the registry's `hosts.toml`, in containerd's order:
/// `host_port_` (`[::1]_5000_` for `[::1]:5000`) when it has a port, then `host[:port]`.
fn host_dirs(registry: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    if let Some((name, port)) = registry.rsplit_once(':')
        && !name.is_empty()
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        dirs.push(format!("{name}_{port}_"));
    }
    dirs.push(registry.to_owned());
    dirs
}

/// Why `host` must not get the credential of `registry`, if it must not: it belongs to the
/// registry's own host alone, and goes over plain HTTP only where hyperd allows plain HTTP at
/// all (loopback, `--insecure-registry`). An `http://` URL in a file, or a `:80` that makes
/// the URL name the registry's own host, does not get around the operator's choice.
fn withheld(host: &Host, registry: &str, insecure: &[String]) -> Option<String> {
    let name = &host.authority;
    if !same_registry(name, registry) {
        return Some(format!(
            "hyperd sends the credential for {registry} to {registry} only, never to a mirror"
        ));
    }
    if host.scheme == Scheme::Http && !allows_http(name, insecure) {
        return Some(format!(
            "hosts.toml names {name} with http://, and a credential goes over plain HTTP only \
             to loopback hosts and those given to --insecure-registry"
        ));
    }
    None
}

/// Whether a host is the registry itself: the same `host[:port]`, or one of Docker Hub's names.
fn same_registry(host: &str, registry: &str) -> bool {
    const HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
    host == registry || (HUB.contains(&host) && HUB.contains(&registry))
}

/// The host a push of `reference` goes to: the first that may push.
pub(super) async fn push_remote(
    config: &Config,
    reference: &Reference,
    credential: &Credential,
) -> Result<Remote> {
    let (file, targets) = targets(config, reference, credential)?;
    let Some(target) = targets.into_iter().find(|t| t.host.capabilities.push) else {
        let file = file.as_deref().unwrap_or(Path::new("hosts.toml"));
        return Err(Error::InvalidArgument(format!(
            "{}: no host there may push to {}",
            file.display(),
            reference.registry()
        )));
    };
    // containerd's pusher asks a mirror with no `ns`: the push is to that host itself.
    let target = Target { ns: None, ..target };
    Remote::connect(config, &target, reference, RegistryOperation::Push).await
}

/// One host of a pull, reached on first use.
struct Source {
    target: Target,
    remote: OnceCell<Remote>,
    /// Why it could not be reached, once it could not.
    down: Mutex<Option<String>>,
}

/// The hosts one pull reads from.
pub(super) struct Sources<'a> {
    config: &'a Config,
    reference: &'a Reference,
    file: Option<PathBuf>,
    hosts: Vec<Source>,
    /// The mirrors that served something.
    served: Mutex<BTreeSet<String>>,
    /// The mirror that sent each document a mirror sent, for messages about it.
    sent: Mutex<HashMap<Digest, String>>,
}

impl<'a> Sources<'a> {
    pub(super) fn new(
        config: &'a Config,
        reference: &'a Reference,
        credential: &Credential,
    ) -> Result<Self> {
        let (file, targets) = targets(config, reference, credential)?;
        let hosts = targets
            .into_iter()
            .map(|target| Source {
                target,
                remote: OnceCell::new(),
                down: Mutex::new(None),
            })
            .collect();
        Ok(Sources {
            config,
            reference,
            file,
            hosts,
            served: Mutex::new(BTreeSet::new()),
            sent: Mutex::new(HashMap::new()),
        })
    }

    /// The registry, as messages name it.
    pub(super) fn host(&self) -> &str {
        self.reference.resolve_registry()
    }

    /// The mirrors that served something, for the log.
    pub(super) fn mirrors_used(&self) -> Vec<String> {
        let served = self.served.lock().expect("served mirrors");
        served.iter().cloned().collect()
    }

    /// The manifest or index `reference` names: by tag from the hosts that may resolve, by
    /// digest from those that may pull.
    pub(super) async fn manifest(&self, reference: &Reference) -> Result<Fetched> {
        let need = match reference.digest() {
            Some(_) => pulls,
            None => resolves,
        };
        self.each(need, &[], |remote| async move {
            let fetched = remote.manifest(reference).await?;
            if remote.endpoint.is_mirror() {
                let mut sent = self.sent.lock().expect("documents sent");
                sent.insert(fetched.digest.clone(), remote.host().to_owned());
            }
            Ok(fetched)
        })
        .await
    }

    /// Who sent the document `digest`, as messages about it say: the registry, or the mirror
    /// that sent it in the registry's stead.
    pub(super) fn sent_by(&self, digest: &Digest) -> String {
        let sent = self.sent.lock().expect("documents sent");
        match sent.get(digest) {
            Some(mirror) => format!("{mirror} (a mirror of {})", self.host()),
            None => self.host().to_owned(),
        }
    }

    /// The body of a blob, and the host that sends it: not a mirror in `skip`.
    pub(super) async fn blob(
        &self,
        repo: &Reference,
        digest: &Digest,
        size: u64,
        skip: &[String],
    ) -> Result<(String, impl Stream<Item = std::io::Result<Bytes>> + use<>)> {
        self.each(pulls, skip, |remote| async move {
            let body = remote.blob(repo, digest, size).await?;
            Ok((remote.host().to_owned(), body))
        })
        .await
    }

    /// What a listing (the referrers of a digest) says, from the first host that may resolve
    /// and answers: like a tag, a listing names digests.
    pub(super) async fn listing<'s, T, F, Fut>(&'s self, ask: F) -> Result<T>
    where
        F: Fn(&'s Remote) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.each(resolves, &[], ask).await
    }

    /// A failure `e` of the body `host` sent: when a mirror sent it, the mirror is added to
    /// `avoid` and the failure made worth a retry, which the next host then serves.
    pub(super) fn pass_over(&self, host: &str, e: Error, avoid: &Mutex<Vec<String>>) -> Error {
        let pullers = self
            .hosts
            .iter()
            .filter(|s| s.target.host.capabilities.pull);
        let mut after = pullers.skip_while(|s| s.target.host.authority != host);
        let mirror = after.next().is_some_and(|s| s.target.ns.is_some());
        // The last host that may pull has no other to pass the blob to.
        if !mirror || after.next().is_none() || !passes(&e) {
            return e;
        }
        tracing::warn!(host, registry = self.host(), error = %e, "a mirror sent a bad body; trying the next host");
        avoid
            .lock()
            .expect("hosts passed over")
            .push(host.to_owned());
        Error::unavailable(naming(host, &e))
    }

    /// `ask` of each host that `need` admits, other than those in `skip`, in order, until one
    /// answers.
    async fn each<'s, T, F, Fut>(
        &'s self,
        need: fn(&Capabilities) -> bool,
        skip: &[String],
        ask: F,
    ) -> Result<T>
    where
        F: Fn(&'s Remote) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let able: Vec<&Source> = self
            .hosts
            .iter()
            .filter(|s| need(&s.target.host.capabilities))
            .filter(|s| !skip.contains(&s.target.host.authority))
            .collect();
        let mut failed = Vec::new();
        for (i, source) in able.iter().enumerate() {
            let is_last = i + 1 == able.len();
            let host = &source.target.host.authority;
            let answer = match self.reach(source, is_last).await {
                Ok(Some(remote)) => ask(remote).await.map_err(|e| remote.told(e)),
                Ok(None) => {
                    let down = source.down.lock().expect("host state").clone();
                    failed.extend(down);
                    continue;
                }
                Err(e) => Err(e),
            };
            match answer {
                Ok(v) => {
                    self.note(source);
                    return Ok(v);
                }
                Err(e) if !is_last && passes(&e) => {
                    tracing::warn!(host, registry = self.host(), error = %e, "a mirror failed; trying the next host");
                    failed.push(naming(host, &e));
                }
                Err(e) => return Err(after(e, &failed)),
            }
        }
        Err(match failed.pop() {
            Some(last) => Error::unavailable(after_text(last, &failed)),
            None => self.nobody(),
        })
    }

    /// The host's connection, made on its first use; `None` once it could not be made and its
    /// failure (kept in `down`) passes requests on. Requests that waited for that first attempt
    /// make no other: a dead mirror costs a pull one attempt, not one per blob in flight.
    async fn reach<'s>(&'s self, source: &'s Source, is_last: bool) -> Result<Option<&'s Remote>> {
        let host = &source.target.host.authority;
        let connect = || async {
            if source.down.lock().expect("host state").is_some() {
                return Err(None);
            }
            match Remote::connect(self.config, &source.target, self.reference, Pull).await {
                Ok(remote) => Ok(remote),
                Err(e) if !is_last && passes(&e) => {
                    tracing::warn!(host, registry = self.host(), error = %e, "a mirror failed; trying the next host");
                    *source.down.lock().expect("host state") = Some(naming(host, &e));
                    Err(None)
                }
                Err(e) => Err(Some(e)),
            }
        };
        match source.remote.get_or_try_init(connect).await {
            Ok(remote) => Ok(Some(remote)),
            Err(None) => Ok(None),
            Err(Some(e)) => Err(e),
        }
    }

    fn note(&self, source: &Source) {
        if source.target.ns.is_none() {
            return;
        }
        let host = &source.target.host.authority;
        if self
            .served
            .lock()
            .expect("served mirrors")
            .insert(host.clone())
        {
            tracing::info!(mirror = %host, registry = self.host(), "a mirror serves the pull");
        }
    }

    fn nobody(&self) -> Error {
        let file = self.file.as_deref().unwrap_or(Path::new("hosts.toml"));
        Error::InvalidArgument(format!(
            "{}: no host there may serve this request for {}",
            file.display(),
            self.reference.whole()
        ))
    }
}

fn pulls(c: &Capabilities) -> bool {
    c.pull
}

/// A tag resolves only where the digest it names can be pulled too: containerd's
/// `filterHosts(Pull|Resolve)`.
fn resolves(c: &Capabilities) -> bool {
    c.pull && c.resolve
}

/// The last host's failure `e`, saying what the mirrors before it said.
fn after(e: Error, failed: &[String]) -> Error {
    let say = |m: String| after_text(m, failed);
    match e {
        Error::NotFound(m) => Error::NotFound(say(m)),
        Error::InvalidArgument(m) => Error::InvalidArgument(say(m)),
        Error::Unauthenticated(m) => Error::Unauthenticated(say(m)),
        Error::Denied(m) => Error::Denied(say(m)),
        Error::NoPlatform(m) => Error::NoPlatform(say(m)),
        Error::BadRemote(m) => Error::BadRemote(say(m)),
        Error::Unavailable { message, retry } => Error::Unavailable {
            message: say(message),
            retry,
        },
        e @ Error::Store(_) => e,
    }
}

/// A host's failure, naming the host once.
fn naming(host: &str, e: &Error) -> String {
    let said = e.to_string();
    match said.contains(host) {
        true => said,
        false => format!("{host}: {said}"),
    }
}

fn after_text(message: String, failed: &[String]) -> String {
    match failed.is_empty() {
        true => message,
        false => format!("{message} (mirrors tried first: {})", failed.join("; ")),
    }
}

/// Whether a host's failure passes the request to the next host: anything the host did, not a
/// misconfiguration (a CA that cannot be read) or the store's own failure.
fn passes(e: &Error) -> bool {
    !matches!(e, Error::InvalidArgument(_) | Error::Store(_))
}

#[cfg(test)]
mod tests;
