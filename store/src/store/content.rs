//! The content API on the facade: blobs by digest (info, ranged reads), writes in pieces, and
//! leases that keep written blobs from collection until an image uses them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncSeekExt;
use tokio::sync::Notify;

use super::Store;
use crate::blob::Blobs;
use crate::content::{Checkout, WriteStatus, Writes, expiry, rules};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::limits::MAX_LEASES;
use crate::meta::Meta;

/// The content side of the store's state.
pub(super) struct Content {
    writes: Arc<Writes>,
    /// Each lease's expiry, by ID, the shared ones included: the database holds the leases,
    /// this says when to look.
    leases: Mutex<BTreeMap<String, i64>>,
    /// Told when a lease that expires sooner than the others is created.
    wake: Notify,
}

impl Content {
    pub(super) fn open(blobs: &Blobs, meta: &Meta) -> Result<Self> {
        Ok(Content {
            writes: Writes::new(blobs.content_ingest()),
            leases: Mutex::new(meta.lease_expiries()?),
            wake: Notify::new(),
        })
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        self.leases.lock().expect("lease table lock poisoned")
    }
}

/// The first message of a write.
#[derive(Clone, Debug)]
pub struct WriteStart {
    /// Names the write, so a later stream can resume it.
    pub reference: String,
    /// The digest the bytes must hash to.
    pub expected: Digest,
    /// The blob's size.
    pub total: u64,
    /// The lease to add the blob to. Without one the blob joins the shared lease of the hour
    /// (held one to two hours), unless an image uses it already.
    pub lease: Option<String>,
    /// 0 to start (or restart), or the offset an open write under the ref is at, to resume it.
    pub offset: u64,
}

/// Where a write ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The blob's digest.
    pub digest: Digest,
    /// Bytes the store holds of it.
    pub offset: u64,
    /// The blob is stored.
    pub committed: bool,
    /// It was stored already; no bytes were read.
    pub already_stored: bool,
}

/// What a write's first message led to.
pub enum Began {
    /// Nothing more to read: the blob was stored already (or was empty).
    Done(Written),
    /// Send the bytes to [`ContentWrite::write`].
    Open(Box<ContentWrite>),
}

/// One stream's write. Dropped before it commits, the write stays open for a later stream to
/// resume.
pub struct ContentWrite {
    store: Store,
    checkout: Option<Checkout>,
    lease: Option<String>,
    expected: Digest,
}

pub(crate) fn now() -> i64 {
    now_ms().div_euclid(1000)
}

/// Writes are timed in milliseconds, so that a short write expiry is not a second early.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ContentWrite {
    fn checkout(&self) -> &Checkout {
        self.checkout.as_ref().expect("a write holds its checkout")
    }

    /// Bytes held so far.
    pub fn offset(&self) -> u64 {
        self.checkout().offset()
    }

    /// Where the write stands when its stream ends before the total.
    pub fn pending(&self) -> Written {
        Written {
            digest: self.expected.clone(),
            offset: self.offset(),
            committed: false,
            already_stored: false,
        }
    }

    /// Appends `data`; commits when the write reaches its total. Bytes past the total, a digest
    /// mismatch, a lease deleted or expired meanwhile, or any other failure drop the write: after
    /// an error, drop this too.
    pub async fn write<D>(&mut self, data: D) -> Result<Option<Written>>
    where
        D: AsRef<[u8]> + Send + 'static,
    {
        let mut checkout = self.checkout.take().expect("a write holds its checkout");
        let now = now_ms();
        let (checkout, result) = tokio::task::spawn_blocking(move || {
            let r = checkout.put(data.as_ref(), now);
            (checkout, r)
        })
        .await
        .expect("write thread panicked");
        self.checkout = Some(checkout);
        result?;
        if self.checkout().is_complete() {
            return self.commit().await.map(Some);
        }
        Ok(None)
    }

    /// Resolves once the write is aborted or expires.
    pub async fn aborted(&self) {
        self.checkout().aborted().await
    }

    /// Verifies and syncs the blob, adds it to its lease (persisted) and only then publishes it:
    /// it is never visible unverified, and never collectable once visible.
    async fn commit(&mut self) -> Result<Written> {
        let mut checkout = self.checkout.take().expect("a write holds its checkout");
        let total = checkout.offset();
        let (checkout, verified) = tokio::task::spawn_blocking(move || {
            let v = checkout.finish();
            (checkout, v)
        })
        .await
        .expect("write thread panicked");
        let verified = verified?;
        let inner = &self.store.inner;
        {
            let _guard = inner.commit.lock().await;
            self.store.hold(self.lease.as_deref(), &verified.digest)?;
            inner
                .blobs
                .publish_file(verified.path(), &verified.digest)?;
        }
        tracing::info!(digest = %verified.digest, reference = checkout.reference(), "blob written");
        drop(verified);
        drop(checkout);
        Ok(Written {
            digest: self.expected.clone(),
            offset: total,
            committed: true,
            already_stored: false,
        })
    }
}

impl Store {
    /// The size of each blob the store holds, `None` for the others, in the order asked.
    pub async fn blob_sizes(&self, digests: Vec<Digest>) -> Result<Vec<Option<u64>>> {
        // Up to one stat per digest, 10,000 for one Info: off the async threads.
        let blobs = self.inner.blobs.clone();
        tokio::task::spawn_blocking(move || digests.iter().map(|d| blobs.size(d)).collect())
            .await
            .expect("blob size thread panicked")
    }

    /// The blob `digest`, positioned at `offset`, and how many bytes from there to read
    /// (`length` 0: to the end). An open file stays readable if collection unlinks the blob.
    pub async fn read_blob(
        &self,
        digest: &Digest,
        offset: u64,
        length: u64,
    ) -> Result<(tokio::fs::File, u64)> {
        let path = self.inner.blobs.path(digest);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::NotFound(format!("blob {digest} is not stored"))
                }
                _ => Error::Io {
                    context: format!("opening {}", path.display()),
                    source: e,
                },
            })?;
        let size = file
            .metadata()
            .await
            .context(|| format!("looking at {}", path.display()))?
            .len();
        let len = rules::read_len(digest, size, offset, length)?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .context(|| format!("seeking in {}", path.display()))?;
        Ok((file, len))
    }

    /// Starts, restarts or resumes a write as its first message asks. A blob the store holds
    /// already is answered at once (and added to the lease); a write left open under the ref is
    /// dropped, but never one another stream is writing.
    pub async fn begin_write(&self, start: WriteStart) -> Result<Began> {
        rules::check_ref(&start.reference)?;
        rules::check_total(start.total)?;
        if let Some(id) = &start.lease {
            self.check_lease(id)?;
        }
        {
            let _guard = self.inner.commit.lock().await;
            if let Some(size) = self.inner.blobs.size(&start.expected)? {
                if size != start.total {
                    return Err(Error::InvalidArgument(format!(
                        "{} is stored with {size} bytes, not {}",
                        start.expected, start.total
                    )));
                }
                self.hold(start.lease.as_deref(), &start.expected)?;
                self.inner.content.writes.drop_idle(&start.reference);
                return Ok(Began::Done(Written {
                    digest: start.expected,
                    offset: size,
                    committed: true,
                    already_stored: true,
                }));
            }
        }
        let checkout = self.inner.content.writes.checkout(
            &start.reference,
            &start.expected,
            start.total,
            start.offset,
            now_ms(),
        )?;
        // The janitor may be asleep until later than this write could expire.
        self.inner.content.wake.notify_one();
        let mut write = ContentWrite {
            store: self.clone(),
            checkout: Some(checkout),
            lease: start.lease,
            expected: start.expected,
        };
        if write.checkout().is_complete() {
            return write.commit().await.map(Began::Done);
        }
        Ok(Began::Open(Box::new(write)))
    }

    /// Where the write under `reference` stands.
    pub fn write_status(&self, reference: &str) -> Result<WriteStatus> {
        self.inner
            .content
            .writes
            .status(reference)
            .ok_or_else(|| Error::NotFound(format!("no write under ref {reference:?}")))
    }

    /// Drops the write under `reference`; a stream writing it ends with ABORTED.
    pub fn abort_write(&self, reference: &str) -> Result<()> {
        if !self.inner.content.writes.abort(reference) {
            return Err(Error::NotFound(format!("no write under ref {reference:?}")));
        }
        tracing::info!(reference, "write aborted");
        Ok(())
    }

    /// A new lease of `ttl` seconds (0: the default); returns its ID and expiry.
    pub async fn create_lease(&self, ttl: u64) -> Result<(String, i64)> {
        let ttl = rules::lease_ttl(ttl)?;
        let _guard = self.inner.commit.lock().await;
        self.new_lease(ttl)
    }

    /// Puts the stored blobs `digests` on lease `id`, so nothing collects them while it lives
    /// (a push reading them while an `rmi` runs). [`Error::NotFound`] names one not stored.
    pub async fn hold_blobs(&self, id: &str, digests: &[Digest]) -> Result<()> {
        self.check_lease(id)?;
        let _guard = self.inner.commit.lock().await;
        for digest in digests {
            if self.inner.blobs.size(digest)?.is_none() {
                return Err(Error::NotFound(format!("blob {digest} is not stored")));
            }
            self.hold(Some(id), digest)?;
        }
        Ok(())
    }

    /// Deletes a lease; the blobs only it held are collected.
    pub async fn delete_lease(&self, id: &str) -> Result<()> {
        if rules::is_shared_lease(id) {
            return Err(Error::NotFound(format!("no lease {id:?}")));
        }
        {
            let _guard = self.inner.commit.lock().await;
            let gone = self.inner.meta.delete_leases(&[id.to_owned()])?;
            self.inner.content.leases().remove(id);
            if gone.is_empty() {
                return Err(Error::NotFound(format!("no lease {id:?}")));
            }
        }
        tracing::info!(lease = id, "lease deleted");
        self.gc().await.map(drop)
    }

    /// Drops the leases expired now and the writes idle for `write_expiry` seconds, then
    /// collects what only those leases held.
    pub async fn expire(&self, write_expiry: u64) -> Result<()> {
        for reference in self
            .inner
            .content
            .writes
            .drop_expired(write_expiry, now_ms())
        {
            tracing::info!(reference, "idle write expired");
        }
        let expired = expiry::leases(&self.inner.content.leases(), now());
        if expired.is_empty() {
            return Ok(());
        }
        {
            let _guard = self.inner.commit.lock().await;
            self.inner.meta.delete_leases(&expired)?;
            let mut leases = self.inner.content.leases();
            for id in &expired {
                leases.remove(id);
            }
        }
        tracing::info!(count = expired.len(), "leases expired");
        self.gc().await.map(drop)
    }

    /// How long until the next lease or idle write expires (zero when one is due).
    pub fn next_expiry(&self, write_expiry: u64) -> Option<std::time::Duration> {
        let writes = self.inner.content.writes.touched_ms();
        let at = expiry::next_ms(&self.inner.content.leases(), writes, write_expiry)?;
        let ms = at.saturating_sub(now_ms()).max(0) as u64;
        Some(std::time::Duration::from_millis(ms))
    }

    /// Resolves when a lease that expires before all others was created, or a write began.
    pub async fn expiry_changed(&self) {
        self.inner.content.wake.notified().await
    }

    fn check_lease(&self, id: &str) -> Result<()> {
        if rules::is_shared_lease(id) {
            return Err(Error::NotFound(format!("no lease {id:?}")));
        }
        match self.inner.content.leases().get(id) {
            Some(at) if *at > now() => Ok(()),
            Some(_) => Err(Error::NotFound(format!("lease {id:?} has expired"))),
            None => Err(Error::NotFound(format!("no lease {id:?}"))),
        }
    }

    /// Keeps `digest` from collection: in `lease`, or without one in the shared lease of the
    /// hour, unless an image record lists it (a root already). The caller holds the commit
    /// lock, so no image can go between the look and the hold.
    fn hold(&self, lease: Option<&str>, digest: &Digest) -> Result<()> {
        let now = now();
        let id = match lease {
            Some(id) => id.to_owned(),
            None if self.inner.meta.is_referenced(digest) => return Ok(()),
            None => {
                let (id, expires_at) = rules::shared_lease(now);
                if !self.inner.content.leases().contains_key(&id) {
                    self.inner.meta.put_lease(&id, expires_at)?;
                    self.track_lease(&id, expires_at);
                }
                id
            }
        };
        self.inner.meta.add_to_lease(&id, digest, now)
    }

    /// The caller holds the commit lock.
    fn new_lease(&self, ttl: u64) -> Result<(String, i64)> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let held = self
            .inner
            .content
            .leases()
            .keys()
            .filter(|id| !rules::is_shared_lease(id))
            .count();
        if held >= MAX_LEASES {
            return Err(Error::ResourceExhausted(format!(
                "{MAX_LEASES} leases exist; delete some first"
            )));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!(
            "{}-{nanos}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let id = Digest::of(seed.as_bytes()).hex()[..32].to_owned();
        let expires_at = now().saturating_add_unsigned(ttl);
        self.inner.meta.put_lease(&id, expires_at)?;
        self.track_lease(&id, expires_at);
        Ok((id, expires_at))
    }

    /// Tells the janitor about a lease just stored, waking it if this one expires first.
    fn track_lease(&self, id: &str, expires_at: i64) {
        let mut leases = self.inner.content.leases();
        let sooner = leases.values().all(|at| *at > expires_at);
        leases.insert(id.to_owned(), expires_at);
        drop(leases);
        if sooner {
            self.inner.content.wake.notify_one();
        }
    }
}
