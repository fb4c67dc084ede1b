//! The choices a pull makes from documents alone: which manifest of an index a platform takes,
//! and each blob once. No I/O.

use std::collections::HashSet;

use store::{BlobRef, Entry, Platform};

/// Which images of an index a pull stores.
#[derive(Clone, Debug)]
pub(super) enum Platforms {
    /// The one manifest this platform takes, as load chooses one.
    One(Platform),
    /// The index whole, every manifest in it.
    All,
}

/// The image manifest of an index that `wanted` takes, as load chooses one: the first whose
/// platform satisfies it. Attestations (`unknown/unknown`) and nested indexes are never chosen.
pub(super) fn choose<'a>(entries: &'a [Entry], wanted: &Platform) -> Option<&'a Entry> {
    entries.iter().find(|e| {
        store::is_manifest(&e.media_type)
            && e.platform
                .as_ref()
                .is_some_and(|p| !p.is_unknown() && p.satisfies(wanted))
    })
}

/// Each blob once, in first-seen order.
pub(super) fn unique(blobs: impl IntoIterator<Item = BlobRef>) -> Vec<BlobRef> {
    let mut seen = HashSet::new();
    blobs
        .into_iter()
        .filter(|b| seen.insert(b.digest.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use store::{Digest, Document};

    use super::*;

    const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn an_index_chooses_the_platform_and_never_an_attestation() {
        let entry = |n: u8, os: &str, arch: &str| {
            format!(
                r#"{{"mediaType":"{MANIFEST}","digest":"{}","size":10,"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#,
                d(n)
            )
        };
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[{},{},{}]}}"#,
            entry(1, "unknown", "unknown"),
            entry(2, "linux", "arm64"),
            entry(3, "linux", "amd64")
        );
        let index = Document::parse(&Digest::of(json.as_bytes()), INDEX, json.as_bytes()).unwrap();
        let entries = index.entries().unwrap();
        let pick =
            |p: &str| choose(&entries, &p.parse().unwrap()).map(|e| e.blob.digest.to_string());
        assert_eq!(pick("linux/amd64"), Some(d(3)));
        assert_eq!(pick("linux/arm64"), Some(d(2)));
        assert_eq!(pick("unknown/unknown"), None);
        assert_eq!(pick("windows/amd64"), None);
    }

    #[test]
    fn unique_keeps_the_first_of_each_blob() {
        let b = |n: u8| BlobRef {
            digest: d(n).parse().unwrap(),
            size: n as u64,
        };
        assert_eq!(unique([b(1), b(2), b(1), b(3)]), vec![b(1), b(2), b(3)]);
    }
}
