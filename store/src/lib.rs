//! A content-addressed OCI image store over one root directory.
//!
//! ```text
//! <root>/                   mode 0700
//! <root>/meta.redb          tags, image and referrer records and their indexes, leases,
//!                           images' last uses and pins (redb)
//! <root>/blobs/sha256/<hex> immutable blobs, visible only once their digest was checked
//! <root>/ingest/<load>/     a load's staged blobs; moved into blobs/ when the load commits
//! <root>/ingest/content/    content writes in progress; moved into blobs/ once verified
//! ```
//!
//! Imports read OCI image layouts and docker-archives as one tar stream and extract nothing;
//! exports stream blobs straight from their files. See ARCHITECTURE.md for the invariants.
#![warn(missing_docs)]

mod blob;
mod content;
mod decompress;
mod digest;
mod document;
mod error;
mod export;
mod image;
mod import;
pub mod limits;
mod listing;
mod meta;
mod ops;
mod policy;
mod progress;
mod reference;
mod referrer;
mod store;
mod usage;
mod walk;

pub use blob::{BlobCounts, Collected, Filesystem};
pub use content::WriteStatus;
pub use digest::Digest;
pub use document::{BlobRef, Document, Entry, own_media_type};
pub use error::{Error, Result};
pub use image::{ImageRecord, OCI_INDEX, Platform, document_types, is_index, is_manifest};
pub use import::Piece;
pub use listing::{ListFilter, MAX_PAGE};
pub use ops::Removed;
pub use policy::{GcPolicy, Rule, Watermarks};
pub use progress::{CheckCounted, CheckProgress, Progress};
pub use reference::ImageName;
pub use referrer::{ReferrerRecord, Referrers};
pub use store::Stats;
pub use store::{
    Began, BlobRead, CheckReport, Content, ContentWrite, Created, Enforced, Enforcement, Format,
    ImageGraph, ImageSummary, Images, Inspection, Lease, LeaseInfo, Leases, ListPage, Loaded,
    LoadedImage, NamePage, PruneOptions, Pruned, SaveItem, SaveJob, Store, Upload, Usage,
    WriteOutcome, WriteStart, Written,
};
pub use usage::{DiskUsage, ImageUsage};
pub use walk::{Graph, ImageConfig, Source, Visited, Walker};
