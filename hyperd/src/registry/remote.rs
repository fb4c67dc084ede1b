//! Requests to one registry with one credential: manifests (read with a size limit, their
//! digest checked) and blobs; a push's requests are in `upload.rs`. Transient failures are
//! retried here.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};
use oci_client::secrets::RegistryAuth;
use oci_client::{Reference, RegistryOperation};
use reqwest::RequestBuilder;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use store::Digest;
use store::limits::MAX_JSON;

use super::endpoint::{Config, Endpoint};
use super::error::{Error, Result};
use super::mirrors::Target;
use super::token;

/// Every manifest and index type the store reads, as a manifest request accepts them.
static MANIFEST_TYPES: LazyLock<String> = LazyLock::new(|| store::document_types().join(", "));

/// Attempts of a request that failed transiently, and the pause before the second.
const ATTEMPTS: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_millis(500);

/// A manifest or index as the registry sent it, its digest checked.
pub(super) struct Fetched {
    pub(super) bytes: Bytes,
    pub(super) digest: Digest,
    pub(super) media_type: String,
}

pub(super) struct Remote {
    pub(super) endpoint: Endpoint,
    auth: RegistryAuth,
    /// The bearer token for this operation's scope, when the registry uses tokens.
    bearer: Option<String>,
    /// Why this host gets no credential, when hyperd keeps the registry's from it.
    withheld: Option<String>,
}

impl Remote {
    /// Reaches `target`, a host of the registry of `reference`, and authorises `op` on the
    /// repository there.
    pub(super) async fn connect(
        config: &Config,
        target: &Target,
        reference: &Reference,
        op: RegistryOperation,
    ) -> Result<Remote> {
        let endpoint = Endpoint::connect(config, &target.host, target.ns.as_deref()).await?;
        let auth = target.credential.to_auth();
        let bearer = token::authorise(&endpoint, config, reference, &auth, op)
            .await
            .map_err(|e| e.withheld(&target.host.authority, target.withheld.as_deref()))?;
        Ok(Remote {
            endpoint,
            auth,
            bearer,
            withheld: target.withheld.clone(),
        })
    }

    /// This host's error `e`, told as a refusal for want of a credential it is never sent.
    pub(super) fn told(&self, e: Error) -> Error {
        e.withheld(self.host(), self.withheld.as_deref())
    }

    pub(super) fn host(&self) -> &str {
        &self.endpoint.host
    }

    /// The registry's URL: `https://host[:port]` (or `http://`).
    pub(super) fn base(&self) -> &str {
        &self.endpoint.base
    }

    /// The manifest or index `reference` names, at most [`MAX_JSON`] bytes, its digest checked
    /// against the reference's digest and the registry's `Docker-Content-Digest`.
    pub(super) async fn manifest(&self, reference: &Reference) -> Result<Fetched> {
        retry(|| self.manifest_once(reference)).await
    }

    async fn manifest_once(&self, reference: &Reference) -> Result<Fetched> {
        let what = format!("manifest {}", reference.whole());
        let host = self.host();
        let tail = reference.digest().or(reference.tag()).unwrap_or("latest");
        let url = self
            .endpoint
            .url(&format!("{}/manifests/{tail}", reference.repository()));
        let mut resp = self.get(&url, &MANIFEST_TYPES, &what).await?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(Error::BadRemote(format!(
                "{what} at {host}: redirected ({status}); manifests are read from the registry itself"
            )));
        }
        if !status.is_success() {
            return Err(refusal(resp, host, &what).await);
        }
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let bytes = read_limited(&mut resp, MAX_JSON, host, &what).await?;
        let digest = Digest::of(&bytes);
        for (promised, by) in [
            (reference.digest(), "the reference"),
            (header_digest.as_deref(), "its Docker-Content-Digest"),
        ] {
            if let Some(p) = promised
                && p != digest.to_string()
            {
                return Err(Error::BadRemote(format!(
                    "{what} at {host}: the bytes sent hash to {digest}, not {p} as {by} says"
                )));
            }
        }
        let own = store::own_media_type(&digest, &bytes).ok().flatten();
        let media_type = own
            .or(header_type)
            .ok_or_else(|| Error::BadRemote(format!("{what} at {host}: no media type")))?;
        Ok(Fetched {
            bytes: Bytes::from(bytes),
            digest,
            media_type,
        })
    }

    /// A GET of `url` on the registry, with the operation's credential.
    pub(super) async fn get(
        &self,
        url: &str,
        accept: &str,
        what: &str,
    ) -> Result<reqwest::Response> {
        let req = self.endpoint.http.get(url).header(ACCEPT, accept);
        self.send(req, what).await
    }

    /// Sends `req`, addressed to the registry, with the operation's credential.
    pub(super) async fn send(&self, req: RequestBuilder, what: &str) -> Result<reqwest::Response> {
        authorise(req, self.bearer.as_deref(), &self.auth)
            .send()
            .await
            .map_err(|e| Error::http(self.host(), what, &e))
    }

    /// The body of blob `digest` of `size` bytes, as the registry streams it (not yet checked),
    /// through the redirects a registry may send blobs through; a refusal's body is read at
    /// most 4 KiB.
    pub(super) async fn blob(
        &self,
        repo: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + use<>> {
        let what = format!("blob {digest}");
        let host = self.host();
        let url = self
            .endpoint
            .url(&format!("{}/blobs/{digest}", repo.repository()));
        // The credential goes to the registry only: reqwest drops it on a redirect elsewhere.
        let resp = self.send(self.endpoint.blobs.get(&url), &what).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(refusal(resp, host, &what).await);
        }
        if let Some(len) = resp.content_length()
            && len > size
        {
            return Err(Error::BadRemote(format!(
                "{what} at {host}: the registry sends {len} bytes, but the manifest gives {size}"
            )));
        }
        Ok(resp.bytes_stream().map_err(std::io::Error::other))
    }
}

/// A request to the registry with the operation's credential: the bearer token
/// when the registry gave one, else the credential itself.
pub(super) fn authorise(
    req: RequestBuilder,
    bearer: Option<&str>,
    auth: &RegistryAuth,
) -> RequestBuilder {
    match (bearer, auth) {
        (Some(token), _) => req.bearer_auth(token),
        (None, RegistryAuth::Basic(user, password)) => req.basic_auth(user, Some(password)),
        (None, _) => req,
    }
}

/// The error an answer with a failure status is: its status, and what its body says.
pub(super) async fn refusal(mut resp: reqwest::Response, host: &str, what: &str) -> Error {
    let status = resp.status().as_u16();
    let body = read_limited(&mut resp, 4096, host, what)
        .await
        .unwrap_or_default();
    Error::status(host, what, status, &detail(&body))
}

/// What an error answer says: the messages of distribution's `{"errors": [...]}`, else its text.
fn detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Message>,
    }
    #[derive(serde::Deserialize)]
    struct Message {
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let messages: Vec<String> = e.errors.into_iter().map(|m| m.message).collect();
            messages.join("; ")
        }
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    }
}

/// A response body of at most `limit` bytes; more is the registry's fault.
pub(super) async fn read_limited(
    resp: &mut reqwest::Response,
    limit: u64,
    host: &str,
    what: &str,
) -> Result<Vec<u8>> {
    if let Some(len) = resp.content_length()
        && len > limit
    {
        return Err(Error::BadRemote(format!(
            "{what} at {host}: {len} bytes, over the {limit}-byte limit"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Error::http(host, what, &e))?
    {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(Error::BadRemote(format!(
                "{what} at {host}: over the {limit}-byte limit"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Runs `attempt` until it succeeds, fails for good, or has failed transiently [`ATTEMPTS`]
/// times, pausing twice as long after each failure.
pub(super) async fn retry<T, F, Fut>(attempt: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut pause = FIRST_PAUSE;
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_transient() && tries < ATTEMPTS => {
                tracing::info!(error = %e, tries, "registry request failed; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
                tries += 1;
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::detail;

    #[test]
    fn an_error_answer_says_its_messages() {
        let envelope =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(detail(envelope), "manifest unknown");
        assert_eq!(detail(b" 404 page not found\n"), "404 page not found");
        assert_eq!(detail(br#"{"errors":[]}"#), r#"{"errors":[]}"#);
    }
}
