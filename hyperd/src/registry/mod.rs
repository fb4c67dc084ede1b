//! Pull and push against OCI registries (the distribution spec), above the store and beside
//! the gRPC services: nothing here knows gRPC. Progress goes out as plain [`Event`]s; the
//! credential comes with each request and lives only as long as it.

mod endpoint;
mod error;
mod graph;
mod hosts;
mod lease;
mod login;
mod mirrors;
mod plan;
mod platform;
mod pull;
mod push;
mod referrers;
mod remote;
mod through;
mod token;
mod upload;

use oci_client::secrets::RegistryAuth;
use store::{BlobRef, Digest};
use tokio::sync::mpsc;

pub use endpoint::Config;
pub(crate) use error::Error;
#[cfg(test)]
pub(crate) use error::Retry;
pub(crate) use login::login;
pub(crate) use pull::{PullOptions, Pulled, pull};
pub(crate) use push::push;
pub(crate) use through::{Credentials, PullThrough};

/// How many blobs one pull or push moves at once.
const PARALLEL_BLOBS: usize = 3;

/// The credential for the one registry a request names. Its `Debug` shows no secret.
#[derive(Clone, Default)]
pub(crate) struct Credential {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) token: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credential {
    fn to_auth(&self) -> RegistryAuth {
        if !self.token.is_empty() {
            RegistryAuth::Bearer(self.token.clone())
        } else if !self.username.is_empty() {
            RegistryAuth::Basic(self.username.clone(), self.password.clone())
        } else {
            RegistryAuth::Anonymous
        }
    }
}

/// Where a blob's transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlobState {
    Waiting,
    Moving,
    Done,
    /// The destination holds it already.
    Present,
    /// Mounted from another repository.
    Mounted,
}

#[derive(Clone, Debug)]
pub(crate) enum Event {
    /// What a pull's reference named, and the blobs it will store.
    Resolved {
        digest: Digest,
        media_type: String,
        blobs: Vec<BlobRef>,
    },
    Blob(BlobEvent),
}

/// Where one blob of a transfer stands.
#[derive(Clone, Debug)]
pub(crate) struct BlobEvent {
    pub(crate) digest: Digest,
    pub(crate) state: BlobState,
    pub(crate) done: u64,
    pub(crate) total: u64,
    /// The repository a mounted blob came from.
    pub(crate) from: Option<String>,
}

/// Where a transfer reports. A client slow to read misses byte counts, never a state change.
#[derive(Clone)]
pub(crate) struct Events(mpsc::Sender<Event>);

impl Events {
    pub(crate) fn new(tx: mpsc::Sender<Event>) -> Self {
        Events(tx)
    }

    async fn send(&self, event: Event) {
        let _ = self.0.send(event).await;
    }

    async fn blob(&self, digest: &Digest, state: BlobState, done: u64, total: u64) {
        self.send(Event::Blob(BlobEvent {
            digest: digest.clone(),
            state,
            done,
            total,
            from: None,
        }))
        .await;
    }

    fn bytes(&self, digest: &Digest, done: u64, total: u64) {
        let _ = self.0.try_send(Event::Blob(BlobEvent {
            digest: digest.clone(),
            state: BlobState::Moving,
            done,
            total,
            from: None,
        }));
    }
}

/// Parses a docker-style reference (`busybox`, `host:5000/a/b:1`, `x/y@sha256:…`); a bad one is
/// refused as the store refuses a bad name, so pull, push and tag give it the same reason.
fn parse_reference(s: &str) -> Result<oci_client::Reference, Error> {
    s.parse().map_err(|e: oci_client::ParseError| {
        Error::Store(store::Error::InvalidReference {
            reference: s.to_owned(),
            reason: e.to_string(),
        })
    })
}

/// The manifest `digest` in the repository of `reference`.
fn by_digest(reference: &oci_client::Reference, digest: &Digest) -> oci_client::Reference {
    oci_client::Reference::with_digest(
        reference.registry().to_owned(),
        reference.repository().to_owned(),
        digest.to_string(),
    )
}
