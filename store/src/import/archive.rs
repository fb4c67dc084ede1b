//! One pass over an archive's tar stream: every entry is classified, blobs are hashed into the
//! staging area as they stream by, small JSON documents are kept, and nothing is extracted.
//!
//! Streamed, 1 MiB chunks (a load's stream may run 2 MiB ahead) reach the tar reader as pieces
//! (`input.rs`) through `gate.rs`. A kept body goes through the hashing copy (`blob/copy.rs`):
//! 1 MiB buffers, 4 in flight, to a blocking thread that hashes in 256 KiB slices, writes, and
//! starts writeback every 8 MiB, so reading and parsing on one core overlap hashing and writing on
//! the other and the fsync at commit finds little left. A stored blob's body, its size checked, is
//! passed over unread (the gate hands initialised buffers down: a hole costs nothing). From a
//! handed-over file the kernel copies bodies instead (`file.rs`).

use std::collections::{HashMap, HashSet};
use std::pin::Pin;

use futures_util::StreamExt;
use oci_spec::image::{ImageIndex, ImageManifest};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use super::entry::{self, Kind, Shape};
use super::file::Direct;
use super::gate::{Gate, Gated};
use super::head::{Head, Kept};
use super::input::{Holes, Input};
use crate::blob::{self, BlobInfo, Blobs, CHUNK, Lease, Staging};
use crate::decompress::{self, Compression};
use crate::digest::Digest;
use crate::error::{Error, Result, ended_early};
use crate::limits::{MAX_ENTRIES, MAX_ENTRY_NAME, MAX_JSON};

/// What one pass over an archive found. Blobs named here are either staged or pinned.
pub(crate) struct Ingested {
    pub(crate) staging: Staging,
    pub(crate) lease: Lease,
    pub(crate) blobs: Blobs,
    /// Every blob the archive held, by digest.
    pub(crate) present: HashMap<Digest, BlobInfo>,
    /// Regular files outside `blobs/` by normalised path, to resolve docker-archive's
    /// `manifest.json` paths.
    pub(crate) files: HashMap<String, Digest>,
    /// The `blobs/sha256/<hex>` entries, by digest: their path is their digest, so they need no
    /// entry in `files` (an archive may hold a great many of them).
    pub(crate) blob_entries: HashSet<Digest>,
    /// Symlinks and hardlinks by path, with their target as an archive path.
    pub(crate) links: HashMap<String, String>,
    pub(crate) index_json: Option<Vec<u8>>,
    pub(crate) manifest_json: Option<Vec<u8>>,
    /// `oci-layout` was there (and said 1.0.0).
    pub(crate) has_layout_file: bool,
}

impl Ingested {
    fn new(blobs: &Blobs) -> Result<Self> {
        Ok(Ingested {
            staging: blobs.staging()?,
            lease: blobs.lease(),
            blobs: blobs.clone(),
            present: HashMap::new(),
            files: HashMap::new(),
            blob_entries: HashSet::new(),
            links: HashMap::new(),
            index_json: None,
            manifest_json: None,
            has_layout_file: false,
        })
    }

    /// The regular file at `path`, if the archive held one there.
    pub(crate) fn file(&self, path: &str) -> Option<Digest> {
        match entry::classify(path) {
            Ok(Kind::Blob(d)) => self.blob_entries.contains(&d).then_some(d),
            _ => self.files.get(path).cloned(),
        }
    }

    /// What the archive held of `digest`, or an error naming it as missing.
    pub(crate) fn info(&self, digest: &Digest) -> Result<&BlobInfo> {
        self.present
            .get(digest)
            .ok_or_else(|| Error::invalid(format!("blob {digest} is not in the archive")))
    }

    /// Reads a small blob the archive held, from staging or from the store.
    pub(crate) fn read_json(&self, digest: &Digest) -> Result<Vec<u8>> {
        let info = self.info(digest)?;
        if info.size > MAX_JSON {
            return Err(Error::invalid(format!(
                "blob {digest} is {} bytes, over the {MAX_JSON}-byte limit for JSON documents",
                info.size
            )));
        }
        let path = self.blob_path(digest);
        std::fs::read(&path).map_err(|e| Error::Io {
            context: format!("reading {}", path.display()),
            source: e,
        })
    }

    /// Path of a blob's bytes, staged or stored.
    pub(crate) fn blob_path(&self, digest: &Digest) -> std::path::PathBuf {
        if self.staging.contains(digest) {
            self.staging.path(digest)
        } else {
            self.blobs.path(digest)
        }
    }
}

/// Unwraps a gzip- or zstd-compressed whole archive, told apart by its magic bytes. A plain tar
/// is passed on unbuffered, so that offsets in it are the tar reader's (holes are checked by
/// offset, a handed-over file's bodies are copied by offset) and holes pass through without a
/// copy. A compressed one has no such offsets, so it may have no holes and no direct copies.
async fn decompressed(
    mut reader: Pin<Box<dyn AsyncRead + Send>>,
    holes: &Holes,
    direct: &mut Option<Direct>,
) -> Result<(Pin<Box<dyn AsyncRead + Send>>, Compression)> {
    let mut head = [0u8; 4];
    let n = blob::fill(&mut reader, &mut head)
        .await
        .map_err(|e| Error::invalid(format!("reading archive: {e}")))?;
    let compression = Compression::sniff(&head[..n]);
    let whole = std::io::Cursor::new(head[..n].to_vec()).chain(reader);
    if compression == Compression::None {
        return Ok((Box::pin(whole), compression));
    }
    holes.forbid();
    *direct = None;
    let decoder = decompress::decoder(BufReader::with_capacity(CHUNK, whole), compression);
    Ok((decoder, compression))
}

/// Sizes that index.json or an already-seen manifest promised, to refuse a lying entry before
/// reading its body. The final resolution checks everything again; this only fails earlier.
#[derive(Default)]
struct Expected {
    sizes: HashMap<Digest, u64>,
    /// Digests known to be manifests or indexes, whose children become expected in turn.
    parents: HashSet<Digest>,
}

impl Expected {
    fn learn_index(&mut self, index: &ImageIndex) {
        for d in index.manifests() {
            if let Ok(digest) = Digest::try_from(d.digest()) {
                self.sizes.insert(digest.clone(), d.size());
                self.parents.insert(digest);
            }
        }
    }

    fn learn_blob(&mut self, json: &[u8]) {
        if let Ok(index) = serde_json::from_slice::<ImageIndex>(json) {
            self.learn_index(&index);
        } else if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(json) {
            let descs = std::iter::once(manifest.config()).chain(manifest.layers());
            for d in descs {
                if let Ok(digest) = Digest::try_from(d.digest()) {
                    self.sizes.insert(digest, d.size());
                }
            }
        }
    }

    fn check(&self, digest: &Digest, size: u64, path: &str) -> Result<()> {
        match self.sizes.get(digest) {
            Some(&want) if want != size => Err(Error::invalid(format!(
                "entry {path:?} is {size} bytes but its descriptor says {want}"
            ))),
            _ => Ok(()),
        }
    }
}

/// The state of one pass.
struct Pass {
    out: Ingested,
    expected: Expected,
    /// Entries outside `blobs/` seen so far; blob entries are known by digest instead.
    seen_paths: HashSet<String>,
    entries: usize,
    /// The body of the stored blob last skipped, `(offset, length)`: where a hole may be.
    skippable: Option<(u64, u64)>,
    /// The last blob entry the store did not hold, to name it if its body was left out.
    unstored: Option<(u64, u64, Digest)>,
    holes: Holes,
    /// The file whose bodies the kernel copies, when the input is one.
    direct: Option<Direct>,
}

type Entry = tokio_tar::Entry<tokio_tar::Archive<Gated<Pin<Box<dyn AsyncRead + Send>>>>>;

/// Reads the whole archive once. On error the staging area and pins are dropped with it.
pub(crate) async fn ingest(blobs: &Blobs, mut input: Input) -> Result<Ingested> {
    let (reader, compression) = decompressed(input.reader, &input.holes, &mut input.direct).await?;
    let (reader, kept) = Head::new(reader);
    let reader: Pin<Box<dyn AsyncRead + Send>> = Box::pin(reader);
    let mut pass = Pass {
        out: Ingested::new(blobs)?,
        expected: Expected::default(),
        seen_paths: HashSet::new(),
        entries: 0,
        skippable: None,
        unstored: None,
        holes: input.holes.clone(),
        direct: input.direct,
    };
    let mut read_any = false;
    let tar_error = |e, read_any| kept.refusal(e, read_any, compression);
    let gate = Gate::default();
    let mut archive = tokio_tar::Archive::new(gate.wrap(reader));
    let mut entries = archive.entries().map_err(|e| tar_error(e, false))?;
    let mut unread = 0;
    loop {
        gate.limit(unread);
        let next = entries.next().await;
        pass.holes.disallow();
        pass.check_holes()?;
        let Some(entry) = next else {
            if !read_any && kept.is_empty() {
                return Err(Kept::empty(compression));
            }
            break;
        };
        gate.open();
        let mut entry = entry.map_err(|e| tar_error(e, read_any))?;
        read_any = true;
        unread = match pass.entry(&mut entry).await {
            Ok(unread) => unread,
            Err(e) => {
                // Bytes left out where they may not be explain any error they caused.
                pass.check_holes()?;
                return Err(e);
            }
        };
        if let Some(direct) = &pass.direct {
            // A body left unread was not read at all: it ends `unread` bytes past its start.
            direct.pass_over(entry.raw_file_position() + unread);
        }
        if unread == 0 {
            // A body the importer had no use for (a directory's, a link's, a global header's)
            // is skipped here, with the gate open: it is data, not the next entry's metadata.
            tokio::io::copy(&mut entry, &mut tokio::io::sink())
                .await
                .map_err(|e| tar_error(e, true))?;
        }
    }
    Ok(pass.out)
}

impl Pass {
    /// Takes in one entry; returns how much of its body is left for the tar reader to skip.
    async fn entry(&mut self, entry: &mut Entry) -> Result<u64> {
        let Some((path, kind)) = self.admit(entry)? else {
            return Ok(0);
        };
        match entry::shape(&path, &kind, entry.header().entry_type())? {
            Shape::Link => self.link(entry, path).map(|()| 0),
            Shape::File => self.file(entry, path, kind).await,
        }
    }

    /// Every hole the reader passed must be exactly the body of the stored blob it skipped last.
    /// Runs once that body is behind the reader, and on every error.
    fn check_holes(&mut self) -> Result<()> {
        let skipped = self.skippable.take();
        for hole in self.holes.take_passed() {
            if Some(hole) == skipped {
                continue;
            }
            return Err(match &self.unstored {
                Some((at, len, digest)) if (*at, *len) == hole => {
                    Error::LeftOutBlobGone(digest.clone())
                }
                _ => Error::invalid(format!(
                    "the client left out {} bytes at offset {} that are not the body of a blob \
                     the store holds",
                    hole.1, hole.0
                )),
            });
        }
        Ok(())
    }

    /// The entry's normalised name and kind, or `None` for entries that carry nothing (directories,
    /// global PAX headers). Refuses what the header alone shows to be wrong.
    fn admit(&mut self, entry: &Entry) -> Result<Option<(String, Kind)>> {
        let raw_path = entry
            .path_bytes()
            .map_err(|e| Error::invalid(format!("reading tar entry name: {e}")))?;
        if raw_path.len() > MAX_ENTRY_NAME {
            return Err(Error::invalid(format!(
                "an entry name is {} bytes, over the {MAX_ENTRY_NAME}-byte limit",
                raw_path.len()
            )));
        }
        let path = entry::normalize(&raw_path)?;
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() || entry_type.is_dir() || path.is_empty() {
            return Ok(None);
        }
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(Error::invalid(format!(
                "archive holds more than {MAX_ENTRIES} entries"
            )));
        }
        let kind = entry::classify(&path)?;
        let first = match &kind {
            Kind::Blob(digest) => self.out.blob_entries.insert(digest.clone()),
            _ => self.seen_paths.insert(path.clone()),
        };
        if !first {
            return Err(Error::invalid(format!(
                "entry {path:?} appears more than once"
            )));
        }
        entry::check_pax_size(entry, &path)?;
        Ok(Some((path, kind)))
    }

    fn link(&mut self, entry: &Entry, path: String) -> Result<()> {
        let target = entry
            .link_name_bytes()
            .map_err(|e| Error::invalid(format!("link {path:?}: {e}")))?
            .ok_or_else(|| Error::invalid(format!("link {path:?} has no target")))?;
        if target.len() > MAX_ENTRY_NAME {
            return Err(Error::invalid(format!(
                "link {path:?}: its target is {} bytes, over the {MAX_ENTRY_NAME}-byte limit",
                target.len()
            )));
        }
        let symbolic = entry.header().entry_type() == tokio_tar::EntryType::Symlink;
        let resolved = entry::link_target(&path, &target, symbolic)?;
        self.out.links.insert(path, resolved);
        Ok(())
    }

    async fn file(&mut self, entry: &mut Entry, path: String, kind: Kind) -> Result<u64> {
        let size = entry.effective_size();
        match kind {
            Kind::LayoutFile => {
                entry::check_layout(&read_doc(entry, size, &path).await?)?;
                self.out.has_layout_file = true;
            }
            Kind::IndexJson => {
                let doc = read_doc(entry, size, &path).await?;
                if let Ok(index) = serde_json::from_slice::<ImageIndex>(&doc) {
                    self.expected.learn_index(&index);
                }
                self.out.index_json = Some(doc);
            }
            Kind::ManifestJson => {
                self.out.manifest_json = Some(read_doc(entry, size, &path).await?)
            }
            Kind::Ignored => drop(read_doc(entry, size, &path).await?),
            Kind::Blob(digest) => {
                self.expected.check(&digest, size, &path)?;
                let (info, unread) = self.take_blob(entry, size, &digest, &path).await?;
                if self.expected.parents.contains(&digest) && info.size <= MAX_JSON {
                    self.expected.learn_blob(&self.out.read_json(&digest)?);
                }
                return Ok(unread);
            }
            Kind::Other => {
                let what = format!("entry {path:?}");
                let staging = &mut self.out.staging;
                let (staged, unread) = match &self.direct {
                    Some(d) => {
                        let body = d.body(entry.raw_file_position(), size);
                        (staging.copy_unnamed(body, &what).await?, size)
                    }
                    None => (staging.write_unnamed(entry, size, &what).await?, 0),
                };
                self.out.present.insert(staged.digest.clone(), staged.info);
                self.out.files.insert(path, staged.digest);
                return Ok(unread);
            }
        }
        Ok(0)
    }

    /// Stages a blob named by digest. A blob the store already holds is pinned and its body
    /// left unread for the tar reader to skip (returned as unread): nothing of those bytes would
    /// be kept, the image uses the store's verified copy, so they need no hashing, and a client
    /// may leave them out altogether. From a handed-over file, the kernel copies a blob's body
    /// and it too is left unread.
    async fn take_blob(
        &mut self,
        entry: &mut Entry,
        size: u64,
        digest: &Digest,
        path: &str,
    ) -> Result<(BlobInfo, u64)> {
        let what = format!("entry {path:?}");
        let body = (entry.raw_file_position(), size);
        let out = &mut self.out;
        let (info, unread) = if out.lease.pin(&out.blobs, digest) {
            let info = out.blobs.stored_info(digest)?;
            if info.size != size {
                // Either the entry is not that blob or the stored copy is damaged: which one,
                // only hashing can tell, and DATA_LOSS is the answer to both.
                return Err(Error::Corrupt(format!(
                    "{what} is {size} bytes, but the stored blob {digest} is {}: the entry is \
                     not that blob, or the stored copy is damaged (hyperctl check tells which)",
                    info.size
                )));
            }
            self.skippable = Some(body);
            self.holes.allow(body.0, body.1);
            (info, size)
        } else {
            self.unstored = Some((body.0, body.1, digest.clone()));
            match &self.direct {
                Some(d) => {
                    let body = d.body(body.0, size);
                    (out.staging.copy_verified(body, digest, &what).await?, size)
                }
                None => {
                    let info = out
                        .staging
                        .write_verified(entry, size, digest, &what)
                        .await?;
                    (info, 0)
                }
            }
        };
        out.present.insert(digest.clone(), info.clone());
        Ok((info, unread))
    }
}

async fn read_doc<R: AsyncRead + Unpin>(reader: &mut R, size: u64, path: &str) -> Result<Vec<u8>> {
    if size > MAX_JSON {
        return Err(Error::invalid(format!(
            "entry {path:?} is {size} bytes, over the {MAX_JSON}-byte limit for JSON documents"
        )));
    }
    let mut doc = Vec::with_capacity(size as usize);
    reader
        .read_to_end(&mut doc)
        .await
        .map_err(|e| match ended_early(&e) {
            true => Error::invalid(format!(
                "the archive ends inside entry {path:?}: it is truncated"
            )),
            false => Error::invalid(format!("reading entry {path:?}: {e}")),
        })?;
    Ok(doc)
}
