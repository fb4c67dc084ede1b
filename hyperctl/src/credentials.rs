//! Registry credentials where docker and podman keep them: docker's `config.json` (under
//! `$DOCKER_CONFIG`, else `~/.docker`), its credential helpers, podman's `auth.json`. hyperctl
//! reads the one credential for the registry a command names and sends only that to hyperd.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use base64::Engine;
use docker_credential::DockerCredential;
use hyperd_proto::v1::Credential;
use serde_json::{Map, Value, json};

/// docker.io's key in config.json, as `docker login` writes it.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// The registry a docker-style reference names: its first component when that looks like a
/// host (has a `.` or `:`, or is `localhost`), else docker.io. This is distribution's domain
/// rule, which hyperd's reference parser applies too; it is all hyperctl reads of a reference
/// (to pick the one credential to send) and the one place it reads it: hyperd parses the whole
/// reference and refuses a bad one.
pub(crate) fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_owned(),
        _ => "docker.io".to_owned(),
    }
}

/// The key a registry's credential is stored under.
pub(crate) fn key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_owned(),
        other => other.to_owned(),
    }
}

/// The user's credential for `registry`, if any is configured.
pub(crate) fn lookup(registry: &str) -> Option<Credential> {
    let key = key(registry);
    let found = docker_credential::get_credential(&key)
        .or_else(|_| docker_credential::get_credential(&format!("https://{key}")))
        .or_else(|_| docker_credential::get_podman_credential(&key))
        .ok()?;
    Some(match found {
        DockerCredential::UsernamePassword(username, password) => Credential {
            username,
            password,
            token: String::new(),
        },
        DockerCredential::IdentityToken(token) => Credential {
            token,
            ..Credential::default()
        },
    })
}

fn config_path() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(
            std::env::var_os("HOME").context("neither DOCKER_CONFIG nor HOME is set")?,
        )
        .join(".docker"),
    };
    Ok(dir.join("config.json"))
}

fn read_config() -> anyhow::Result<(PathBuf, Map<String, Value>)> {
    let path = config_path()?;
    let config = match std::fs::read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok((path, config))
}

/// The credential helper config.json names for `key`, as docker chooses it.
fn helper(config: &Map<String, Value>, key: &str) -> Option<String> {
    config
        .get("credHelpers")
        .and_then(|h| h.get(key))
        .or_else(|| config.get("credsStore"))
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
}

/// Stores the credential as `docker login` does: with the configured helper, else base64 in
/// config.json (mode 0600, replaced whole so a crash leaves the old file).
pub(crate) fn store(registry: &str, username: &str, password: &str) -> anyhow::Result<PathBuf> {
    let key = key(registry);
    let (path, mut config) = read_config()?;
    if let Some(h) = helper(&config, &key) {
        let input = json!({"ServerURL": key, "Username": username, "Secret": password});
        run_helper(&h, "store", &input.to_string())?;
        return Ok(path);
    }
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let auths = config.entry("auths").or_insert_with(|| json!({}));
    let Some(auths) = auths.as_object_mut() else {
        bail!("{}: \"auths\" is not an object", path.display());
    };
    auths.insert(key, json!({ "auth": auth }));
    write_config(&path, &config)?;
    Ok(path)
}

/// Removes the credential; false when there was none.
pub(crate) fn erase(registry: &str) -> anyhow::Result<bool> {
    let key = key(registry);
    let (path, mut config) = read_config()?;
    if let Some(h) = helper(&config, &key) {
        run_helper(&h, "erase", &key)?;
        return Ok(true);
    }
    let removed = config
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(&key))
        .is_some();
    if removed {
        write_config(&path, &config)?;
    }
    Ok(removed)
}

fn write_config(path: &std::path::Path, config: &Map<String, Value>) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().context("config.json has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    serde_json::to_writer_pretty(&mut tmp, config)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn run_helper(helper: &str, verb: &str, input: &str) -> anyhow::Result<()> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("running {program}"))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{program} {verb}: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_the_first_component_when_it_looks_like_a_host() {
        assert_eq!(registry_of("busybox"), "docker.io");
        assert_eq!(registry_of("library/busybox:1"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("quay.io/x/y@sha256:00"), "quay.io");
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(key("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(key("quay.io"), "quay.io");
    }
}
