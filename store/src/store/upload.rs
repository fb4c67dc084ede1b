//! [`Upload`]: a blob pushed in pieces whose digest comes last (the registry endpoint's
//! uploads), and blobs held for a push that mounts them. A finished upload is published as a
//! content write is: verified, synced, held by the shared lease of the hour until an image uses
//! it, then visible.

use super::Store;
use super::content::Content;
use super::write::{WriteOutcome, Written};
use crate::content::UploadCheckout;
use crate::digest::Digest;
use crate::error::Result;

/// One request's hold on an upload, from [`Content::upload`]. Dropped unfinished, the upload
/// stays open for the next request.
pub struct Upload {
    store: Store,
    checkout: Option<UploadCheckout>,
}

impl Content<'_> {
    /// Opens an empty upload under `id`: a name the caller made unguessable, since whoever
    /// knows it may append to it. At most [`crate::limits::MAX_OPEN_UPLOADS`] are open.
    pub async fn begin_upload(self, id: &str) -> Result<()> {
        let (uploads, id) = (self.0.inner.uploads.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || uploads.begin(&id))
            .await
            .expect("upload thread panicked")
    }

    /// Takes the upload `id` for one request: [`crate::Error::NotFound`] when no upload is
    /// open under it, [`crate::Error::Conflict`] while another request holds it.
    pub fn upload(self, id: &str) -> Result<Upload> {
        let checkout = self.0.inner.uploads.checkout(id)?;
        Ok(Upload {
            store: self.0.clone(),
            checkout: Some(checkout),
        })
    }

    /// Drops the upload `id` and what it received.
    pub fn cancel_upload(self, id: &str) -> Result<()> {
        self.0.inner.uploads.cancel(id)
    }

    /// Holds the stored blob `digest` by the shared lease of the hour, as a finished upload is
    /// held, so that a push mounting it keeps it until its image arrives; `false` when the
    /// store does not hold it.
    pub async fn hold_for_push(self, digest: &Digest) -> Result<bool> {
        let inner = &self.0.inner;
        let _guard = inner.commit.lock().await;
        if inner.blobs.size(digest)?.is_none() {
            return Ok(false);
        }
        self.0.leases().hold(None, digest)?;
        Ok(true)
    }
}

impl Upload {
    /// Bytes received so far.
    pub fn offset(&self) -> u64 {
        self.checkout.as_ref().map_or(0, UploadCheckout::offset)
    }

    /// Appends `data`. After an error the upload is in an unknown state: cancel it.
    pub async fn write<D>(&mut self, data: D) -> Result<()>
    where
        D: AsRef<[u8]> + Send + 'static,
    {
        let mut checkout = self.checkout.take().expect("an upload holds its checkout");
        let (checkout, result) = tokio::task::spawn_blocking(move || {
            let r = checkout.put(data.as_ref());
            (checkout, r)
        })
        .await
        .expect("upload thread panicked");
        self.checkout = Some(checkout);
        result
    }

    /// Ends the upload as the blob `digest`, which its bytes must hash to
    /// ([`crate::Error::DigestMismatch`] otherwise); either way the upload is gone. The blob is
    /// held by the shared lease of the hour, then published.
    pub async fn finish(mut self, digest: &Digest) -> Result<Written> {
        let bytes = self.offset();
        let taken = self.checkout.take().expect("an upload holds its checkout");
        let wanted = digest.clone();
        let verified = tokio::task::spawn_blocking(move || taken.finish(&wanted))
            .await
            .expect("upload thread panicked")?;
        let inner = &self.store.inner;
        let outcome = {
            let _guard = inner.commit.lock().await;
            let stored = inner.blobs.size(digest)?.is_some();
            self.store.leases().hold(None, digest)?;
            if !stored {
                inner.blobs.publish_file(verified.path(), digest)?;
            }
            match stored {
                true => WriteOutcome::AlreadyStored,
                false => WriteOutcome::Committed,
            }
        };
        tracing::info!(%digest, bytes, "upload stored");
        Ok(Written {
            digest: digest.clone(),
            offset: bytes,
            outcome,
        })
    }
}
