//! sha256 digests: parsing, formatting and an incremental hasher. No I/O.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A sha256 content digest, `sha256:<64 lowercase hex>`. The only algorithm the store keeps.
/// Held as its 32 bytes: an archive of many entries keeps several per entry, and the bytes
/// order as the hex does.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The 64 lowercase hex digits, which name the blob file.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the bare hex form used in file names (`blobs/sha256/<hex>`): lowercase only, so
    /// that one digest has one file name.
    pub fn from_hex(hex: &str) -> Result<Self> {
        let lowercase = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut bytes = [0u8; 32];
        match hex::decode_to_slice(hex, &mut bytes) {
            Ok(()) if lowercase => Ok(Digest(bytes)),
            _ => Err(Error::invalid(format!(
                "{hex:?} is not a sha256 hex digest"
            ))),
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut h = Hasher::default();
        h.update(bytes);
        h.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::from_hex(hex),
            Some((alg, _)) => Err(Error::invalid(format!(
                "digest {s:?} uses {alg:?}; only sha256 is supported"
            ))),
            None => Err(Error::invalid(format!("{s:?} is not a digest"))),
        }
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = Error;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self> {
        d.to_string().parse()
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        // A Digest is always valid sha256, which oci-spec accepts.
        d.to_string().parse().expect("sha256 digest is valid")
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Incremental sha256 that also counts bytes.
#[derive(Default)]
pub(crate) struct Hasher {
    inner: Sha256,
    len: u64,
}

impl Hasher {
    /// Feeds bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The digest of everything fed.
    pub(crate) fn finish(self) -> Digest {
        Digest(self.inner.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_is_the_well_known_one() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_refuses_other_algorithms_and_bad_hex() {
        let hex = "a".repeat(64);
        assert!(format!("sha256:{hex}").parse::<Digest>().is_ok());
        assert!(format!("sha512:{hex}").parse::<Digest>().is_err());
        assert!(
            format!("sha256:{}", "A".repeat(64))
                .parse::<Digest>()
                .is_err()
        );
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!(Digest::from_hex("../../etc/passwd").is_err());
    }
}
