//! Which directories, hosts and credentials a registry's `hosts.toml` leads to.

use super::{
    Capabilities, Error, Host, Scheme, host_dirs, naming, resolves, same_registry, withheld,
};

#[test]
fn a_registrys_port_gives_containerds_other_directory_name_ipv6_too() {
    assert_eq!(
        host_dirs("r.example:5000"),
        ["r.example_5000_", "r.example:5000"]
    );
    assert_eq!(host_dirs("[::1]:5000"), ["[::1]_5000_", "[::1]:5000"]);
    assert_eq!(host_dirs("[::1]"), ["[::1]"]);
    assert_eq!(host_dirs("docker.io"), ["docker.io"]);
}

#[test]
fn a_tag_resolves_only_where_its_digest_may_be_pulled_too() {
    let may = |pull, resolve| Capabilities {
        pull,
        resolve,
        push: false,
    };
    assert!(resolves(&may(true, true)));
    assert!(!resolves(&may(false, true)));
    assert!(!resolves(&may(true, false)));
}

#[test]
fn the_credential_goes_over_plain_http_only_where_the_operator_allows_it() {
    let insecure = vec!["registry.lan:5000".to_owned()];
    let host = |scheme, authority: &str| Host {
        scheme,
        ..Host::registry(authority)
    };
    let gets = |h: &Host, registry: &str| withheld(h, registry, &insecure).is_none();
    // `http://registry.example` or `http://registry.example:80` in hosts.toml.
    assert!(!gets(
        &host(Scheme::Http, "registry.example"),
        "registry.example"
    ));
    assert!(gets(
        &host(Scheme::Https, "registry.example"),
        "registry.example"
    ));
    assert!(gets(
        &host(Scheme::HttpsElseHttp, "registry.example"),
        "registry.example"
    ));
    assert!(gets(
        &host(Scheme::Http, "registry.lan:5000"),
        "registry.lan:5000"
    ));
    assert!(gets(
        &host(Scheme::Http, "127.0.0.1:5000"),
        "127.0.0.1:5000"
    ));
    // A mirror never, whatever its scheme.
    assert!(!gets(
        &host(Scheme::Https, "mirror.example"),
        "registry.example"
    ));
    assert!(!gets(
        &host(Scheme::Http, "127.0.0.1:5001"),
        "127.0.0.1:5000"
    ));
}

#[test]
fn the_registry_itself_is_its_own_name_or_one_of_docker_hubs() {
    assert!(same_registry("made.up.example", "made.up.example"));
    assert!(same_registry("registry-1.docker.io", "docker.io"));
    assert!(same_registry("index.docker.io", "docker.io"));
    assert!(!same_registry("127.0.0.1:5000", "made.up.example"));
    assert!(!same_registry("made.up.example:443", "made.up.example"));
    assert!(!same_registry("mirror.gcr.io", "docker.io"));
}

#[test]
fn a_mirrors_failure_names_it_once() {
    let at = Error::NotFound("manifest a:1 at m.example:5000: 404 not found".to_owned());
    assert_eq!(naming("m.example:5000", &at), at.to_string());
    let bare = Error::unavailable("connection refused".to_owned());
    assert_eq!(
        naming("m.example:5000", &bare),
        "m.example:5000: connection refused"
    );
}
