//! One pass over an archive's tar stream: every entry is classified, blobs are hashed into the
//! staging area as they stream by, small JSON documents are kept, and nothing is extracted.

use std::collections::HashMap;
use std::pin::Pin;

use futures_util::StreamExt;
use oci_spec::image::{ImageIndex, ImageManifest};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio_tar::EntryType;

use crate::blob::{self, BlobInfo, Blobs, CHUNK, Compression, Lease, Staging};
use crate::digest::Digest;
use crate::limits::{MAX_ENTRIES, MAX_JSON};
use crate::{Error, Result};

/// What one pass over an archive found. Blobs named here are either staged or pinned.
pub(crate) struct Ingested {
    pub(crate) staging: Staging,
    pub(crate) lease: Lease,
    pub(crate) blobs: Blobs,
    /// Every blob the archive held, by digest.
    pub(crate) present: HashMap<Digest, BlobInfo>,
    /// Regular files by normalised path, to resolve docker-archive's `manifest.json` paths.
    pub(crate) files: HashMap<String, Digest>,
    /// Symlinks and hardlinks by path, with their target as an archive path.
    pub(crate) links: HashMap<String, String>,
    pub(crate) index_json: Option<Vec<u8>>,
    pub(crate) manifest_json: Option<Vec<u8>>,
}

impl Ingested {
    /// Reads a small blob the archive held, from staging or from the store.
    pub(crate) fn read_json(&self, digest: &Digest) -> Result<Vec<u8>> {
        let info = self
            .present
            .get(digest)
            .ok_or_else(|| Error::invalid(format!("blob {digest} is not in the archive")))?;
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
        match self.staging.get(digest) {
            Some(_) => self.staging.path(digest),
            None => self.blobs.path(digest),
        }
    }
}

/// What an entry's name says it is.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    LayoutFile,
    IndexJson,
    ManifestJson,
    Blob(Digest),
    /// Small bookkeeping files of docker-archive that the store has no use for.
    Ignored,
    /// Anything else: a docker-archive config or layer, found later by path.
    Other,
}

fn classify(path: &str) -> Result<Kind> {
    Ok(match path {
        "oci-layout" => Kind::LayoutFile,
        "index.json" => Kind::IndexJson,
        "manifest.json" => Kind::ManifestJson,
        "repositories" | "VERSION" => Kind::Ignored,
        p if p.ends_with("/VERSION") || p.ends_with("/json") => Kind::Ignored,
        p => match p.strip_prefix("blobs/") {
            Some(rest) => match rest.split_once('/') {
                Some(("sha256", hex)) => Kind::Blob(Digest::from_hex(hex).map_err(|_| {
                    Error::invalid(format!(
                        "entry {path:?}: blob name is not a sha256 hex digest"
                    ))
                })?),
                _ => {
                    return Err(Error::invalid(format!(
                        "entry {path:?}: only sha256 blobs are supported"
                    )));
                }
            },
            None => Kind::Other,
        },
    })
}

/// Normalises an entry name: drops `./` and empty components, refuses absolute names and `..`.
pub(crate) fn normalize(raw: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(raw)
        .map_err(|_| Error::invalid(format!("entry name {raw:?} is not UTF-8")))?;
    if name.starts_with('/') {
        return Err(Error::invalid(format!(
            "entry {name:?} has an absolute path"
        )));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::invalid(format!(
                    "entry {name:?} leaves the archive with '..'"
                )));
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink target relative to the link's own directory, staying inside the archive.
fn link_target(link: &str, target: &str) -> Result<String> {
    if target.starts_with('/') {
        return Err(Error::invalid(format!(
            "link {link:?} points outside the archive to {target:?}"
        )));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Error::invalid(format!(
                        "link {link:?} points outside the archive to {target:?}"
                    )));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Unwraps a gzip- or zstd-compressed whole archive, told apart by its magic bytes.
async fn decompressed<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> Result<Pin<Box<dyn AsyncRead + Send>>> {
    let mut buf = BufReader::with_capacity(CHUNK, reader);
    let head = buf
        .fill_buf()
        .await
        .map_err(|e| Error::invalid(format!("reading archive: {e}")))?;
    let compression = Compression::sniff(head);
    Ok(crate::decompress::decoder(buf, compression))
}

/// Sizes that index.json or an already-seen manifest promised, to refuse a lying entry before
/// reading its body. The final resolution checks everything again; this only fails earlier.
#[derive(Default)]
struct Expected {
    sizes: HashMap<Digest, u64>,
    /// Digests known to be manifests or indexes, whose children become expected in turn.
    parents: HashMap<Digest, bool>,
}

impl Expected {
    fn learn_index(&mut self, index: &ImageIndex) {
        for d in index.manifests() {
            if let Ok(digest) = Digest::try_from(d.digest()) {
                self.sizes.insert(digest.clone(), d.size());
                self.parents.insert(digest, true);
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
}

/// Reads the whole archive once. On error the staging area and pins are dropped with it.
pub(crate) async fn ingest<R: AsyncRead + Unpin + Send + 'static>(
    blobs: &Blobs,
    reader: R,
) -> Result<Ingested> {
    let mut out = Ingested {
        staging: blobs.staging()?,
        lease: blobs.lease(),
        blobs: blobs.clone(),
        present: HashMap::new(),
        files: HashMap::new(),
        links: HashMap::new(),
        index_json: None,
        manifest_json: None,
    };
    let mut expected = Expected::default();
    let mut seen_paths = std::collections::HashSet::new();
    let mut archive = tokio_tar::Archive::new(decompressed(reader).await?);
    let mut entries = archive
        .entries()
        .map_err(|e| Error::invalid(format!("reading tar: {e}")))?;
    while let Some(entry) = entries.next().await {
        let mut entry = entry.map_err(|e| Error::invalid(format!("reading tar: {e}")))?;
        if seen_paths.len() >= MAX_ENTRIES {
            return Err(Error::invalid(format!(
                "archive holds more than {MAX_ENTRIES} entries"
            )));
        }
        let raw_path = entry
            .path_bytes()
            .map_err(|e| Error::invalid(format!("reading tar entry name: {e}")))?;
        let path = normalize(&raw_path)?;
        let entry_type = entry.header().entry_type();
        if entry_type.is_pax_global_extensions() || (entry_type.is_dir() && !path.is_empty()) {
            continue;
        }
        if path.is_empty() {
            continue;
        }
        if !seen_paths.insert(path.clone()) {
            return Err(Error::invalid(format!(
                "entry {path:?} appears more than once"
            )));
        }
        check_pax_size(&entry, &path)?;
        let kind = classify(&path)?;
        match entry_type {
            EntryType::Regular | EntryType::Continuous => {}
            EntryType::Symlink | EntryType::Link => {
                if matches!(
                    kind,
                    Kind::Blob(_) | Kind::IndexJson | Kind::ManifestJson | Kind::LayoutFile
                ) {
                    return Err(Error::invalid(format!(
                        "entry {path:?} is a link; it must be a regular file"
                    )));
                }
                let target = entry
                    .link_name_bytes()
                    .map_err(|e| Error::invalid(format!("link {path:?}: {e}")))?
                    .ok_or_else(|| Error::invalid(format!("link {path:?} has no target")))?;
                let target = std::str::from_utf8(&target)
                    .map_err(|_| Error::invalid(format!("link {path:?} target is not UTF-8")))?
                    .to_owned();
                let resolved = if entry_type == EntryType::Symlink {
                    link_target(&path, &target)?
                } else {
                    normalize(target.as_bytes())?
                };
                out.links.insert(path, resolved);
                continue;
            }
            other => {
                return Err(Error::invalid(format!(
                    "entry {path:?} is a {other:?}; only regular files, directories and links are accepted"
                )));
            }
        }
        let size = entry.effective_size();
        match kind {
            Kind::LayoutFile => {
                let doc = read_doc(&mut entry, size, &path).await?;
                check_layout(&doc)?;
            }
            Kind::IndexJson => {
                let doc = read_doc(&mut entry, size, &path).await?;
                if let Ok(index) = serde_json::from_slice::<ImageIndex>(&doc) {
                    expected.learn_index(&index);
                }
                out.index_json = Some(doc);
            }
            Kind::ManifestJson => {
                out.manifest_json = Some(read_doc(&mut entry, size, &path).await?)
            }
            Kind::Ignored => {
                read_doc(&mut entry, size, &path).await?;
            }
            Kind::Blob(digest) => {
                if let Some(&want) = expected.sizes.get(&digest)
                    && want != size
                {
                    return Err(Error::invalid(format!(
                        "entry {path:?} is {size} bytes but its descriptor says {want}"
                    )));
                }
                let info = take_blob(&mut out, &mut entry, size, &digest, &path).await?;
                if expected.parents.contains_key(&digest) && info.size <= MAX_JSON {
                    expected.learn_blob(&out.read_json(&digest)?);
                }
                out.files.insert(path, digest);
            }
            Kind::Other => {
                let digest = out
                    .staging
                    .write(&mut entry, size, None, &format!("entry {path:?}"))
                    .await?;
                let info = out.staging.get(&digest).expect("just staged").clone();
                out.present.insert(digest.clone(), info);
                out.files.insert(path, digest);
            }
        }
    }
    Ok(out)
}

/// Stages a blob named by digest, or, when the store already has it, pins it and only verifies
/// the archive's bytes.
async fn take_blob<R: AsyncRead + Unpin>(
    out: &mut Ingested,
    reader: &mut R,
    size: u64,
    digest: &Digest,
    path: &str,
) -> Result<BlobInfo> {
    let what = format!("entry {path:?}");
    let info = if out.lease.pin(&out.blobs, digest) {
        let (actual, len, compression) = blob::drain(reader, size, &what).await?;
        if len != size {
            return Err(Error::invalid(format!(
                "{what}: expected {size} bytes, got {len}"
            )));
        }
        if actual != *digest {
            return Err(Error::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        BlobInfo { size, compression }
    } else {
        out.staging.write(reader, size, Some(digest), &what).await?;
        out.staging.get(digest).expect("just staged").clone()
    };
    out.present.insert(digest.clone(), info.clone());
    Ok(info)
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
        .map_err(|e| Error::invalid(format!("reading entry {path:?}: {e}")))?;
    Ok(doc)
}

fn check_layout(doc: &[u8]) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Layout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let layout: Layout = serde_json::from_slice(doc)
        .map_err(|e| Error::invalid(format!("oci-layout is not valid: {e}")))?;
    if layout.version != "1.0.0" {
        return Err(Error::invalid(format!(
            "oci-layout version {:?} is not supported (want 1.0.0)",
            layout.version
        )));
    }
    Ok(())
}

/// Refuses an entry whose PAX `size` disagrees with its ustar header (CVE-2025-62518): readers
/// that trust different fields see different archives.
fn check_pax_size<R: AsyncRead + Unpin>(entry: &tokio_tar::Entry<R>, path: &str) -> Result<()> {
    let ustar = entry.header().raw_entry_size().ok();
    let effective = entry.effective_size();
    // A PAX size is legitimate where the ustar field cannot hold it (over 8 GiB) and is left 0.
    match ustar {
        Some(n) if n != effective && n != 0 => Err(Error::invalid(format!(
            "entry {path:?}: PAX size {effective} disagrees with header size {n}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_dot_and_refuses_escapes() {
        assert_eq!(normalize(b"./blobs/sha256/ab").unwrap(), "blobs/sha256/ab");
        assert_eq!(normalize(b"././index.json").unwrap(), "index.json");
        assert_eq!(normalize(b"./").unwrap(), "");
        assert!(normalize(b"/etc/passwd").is_err());
        assert!(normalize(b"blobs/../../x").is_err());
        assert!(normalize(b"..").is_err());
    }

    #[test]
    fn symlink_targets_stay_inside() {
        assert_eq!(
            link_target("a/layer.tar", "../b/layer.tar").unwrap(),
            "b/layer.tar"
        );
        assert!(link_target("a/layer.tar", "../../etc/passwd").is_err());
        assert!(link_target("a/layer.tar", "/etc/passwd").is_err());
    }

    #[test]
    fn classify_entries() {
        let hex = "a".repeat(64);
        assert_eq!(classify("index.json").unwrap(), Kind::IndexJson);
        assert_eq!(
            classify(&format!("blobs/sha256/{hex}")).unwrap(),
            Kind::Blob(Digest::from_hex(&hex).unwrap())
        );
        assert!(classify("blobs/sha512/abc").is_err());
        assert!(classify("blobs/sha256/xyz").is_err());
        assert_eq!(classify("abc/layer.tar").unwrap(), Kind::Other);
        assert_eq!(classify("abc/json").unwrap(), Kind::Ignored);
    }
}
