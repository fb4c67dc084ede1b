//! [`Leases`]: what keeps written blobs from collection until an image uses them, and the
//! janitor's timing (expired leases and idle writes).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use super::Store;
use super::content::{now, now_ms};
use crate::content::{expiry, rules};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::limits::{MAX_LEASES, MAX_LEASES_PER_OWNER};
use crate::meta::{LeaseMade, Meta};

/// The store's leases, from [`Store::leases`].
#[derive(Clone, Copy)]
pub struct Leases<'a>(pub(super) &'a Store);

/// A lease just created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Names it in later calls.
    pub id: String,
    /// When it expires, unix seconds.
    pub expires_at: i64,
}

/// A lease as [`Leases::list`] tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Names it in later calls.
    pub id: String,
    /// The uid of the client that made it; `None` for hyperd's own (a pull's or push's), and for
    /// a lease made before hyperd recorded owners (its `created_at` is `None` too).
    pub owner: Option<u32>,
    /// Unix seconds; `None` for a lease made before hyperd recorded it.
    pub created_at: Option<i64>,
    /// When it expires, unix seconds.
    pub expires_at: i64,
    /// How many blobs it holds.
    pub blobs: u64,
}

/// Each lease's expiry, by ID, the shared ones included, and who made each: the database holds
/// the leases, this says when to look and whose quota each counts against.
pub(super) struct Expiries {
    leases: Mutex<BTreeMap<String, i64>>,
    /// Never locked while `leases` is, nor the other way round.
    makers: Mutex<HashMap<String, LeaseMade>>,
    /// Told when a lease that expires sooner than the others is created, or a write began.
    wake: Notify,
}

impl Expiries {
    pub(super) fn open(meta: &Meta) -> Result<Self> {
        Ok(Expiries {
            leases: Mutex::new(meta.lease_expiries()?),
            makers: Mutex::new(meta.lease_makers()?),
            wake: Notify::new(),
        })
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        self.leases.lock().expect("lease table lock poisoned")
    }

    fn makers(&self) -> std::sync::MutexGuard<'_, HashMap<String, LeaseMade>> {
        self.makers.lock().expect("lease makers lock poisoned")
    }

    /// Forgets the leases `ids`, deleted from the database.
    fn forget(&self, ids: &[String]) {
        let mut leases = self.leases();
        for id in ids {
            leases.remove(id);
        }
        drop(leases);
        let mut makers = self.makers();
        for id in ids {
            makers.remove(id);
        }
    }

    /// How many leases there are, but for those `skip` names.
    pub(super) fn count(&self, skip: impl Fn(&str) -> bool) -> u64 {
        self.leases().keys().filter(|id| !skip(id)).count() as u64
    }

    /// The janitor may be asleep until later than something just begun could expire.
    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Leases<'_> {
    fn expiries(&self) -> &Expiries {
        &self.0.inner.expiries
    }

    /// A new lease of `ttl` seconds (0: the default) of hyperd's own, for a transfer: counted
    /// against no uid's quota, only the total.
    pub async fn create(self, ttl: u64) -> Result<Lease> {
        let ttl = rules::lease_ttl(ttl)?;
        let _guard = self.0.inner.commit.lock().await;
        self.new_lease(ttl, None)
    }

    /// A new lease of `ttl` seconds (0: the default) for the client `owner` (a uid), who may
    /// hold at most [`MAX_LEASES_PER_OWNER`].
    pub async fn create_as(self, owner: u32, ttl: u64) -> Result<Lease> {
        let ttl = rules::lease_ttl(ttl)?;
        let _guard = self.0.inner.commit.lock().await;
        self.new_lease(ttl, Some(owner))
    }

    /// The leases clients and transfers made (not the shared ones), in ID order: all of them
    /// for `owner` `None`, else those `owner` made.
    pub fn list(self, owner: Option<u32>) -> Result<Vec<LeaseInfo>> {
        let blobs = self.0.inner.meta.lease_blob_counts()?;
        let expiries = self.expiries().leases().clone();
        let makers = self.expiries().makers().clone();
        let leases = expiries
            .into_iter()
            .filter(|(id, _)| !rules::is_shared_lease(id))
            .map(|(id, expires_at)| {
                let made = makers.get(&id);
                LeaseInfo {
                    owner: made.and_then(|m| m.owner),
                    created_at: made.map(|m| m.created_at),
                    expires_at,
                    blobs: blobs.get(&id).copied().unwrap_or(0),
                    id,
                }
            })
            .filter(|l| owner.is_none() || l.owner == owner)
            .collect();
        Ok(leases)
    }

    /// Puts the stored blobs `digests` on lease `id`, so nothing collects them while it lives
    /// (a push reading them while an `rmi` runs). [`Error::NotFound`] names one not stored.
    pub async fn hold_blobs(self, id: &str, digests: &[Digest]) -> Result<()> {
        self.check(id, None)?;
        let _guard = self.0.inner.commit.lock().await;
        for digest in digests {
            if self.0.inner.blobs.size(digest)?.is_none() {
                return Err(Error::NotFound(format!("blob {digest} is not stored")));
            }
            self.hold(Some(id), digest)?;
        }
        Ok(())
    }

    /// Deletes a lease, whoever made it; the blobs only it held are collected.
    pub async fn delete(self, id: &str) -> Result<()> {
        self.delete_as(None, id).await
    }

    /// Deletes a lease `owner` made (`None`: any lease); the blobs only it held are collected.
    /// Another's lease is [`Error::NotFound`], as if absent.
    pub async fn delete_as(self, owner: Option<u32>, id: &str) -> Result<()> {
        if rules::is_shared_lease(id) || !self.is_owned_by(id, owner) {
            return Err(Error::NotFound(format!("no lease {id:?}")));
        }
        let held = {
            let _guard = self.0.inner.commit.lock().await;
            let (gone, held) = self.0.inner.meta.delete_leases(&[id.to_owned()])?;
            self.expiries().forget(&gone);
            if gone.is_empty() {
                return Err(Error::NotFound(format!("no lease {id:?}")));
            }
            held
        };
        tracing::info!(lease = id, "lease deleted");
        self.0.collect(&held).await.map(drop)
    }

    /// Drops the leases expired now and the writes idle for `write_expiry` seconds, then
    /// collects what only those leases held.
    pub async fn expire(self, write_expiry: u64) -> Result<()> {
        let inner = &self.0.inner;
        for reference in inner.writes.drop_expired(write_expiry, now_ms()) {
            tracing::info!(reference, "idle write expired");
        }
        let expired = expiry::leases(&self.expiries().leases(), now());
        if expired.is_empty() {
            return Ok(());
        }
        let held = {
            let _guard = inner.commit.lock().await;
            let (_, held) = inner.meta.delete_leases(&expired)?;
            self.expiries().forget(&expired);
            held
        };
        tracing::info!(count = expired.len(), "leases expired");
        self.0.collect(&held).await.map(drop)
    }

    /// How long until the next lease or idle write expires (zero when one is due).
    pub fn next_expiry(self, write_expiry: u64) -> Option<std::time::Duration> {
        let writes = self.0.inner.writes.touched_ms();
        let at = expiry::next_ms(&self.expiries().leases(), writes, write_expiry)?;
        let ms = at.saturating_sub(now_ms()).max(0) as u64;
        Some(std::time::Duration::from_millis(ms))
    }

    /// Resolves when a lease that expires before all others was created, or a write began.
    pub async fn expiry_changed(self) {
        self.expiries().wake.notified().await
    }

    /// Whether `owner` may use lease `id`: it made it, or `owner` is `None` (root or hyperd).
    /// A lease made before hyperd recorded makers has no record: any client may still use and
    /// delete it, as it could when it was made, so an upgrade strands no client mid-transfer.
    fn is_owned_by(&self, id: &str, owner: Option<u32>) -> bool {
        match owner {
            None => true,
            Some(uid) => self
                .expiries()
                .makers()
                .get(id)
                .is_none_or(|m| m.owner == Some(uid)),
        }
    }

    /// [`Error::NotFound`] unless `id` is a live lease a client created, and `owner` made it
    /// (`owner` `None`: anyone did).
    pub(super) fn check(&self, id: &str, owner: Option<u32>) -> Result<()> {
        if rules::is_shared_lease(id) || !self.is_owned_by(id, owner) {
            return Err(Error::NotFound(format!("no lease {id:?}")));
        }
        match self.expiries().leases().get(id) {
            Some(at) if *at > now() => Ok(()),
            Some(_) => Err(Error::NotFound(format!("lease {id:?} has expired"))),
            None => Err(Error::NotFound(format!("no lease {id:?}"))),
        }
    }

    /// Keeps `digest` from collection: in `lease`, or without one in the shared lease of the
    /// hour, unless an image record lists it (a root already). The caller holds the commit
    /// lock, so no image can go between the look and the hold.
    pub(super) fn hold(&self, lease: Option<&str>, digest: &Digest) -> Result<()> {
        let now = now();
        let meta = &self.0.inner.meta;
        let id = match lease {
            Some(id) => id.to_owned(),
            None if meta.is_referenced(digest) => return Ok(()),
            None => {
                let (id, expires_at) = rules::shared_lease(now);
                if !self.expiries().leases().contains_key(&id) {
                    meta.put_lease(&id, expires_at, None)?;
                    self.track(&id, expires_at);
                }
                id
            }
        };
        meta.add_to_lease(&id, digest, now)
    }

    /// Refuses a lease past `owner`'s quota or the total. The caller holds the commit lock.
    fn check_room(&self, owner: Option<u32>) -> Result<()> {
        let makers = self.expiries().makers();
        if let Some(uid) = owner {
            let held = makers.values().filter(|m| m.owner == owner).count();
            if held >= MAX_LEASES_PER_OWNER {
                return Err(Error::QuotaExceeded(format!(
                    "uid {uid} holds {MAX_LEASES_PER_OWNER} leases, its quota; delete some first"
                )));
            }
        }
        drop(makers);
        let held = self
            .expiries()
            .leases()
            .keys()
            .filter(|id| !rules::is_shared_lease(id))
            .count();
        if held >= MAX_LEASES {
            return Err(Error::ResourceExhausted(format!(
                "{MAX_LEASES} leases exist; delete some first"
            )));
        }
        Ok(())
    }

    /// The caller holds the commit lock.
    fn new_lease(&self, ttl: u64, owner: Option<u32>) -> Result<Lease> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        self.check_room(owner)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!(
            "{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let id = Digest::of(seed.as_bytes()).hex()[..32].to_owned();
        let created_at = now();
        let expires_at = created_at.saturating_add_unsigned(ttl);
        let made = LeaseMade { created_at, owner };
        self.0.inner.meta.put_lease(&id, expires_at, Some(made))?;
        self.expiries().makers().insert(id.clone(), made);
        self.track(&id, expires_at);
        Ok(Lease { id, expires_at })
    }

    /// Tells the janitor about a lease just stored, waking it if this one expires first.
    fn track(&self, id: &str, expires_at: i64) {
        let mut leases = self.expiries().leases();
        let sooner = leases.values().all(|at| *at > expires_at);
        leases.insert(id.to_owned(), expires_at);
        drop(leases);
        if sooner {
            self.expiries().wake();
        }
    }
}
