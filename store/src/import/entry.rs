//! What a tar entry is, judged from its header and name alone. Pure: no I/O.

use tokio::io::AsyncRead;
use tokio_tar::EntryType;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// What an entry's name says it is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Kind {
    LayoutFile,
    IndexJson,
    ManifestJson,
    Blob(Digest),
    /// Small bookkeeping files of docker-archive that the store has no use for.
    Ignored,
    /// Anything else: a docker-archive config or layer, found later by path.
    Other,
}

impl Kind {
    /// Entries whose meaning is fixed by their name: they must be the file they claim to be.
    fn must_be_regular(&self) -> bool {
        matches!(
            self,
            Kind::Blob(_) | Kind::IndexJson | Kind::ManifestJson | Kind::LayoutFile
        )
    }
}

pub(super) fn classify(path: &str) -> Result<Kind> {
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

/// Whether an entry is read as a file or remembered as a link.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Shape {
    File,
    Link,
}

/// The type policy: regular files everywhere, links only where a path (not a name) is meant,
/// nothing else at all.
pub(super) fn shape(path: &str, kind: &Kind, entry_type: EntryType) -> Result<Shape> {
    match entry_type {
        EntryType::Regular | EntryType::Continuous => Ok(Shape::File),
        EntryType::Symlink | EntryType::Link if kind.must_be_regular() => Err(Error::invalid(
            format!("entry {path:?} is a link; it must be a regular file"),
        )),
        EntryType::Symlink | EntryType::Link => Ok(Shape::Link),
        other => Err(Error::invalid(format!(
            "entry {path:?} is a {other:?}; only regular files, directories and links are accepted"
        ))),
    }
}

/// Normalises an entry name: drops `./` and empty components, refuses absolute names and `..`.
pub(super) fn normalize(raw: &[u8]) -> Result<String> {
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

/// Where a link entry points, as an archive path: a symlink relative to its own directory, a
/// hard link from the archive's root. Either must stay inside the archive.
pub(super) fn link_target(link: &str, target: &[u8], symbolic: bool) -> Result<String> {
    let target = std::str::from_utf8(target)
        .map_err(|_| Error::invalid(format!("link {link:?} target is not UTF-8")))?;
    if !symbolic {
        return normalize(target.as_bytes());
    }
    let outside = || {
        Error::invalid(format!(
            "link {link:?} points outside the archive to {target:?}"
        ))
    };
    if target.starts_with('/') {
        return Err(outside());
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(outside)?;
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Refuses an entry whose PAX `size` disagrees with its ustar header (CVE-2025-62518): readers
/// that trust different fields see different archives.
pub(super) fn check_pax_size<R: AsyncRead + Unpin>(
    entry: &tokio_tar::Entry<R>,
    path: &str,
) -> Result<()> {
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

pub(super) fn check_layout(doc: &[u8]) -> Result<()> {
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
    fn link_targets_stay_inside() {
        assert_eq!(
            link_target("a/layer.tar", b"../b/layer.tar", true).unwrap(),
            "b/layer.tar"
        );
        assert!(link_target("a/layer.tar", b"../../etc/passwd", true).is_err());
        assert!(link_target("a/layer.tar", b"/etc/passwd", true).is_err());
        assert_eq!(
            link_target("a/layer.tar", b"./b/layer.tar", false).unwrap(),
            "b/layer.tar"
        );
        assert!(link_target("a/layer.tar", b"../x", false).is_err());
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

    #[test]
    fn only_paths_may_be_links_and_nothing_may_be_a_device() {
        let blob = classify(&format!("blobs/sha256/{}", "a".repeat(64))).unwrap();
        assert!(shape("b", &blob, EntryType::Symlink).is_err());
        assert_eq!(
            shape("l", &Kind::Other, EntryType::Link).unwrap(),
            Shape::Link
        );
        assert!(shape("d", &Kind::Other, EntryType::Char).is_err());
        assert_eq!(
            shape("f", &Kind::IndexJson, EntryType::Regular).unwrap(),
            Shape::File
        );
    }
}
