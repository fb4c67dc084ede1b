//! Image names (`busybox`, `docker.io/library/busybox:latest`), normalised as docker does, and
//! their conversions to and from the distribution reference (`oci_spec::distribution::Reference`,
//! which `oci_client::Reference` is), the one grammar both follow. No I/O.

use std::fmt;
use std::str::FromStr;

use oci_spec::distribution::Reference;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// A tagged image name, normalised: `busybox` is `docker.io/library/busybox:latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName {
    registry: String,
    repository: String,
    tag: String,
}

impl ImageName {
    /// The full form, `docker.io/library/busybox:latest`: the key the store keeps.
    pub fn full(&self) -> String {
        format!("{}/{}:{}", self.registry, self.repository, self.tag)
    }

    /// The repository as docker shows it: `busybox`, `user/app`, `quay.io/x/y`.
    pub fn familiar_repository(&self) -> String {
        if self.registry == "docker.io" {
            let short = self.repository.strip_prefix("library/");
            short.unwrap_or(&self.repository).to_owned()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The tag alone.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The registry, `host[:port]` (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository within the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// A parsed reference as a name, refused when it is not one: `shown` is how the
    /// reference reads in the error.
    fn from_reference(parsed: &Reference, shown: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidReference {
            reference: shown.to_owned(),
            reason: reason.to_owned(),
        };
        if parsed.digest().is_some() {
            return Err(invalid("a tag is needed here, not a digest"));
        }
        if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        Ok(ImageName {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            // The parser fills in "latest" when no tag and no digest were given.
            tag: parsed.tag().unwrap_or("latest").to_owned(),
        })
    }
}

/// The name's reference: the same registry, repository and tag.
impl From<&ImageName> for Reference {
    fn from(name: &ImageName) -> Reference {
        Reference::with_tag(
            name.registry.clone(),
            name.repository.clone(),
            name.tag.clone(),
        )
    }
}

/// The name a reference's tag gives; a reference by digest names no image.
impl TryFrom<&Reference> for ImageName {
    type Error = Error;
    fn try_from(reference: &Reference) -> Result<Self> {
        ImageName::from_reference(reference, &reference.whole())
    }
}

impl fmt::Display for ImageName {
    /// The familiar form, `busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.familiar_repository(), self.tag)
    }
}

impl FromStr for ImageName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parsed = Reference::from_str(s).map_err(|e| Error::InvalidReference {
            reference: s.to_owned(),
            reason: e.to_string(),
        })?;
        ImageName::from_reference(&parsed, s)
    }
}

/// `NAME@DIGEST` (`app@sha256:…`, `quay.io/x/y:1@sha256:…`) as (registry, repository, digest):
/// docker's way to name one image among several of the same repository. `None` for anything
/// else, a tag alone included.
pub(crate) fn by_digest(s: &str) -> Option<(String, String, Digest)> {
    let parsed = Reference::from_str(s).ok()?;
    let digest = parsed.digest()?.parse().ok()?;
    Some((
        parsed.registry().to_owned(),
        parsed.repository().to_owned(),
        digest,
    ))
}

/// True when `s` names an image on its own (`busybox:1.35`, `quay.io/x/y`) rather than being a bare
/// tag such as `latest` or `1.35`, which some tools write in `org.opencontainers.image.ref.name`.
pub(crate) fn is_full_reference(s: &str) -> bool {
    (s.contains(':') || s.contains('/')) && s.parse::<ImageName>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        s.parse::<ImageName>().unwrap().full()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.35"), "docker.io/library/busybox:1.35");
        assert_eq!(full("user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(
            full("index.docker.io/library/centos:7"),
            "docker.io/library/centos:7"
        );
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(full("quay.io:443/x/y:z"), "quay.io:443/x/y:z");
    }

    #[test]
    fn familiar_form_hides_docker_hub() {
        let show = |s: &str| s.parse::<ImageName>().unwrap().to_string();
        assert_eq!(show("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(show("docker.io/user/app:v1"), "user/app:v1");
        assert_eq!(show("localhost/app:1"), "localhost/app:1");
    }

    #[test]
    fn refuses_invalid_names_and_digests() {
        for bad in [
            "",
            "UPPER:case",
            "a b",
            "busybox@sha256:abc",
            ":tag",
            "a/../b",
        ] {
            assert!(bad.parse::<ImageName>().is_err(), "{bad:?} accepted");
        }
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert!(d.parse::<ImageName>().is_err());
    }

    #[test]
    fn names_and_references_convert_both_ways() {
        let name: ImageName = "localhost:5000/app:v1".parse().unwrap();
        let reference = Reference::from(&name);
        assert_eq!(reference.whole(), "localhost:5000/app:v1");
        assert_eq!(ImageName::try_from(&reference).unwrap(), name);
        let hub = Reference::from(&"busybox".parse::<ImageName>().unwrap());
        assert_eq!(hub.resolve_registry(), "index.docker.io");
        assert_eq!(hub.repository(), "library/busybox");
        let by_digest = format!("busybox@sha256:{}", "a".repeat(64));
        let by_digest: Reference = by_digest.parse().unwrap();
        assert!(ImageName::try_from(&by_digest).is_err());
    }

    #[test]
    fn bare_tags_are_not_full_references() {
        assert!(!is_full_reference("latest"));
        assert!(!is_full_reference("1.35"));
        assert!(!is_full_reference("hello"));
        assert!(is_full_reference("busybox:1.35"));
        assert!(is_full_reference("library/busybox"));
    }
}
