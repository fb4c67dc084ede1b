//! From a request's `<name>` (and containerd's `?ns=HOST`) to the repository the store keeps
//! (`docker.io/library/busybox`), and back for the catalog. Pure.
//!
//! With `ns` the client mirrors HOST: the name is a repository of HOST, normalised as docker
//! does (`ns=docker.io`, `busybox` is `docker.io/library/busybox`). Without it the name reads as
//! a docker reference, which is what podman and skopeo send through a `registries.conf` mirror
//! (`/v2/<prefix>/<repo>`, the prefix a host such as `made.up.example`): `busybox` and
//! `library/busybox` are `docker.io/library/busybox`, `quay.io/x/y` is itself. docker's own
//! normalisation (`store::ImageName`) decides, so there is one parser of names.

use store::ImageName;

/// Why a name maps to no repository: shown to the client as NAME_INVALID.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Invalid(pub(super) String);

/// The store's repository for the request's `name`, mirroring `ns` when given.
pub(super) fn repository(name: &str, ns: Option<&str>) -> Result<String, Invalid> {
    // The spec's path grammar: lowercase components joined by '/'. Checked first so that a ':'
    // or '@' cannot smuggle a tag or a digest into the reference parsed below.
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
    if name.is_empty() || !name.chars().all(ok) {
        return Err(Invalid(format!("invalid repository name {name:?}")));
    }
    let reference = match ns {
        Some(host) if host.is_empty() || host.contains(['/', '@']) => {
            return Err(Invalid(format!("invalid ns {host:?}")));
        }
        // containerd names Docker Hub by any of its hosts; the store keeps `docker.io`.
        Some(host) if DOCKER_HUB.contains(&host) => format!("docker.io/{name}"),
        Some(host) => format!("{host}/{name}"),
        None => name.to_owned(),
    };
    let parsed: ImageName = reference
        .parse()
        .map_err(|e| Invalid(format!("invalid repository name {name:?}: {e}")))?;
    // A name whose first component looks like a host but `ns` named another: the reference
    // parser took it as the registry, which is not what HOST/<name> means.
    if let Some(host) = ns {
        let same = parsed.registry() == host
            || (parsed.registry() == "docker.io" && DOCKER_HUB.contains(&host));
        if !same {
            return Err(Invalid(format!("{name:?} is not a repository of {host}")));
        }
    }
    Ok(format!("{}/{}", parsed.registry(), parsed.repository()))
}

/// The hosts docker's normalisation writes as `docker.io`.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The catalog's registry for `ns`: where its repositories are listed from.
pub(super) fn registry_of(ns: &str) -> Result<String, Invalid> {
    let full = repository("x", Some(ns))?;
    let name: ImageName = full
        .parse()
        .map_err(|_| Invalid(format!("invalid ns {ns:?}")))?;
    Ok(name.registry().to_owned())
}

/// Whether a path without `ns` can name the repositories of `host`: not when its name has a
/// port (`registry.example:5000`), which the path grammar cannot spell. Those are listed only
/// under `?ns=HOST`.
pub(super) fn reachable_without_ns(host: &str) -> bool {
    repository(&format!("{host}/x"), None).is_ok_and(|r| r.starts_with(&format!("{host}/")))
}

/// How the catalog shows `repository` (full) to a client of `registry` (all with `None`): the
/// name it would ask for.
pub(super) fn shown(repository: &str, registry: Option<&str>) -> String {
    match registry {
        Some(r) => repository
            .strip_prefix(r)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(repository)
            .to_owned(),
        None => repository.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(name: &str, ns: Option<&str>) -> String {
        repository(name, ns).unwrap()
    }

    #[test]
    fn without_ns_the_path_is_a_docker_reference() {
        assert_eq!(full("busybox", None), "docker.io/library/busybox");
        assert_eq!(full("library/busybox", None), "docker.io/library/busybox");
        assert_eq!(full("user/app", None), "docker.io/user/app");
        assert_eq!(
            full("docker.io/library/busybox", None),
            "docker.io/library/busybox"
        );
        assert_eq!(full("quay.io/x/y", None), "quay.io/x/y");
        assert_eq!(full("made.up.example/app", None), "made.up.example/app");
        assert_eq!(
            full("mirror.example/team/app", None),
            "mirror.example/team/app"
        );
        assert_eq!(full("localhost/app", None), "localhost/app");
    }

    #[test]
    fn with_ns_the_name_is_a_repository_of_that_host() {
        assert_eq!(
            full("busybox", Some("docker.io")),
            "docker.io/library/busybox"
        );
        assert_eq!(
            full("library/busybox", Some("docker.io")),
            "docker.io/library/busybox"
        );
        assert_eq!(full("app", Some("made.up.example")), "made.up.example/app");
        assert_eq!(
            full("team/app", Some("127.0.0.1:5601")),
            "127.0.0.1:5601/team/app"
        );
        assert_eq!(full("x/y", Some("quay.io")), "quay.io/x/y");
        for hub in ["index.docker.io", "registry-1.docker.io"] {
            assert_eq!(full("busybox", Some(hub)), "docker.io/library/busybox");
        }
    }

    #[test]
    fn what_is_no_repository_name_is_refused() {
        for bad in [
            "",
            "Busybox",
            "a:1",
            "a@sha256:00",
            "a//b",
            "/a",
            "a/",
            "a b",
            "..",
            "a/../b",
        ] {
            assert!(repository(bad, None).is_err(), "{bad}");
        }
        assert!(repository("a", Some("")).is_err());
        assert!(repository("a", Some("h/x")).is_err());
        // Not a host as docker reads names: `nohost/a` would be a Docker Hub repository.
        assert!(repository("a", Some("nohost")).is_err());
        assert_eq!(
            full("other.example/a", Some("made.up.example")),
            "made.up.example/other.example/a"
        );
    }

    #[test]
    fn the_catalog_shows_what_a_client_asks_for() {
        assert_eq!(registry_of("docker.io").unwrap(), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5601").unwrap(), "127.0.0.1:5601");
        let busybox = "docker.io/library/busybox";
        assert_eq!(shown(busybox, Some("docker.io")), "library/busybox");
        assert_eq!(shown(busybox, None), busybox);
        assert_eq!(repository(&shown(busybox, None), None).unwrap(), busybox);
        for host in [
            "docker.io",
            "quay.io",
            "made.up.example",
            "localhost",
            "127.0.0.1",
        ] {
            assert!(reachable_without_ns(host), "{host}");
        }
        for host in [
            "registry.example:5000",
            "127.0.0.1:5601",
            "localhost:5000",
            "[::1]:5000",
        ] {
            assert!(!reachable_without_ns(host), "{host}");
        }
    }
}
