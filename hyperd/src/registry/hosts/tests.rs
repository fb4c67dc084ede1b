//! The parse of containerd's documented `hosts.toml` examples, and of malformed files.

use super::*;

const FILE: &str = "/etc/hyperd/certs.d/docker.io/hosts.toml";

fn hosts(text: &str) -> Vec<Host> {
    parse(text, Path::new(FILE), "index.docker.io").unwrap()
}

fn refusal(text: &str) -> String {
    parse(text, Path::new(FILE), "index.docker.io")
        .unwrap_err()
        .to_string()
}

const PULL_RESOLVE: Capabilities = Capabilities {
    pull: true,
    resolve: true,
    push: false,
};

#[test]
fn the_documented_docker_hub_configuration() {
    let h = hosts(
        r#"
        server = "https://docker.io"

        [host."https://registry-1.docker.io"]
          capabilities = ["pull", "resolve"]
        "#,
    );
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0].scheme, h[0].authority.as_str(), h[0].path.as_str()),
        (Scheme::Https, "registry-1.docker.io", "/v2")
    );
    assert_eq!(h[0].capabilities, PULL_RESOLVE);
    assert_eq!(
        (h[1].scheme, h[1].authority.as_str(), h[1].path.as_str()),
        (Scheme::Https, "docker.io", "/v2")
    );
    assert_eq!(h[1].capabilities, Capabilities::ALL);
}

#[test]
fn mirrors_come_in_the_files_order_with_their_capabilities_and_cas() {
    let h = hosts(
        r#"
        server = "https://registry-1.docker.io"

        [host."https://public-mirror.example.com"]
          capabilities = ["pull"]
        [host."https://docker-mirror.internal"]
          capabilities = ["pull", "resolve"]
          ca = "docker-mirror.crt"
        [host."https://a-last.example"]
          ca = ["/etc/certs/one.pem", "two.pem"]
        "#,
    );
    let names: Vec<&str> = h.iter().map(|h| h.authority.as_str()).collect();
    assert_eq!(
        names,
        [
            "public-mirror.example.com",
            "docker-mirror.internal",
            "a-last.example",
            "registry-1.docker.io"
        ]
    );
    let pull_only = Capabilities {
        pull: true,
        resolve: false,
        push: false,
    };
    assert_eq!(h[0].capabilities, pull_only);
    assert_eq!(h[1].capabilities, PULL_RESOLVE);
    assert_eq!(h[2].capabilities, Capabilities::ALL);
    let dir = Path::new(FILE).parent().unwrap();
    assert_eq!(h[1].ca, [dir.join("docker-mirror.crt")]);
    assert_eq!(
        h[2].ca,
        [PathBuf::from("/etc/certs/one.pem"), dir.join("two.pem")]
    );
}

#[test]
fn a_plain_http_mirror_may_skip_verification_and_push() {
    let h = hosts(
        r#"
        server = "https://registry-1.docker.io"
        [host."http://192.168.31.250:5000"]
          capabilities = ["pull", "resolve", "push"]
          skip_verify = true
        "#,
    );
    assert_eq!(h[0].scheme, Scheme::Http);
    assert_eq!(h[0].authority, "192.168.31.250:5000");
    assert!(h[0].skip_verify && !h[1].skip_verify);
    assert_eq!(h[0].capabilities, Capabilities::ALL);
}

#[test]
fn paths_headers_and_override_path() {
    let h = hosts(
        r#"
        [host."https://mirror.registry"]
          capabilities = ["pull"]
          [host."https://mirror.registry".header]
            x-custom-2 = ["value1", "value2"]
            x-custom-1 = "one"
        [host."https://mirror-bak.registry/us"]
          skip_verify = true
        [host."https://non-compliant-mirror.registry/v2/upstream"]
          override_path = true
        [host."mirror.example:8443/v2/"]
        "#,
    );
    let header = |n: &'static str, v: &'static str| {
        (HeaderName::from_static(n), HeaderValue::from_static(v))
    };
    assert_eq!(
        h[0].headers,
        [
            header("x-custom-2", "value1"),
            header("x-custom-2", "value2"),
            header("x-custom-1", "one")
        ]
    );
    assert_eq!(h[1].path, "/us/v2");
    assert_eq!(h[2].path, "/v2/upstream");
    assert_eq!(
        (h[3].scheme, h[3].authority.as_str(), h[3].path.as_str()),
        (Scheme::Https, "mirror.example:8443", "/v2")
    );
}

#[test]
fn without_a_server_the_registry_itself_comes_last_and_may_do_everything() {
    let h = hosts(
        r#"
        capabilities = ["pull"]
        skip_verify = true
        [host."http://127.0.0.1:5000"]
          capabilities = ["pull", "resolve"]
        "#,
    );
    assert_eq!(h.len(), 2);
    let last = &h[1];
    assert_eq!(last.scheme, Scheme::HttpsElseHttp);
    assert_eq!(last.authority, "index.docker.io");
    assert_eq!(last.capabilities, Capabilities::ALL);
    assert!(last.skip_verify);
    let registry = Host {
        listed: true,
        ..Host::registry("index.docker.io")
    };
    assert_eq!(hosts(""), [registry]);
}

#[test]
fn a_server_given_keeps_the_top_level_capabilities() {
    let h = hosts("server = \"registry.example\"\ncapabilities = [\"pull\", \"resolve\"]\n");
    assert_eq!(h[0].scheme, Scheme::Https);
    assert_eq!(h[0].capabilities, PULL_RESOLVE);
}

#[test]
fn a_malformed_file_is_refused_naming_the_file_and_what() {
    for (text, says) in [
        ("[host.\"https://m\"\ncapabilities = 1", "line 1"),
        (
            "server = \"https://r\"\n\n[host.\"https://m\"]\n  capabilities = [\"pul\"]",
            "unknown capability \"pul\"",
        ),
        (
            "[host.\"https://m\"]\n  client = \"/etc/c.pem\"",
            "unknown field `client`",
        ),
        ("proxy = \"http://p:8080\"", "unknown field `proxy`"),
        ("[host.\"ftp://m\"]", "not http or https"),
        ("[host.\"https://m?x=1\"]", "nothing else"),
        ("server = 5", "server is a integer"),
        (
            "[host.\"https://m\"]\n  skip_verify = \"yes\"",
            "[host.\"https://m\"]",
        ),
        (
            "[host.\"https://m\".header]\n  \"bad name\" = \"v\"",
            "not a header name",
        ),
    ] {
        let e = refusal(text);
        assert!(e.starts_with(FILE), "{e}");
        assert!(e.contains(says), "{text:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
