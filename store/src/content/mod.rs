//! Content writes: blobs a client sends by digest, in pieces, over one stream or several. A
//! write's partial file lives under `ingest/content/` (dropped at start-up) and its hash state in
//! memory, and nothing reaches `blobs/` before its size and sha256 were checked. The store facade
//! adds leases and the metadata; nothing here touches the database.

pub(crate) mod expiry;
pub(crate) mod rules;
mod uploads;
mod write;
mod writes;

pub(crate) use uploads::{UploadCheckout, Uploads};
pub(crate) use write::{Verified, Writer};
pub use writes::WriteStatus;
pub(crate) use writes::{Checkout, Owner, Writes};
