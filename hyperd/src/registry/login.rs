//! `docker login`'s check: does the registry accept this credential? Nothing is kept.

use oci_client::{Reference, RegistryOperation};

use super::endpoint::{Config, Endpoint};
use super::error::{Error, Result};
use super::hosts::Host;
use super::{Credential, remote, token};

/// Checks `credential` against `registry` (`host[:port]`) and returns the address reached.
pub(crate) async fn login(
    config: &Config,
    registry: &str,
    credential: &Credential,
) -> Result<String> {
    let endpoint = Endpoint::connect(config, &Host::registry(registry), None).await?;
    if endpoint.challenge.is_none() {
        // The registry asks no one for credentials; docker's login succeeds too.
        return Ok(endpoint.base);
    }
    if credential.username.is_empty() && credential.token.is_empty() {
        return Err(Error::Unauthenticated(format!(
            "{registry} needs a username and password"
        )));
    }
    // A bearer challenge becomes a token request with the credential, a basic one the
    // credential itself; either way a `/v2/` request with the result tells.
    let probe = Reference::with_tag(
        registry.to_owned(),
        "library/login".to_owned(),
        "latest".to_owned(),
    );
    let auth = credential.to_auth();
    let op = RegistryOperation::Pull;
    let token = token::authorise(&endpoint, config, &probe, &auth, op).await?;
    let req = endpoint.http.get(format!("{}/v2/", endpoint.base));
    let req = remote::authorise(req, token.as_deref(), &auth);
    let resp = remote::retry(|| async {
        req.try_clone()
            .expect("a body-less request clones")
            .send()
            .await
            .map_err(|e| Error::http(registry, "logging in", &e))
    })
    .await?;
    match resp.status().as_u16() {
        200 => Ok(endpoint.base),
        code => Err(Error::status(registry, "logging in", code, "")),
    }
}
