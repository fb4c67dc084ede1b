//! One content write as a stream drives it: its first message, its bytes, where it ended.

use super::Store;
use super::content::now_ms;
use crate::content::Checkout;
use crate::digest::Digest;
use crate::error::Result;

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
    /// Whether the blob is stored, and by whom.
    pub outcome: WriteOutcome,
}

/// How far a write got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Its stream ended before the total: the write stays open for a later stream to resume.
    Pending,
    /// This write stored the blob.
    Committed,
    /// The blob was stored already; no bytes were read.
    AlreadyStored,
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
    pub(super) store: Store,
    pub(super) checkout: Option<Checkout>,
    pub(super) lease: Option<String>,
    pub(super) expected: Digest,
}

impl ContentWrite {
    pub(super) fn checkout(&self) -> &Checkout {
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
            outcome: WriteOutcome::Pending,
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
    pub(super) async fn commit(&mut self) -> Result<Written> {
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
            self.store
                .leases()
                .hold(self.lease.as_deref(), &verified.digest)?;
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
            outcome: WriteOutcome::Committed,
        })
    }
}
