//! How a request's credential becomes what requests to the registry carry. hyperd answers the
//! registry's challenge itself (oci-client read a token answer and a refusal whole, however
//! large, and sent the password to whatever realm it was told): a token answer is read up to
//! [`MAX_TOKEN_ANSWER`] bytes, and a credential goes over plain HTTP only where the operator
//! allowed it or nothing leaves the machine.

use http_auth::ChallengeParser;
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use reqwest::Url;

use super::endpoint::{Config, Endpoint, allows_http, realm_client};
use super::error::{Error, Result};
use super::remote::{read_limited, refusal};

/// Largest token answer read: a real one is a JWT and its lifetime, a few KiB.
pub(crate) const MAX_TOKEN_ANSWER: u64 = 1 << 20;

/// What the registry's `/v2/` answer asked for.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    /// Nothing: anyone may read (or it says so only later, per request).
    None,
    /// The credential itself, with every request.
    Basic,
    /// A token from `realm`, asked for with the credential.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// The bearer token requests carry, if the registry wants one (else they carry the credential).
pub(super) async fn authorise(
    endpoint: &Endpoint,
    config: &Config,
    reference: &Reference,
    auth: &RegistryAuth,
    op: RegistryOperation,
) -> Result<Option<String>> {
    match (challenge(endpoint.challenge.as_deref()), auth) {
        (_, RegistryAuth::Bearer(token)) => Ok(Some(token.clone())),
        (Challenge::Bearer { realm, service }, _) => {
            let scope = match op {
                RegistryOperation::Pull => format!("repository:{}:pull", reference.repository()),
                RegistryOperation::Push => {
                    format!("repository:{}:pull,push", reference.repository())
                }
            };
            let realm = checked_realm(endpoint, &config.insecure, &realm, auth)?;
            let client = realm_client(config, &realm).await?;
            let token = fetch(endpoint, &client, realm, service.as_deref(), &scope, auth).await?;
            Ok(Some(token))
        }
        _ => Ok(None),
    }
}

fn challenge(header: Option<&str>) -> Challenge {
    let Some(header) = header else {
        return Challenge::None;
    };
    let mut basic = false;
    for c in ChallengeParser::new(header).flatten() {
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let param = |name: &str| {
                let value = c.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
                value.map(|(_, v)| v.to_unescaped())
            };
            if let Some(realm) = param("realm") {
                let service = param("service");
                return Challenge::Bearer { realm, service };
            }
        }
        basic |= c.scheme.eq_ignore_ascii_case("basic");
    }
    // As oci-client did: any other challenge is answered with the credential itself.
    match basic || !header.trim().is_empty() {
        true => Challenge::Basic,
        false => Challenge::None,
    }
}

/// The realm as a URL, refused when a credential would go to it in clear: over plain HTTP,
/// unless the operator named the registry in `--insecure-registry`, or registry and realm are
/// both on loopback (nothing leaves the machine).
fn checked_realm(
    endpoint: &Endpoint,
    insecure: &[String],
    realm: &str,
    auth: &RegistryAuth,
) -> Result<Url> {
    let host = &endpoint.host;
    let url = Url::parse(realm).map_err(|e| {
        Error::BadRemote(format!(
            "{host} names a token realm {realm:?} that is not a URL: {e}"
        ))
    })?;
    let clear = match url.scheme() {
        "https" => false,
        "http" => true,
        other => {
            return Err(Error::BadRemote(format!(
                "{host} names a token realm {realm} of scheme {other:?}, not HTTPS"
            )));
        }
    };
    let credential = !matches!(auth, RegistryAuth::Anonymous);
    if clear && credential && !clear_allowed(host, insecure, &url) {
        return Err(Error::BadRemote(format!(
            "{host} asks for the credential at {realm}, over plain HTTP: refused. A credential \
             goes over HTTP only to a registry given to --insecure-registry, or from a loopback \
             registry to a loopback realm"
        )));
    }
    Ok(url)
}

fn clear_allowed(host: &str, insecure: &[String], realm: &Url) -> bool {
    let realm_host = match (realm.host_str(), realm.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return false,
    };
    insecure.iter().any(|i| i == host) || (allows_http(host, &[]) && allows_http(&realm_host, &[]))
}

/// Asks the realm for a token for `scope`, with the credential if there is one.
async fn fetch(
    endpoint: &Endpoint,
    client: &reqwest::Client,
    realm: Url,
    service: Option<&str>,
    scope: &str,
    auth: &RegistryAuth,
) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let host = &endpoint.host;
    let what = format!("the token answer from {realm}");
    let mut query = vec![("scope", scope)];
    query.extend(service.map(|s| ("service", s)));
    let mut req = client.get(realm.clone()).query(&query);
    if let RegistryAuth::Basic(user, password) = auth {
        req = req.basic_auth(user, Some(password));
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| Error::http(host, "authorising", &e))?;
    if !resp.status().is_success() {
        return Err(match refusal(resp, host, "authorising").await {
            e @ Error::Unavailable { .. } => e,
            // As before: any other refusal of a token is a refused credential.
            _ => Error::status(host, "authorising", 401, ""),
        });
    }
    let body = read_limited(&mut resp, MAX_TOKEN_ANSWER, host, &what).await?;
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRemote(format!("{what} at {host}: not a token: {e}")))?;
    answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::BadRemote(format!("{what} at {host}: no token in it")))
}

#[cfg(test)]
mod tests {
    use reqwest::Url;

    use super::{Challenge, challenge, clear_allowed};

    #[test]
    fn a_credential_goes_in_clear_only_where_the_operator_allows_or_nothing_leaves_the_machine() {
        let insecure = vec!["registry.lan:5000".to_owned()];
        let realm = |s: &str| Url::parse(s).unwrap();
        let far = realm("http://auth.example/token");
        let near = realm("http://127.0.0.1:8080/token");
        assert!(clear_allowed("registry.lan:5000", &insecure, &far));
        assert!(clear_allowed("127.0.0.1:5000", &insecure, &near));
        assert!(clear_allowed(
            "localhost:5000",
            &insecure,
            &realm("http://[::1]:9/t")
        ));
        assert!(!clear_allowed("127.0.0.1:5000", &insecure, &far));
        assert!(!clear_allowed("quay.io", &insecure, &far));
        assert!(!clear_allowed("quay.io", &insecure, &near));
    }

    #[test]
    fn a_challenge_says_basic_or_where_tokens_come_from() {
        assert_eq!(challenge(None), Challenge::None);
        assert_eq!(challenge(Some(r#"Basic realm="test""#)), Challenge::Basic);
        assert_eq!(
            challenge(Some(
                r#"Bearer realm="https://auth.example/token",service="registry.example""#
            )),
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            }
        );
        // A bearer challenge without a realm says nothing usable: the credential goes as is.
        assert_eq!(challenge(Some(r#"Bearer service="x""#)), Challenge::Basic);
    }
}
