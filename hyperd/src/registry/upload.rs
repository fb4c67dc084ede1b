//! A push's requests, made by hyperd itself as its pulls are (oci-client read a refusal's body
//! whole, however large): whether a blob is there, a mount, a blob's upload in one PUT, a
//! manifest. A refusal's body is read at most 4 KiB ([`refusal`]).

use bytes::Bytes;
use futures_util::Stream;
use oci_client::Reference;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION};
use reqwest::{StatusCode, Url};
use store::Digest;

use super::error::{Error, Result, chain};
use super::remote::{Remote, refusal, retry};

impl Remote {
    /// `<API root>/<repository>/<tail>`: `https://host/v2/…` unless `hosts.toml` says.
    fn v2(&self, repo: &Reference, tail: &str) -> String {
        self.endpoint.url(&format!("{}/{tail}", repo.repository()))
    }

    /// Whether the registry holds `digest` in `repo`.
    pub(super) async fn has_blob(&self, repo: &Reference, digest: &Digest) -> Result<bool> {
        let what = format!("looking for blob {digest}");
        let url = self.v2(repo, &format!("blobs/{digest}"));
        retry(|| async {
            let resp = self.send(self.endpoint.http.head(&url), &what).await?;
            match resp.status() {
                s if s.is_success() => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(refusal(resp, self.host(), &what).await),
            }
        })
        .await
    }

    /// Asks the registry to link `digest` from repository `from` into `repo`; false when it
    /// would not (it then expects an upload, which follows).
    pub(super) async fn mount(&self, repo: &Reference, from: &str, digest: &Digest) -> bool {
        let url = self.v2(repo, "blobs/uploads/");
        let query = [("mount", digest.to_string()), ("from", from.to_owned())];
        let req = self.endpoint.http.post(&url).query(&query);
        match self.send(req.header(CONTENT_LENGTH, 0), "mounting").await {
            Ok(resp) if resp.status() == StatusCode::CREATED => true,
            Ok(resp) => {
                let status = resp.status().as_u16();
                tracing::debug!(%digest, from, status, "mount refused; uploading");
                false
            }
            Err(e) => {
                tracing::debug!(%digest, from, error = %e, "mount refused; uploading");
                false
            }
        }
    }

    /// Uploads blob `digest` of `size` bytes from the stream `body` makes (made again for each
    /// attempt), in one PUT.
    pub(super) async fn push_blob<S, F>(
        &self,
        repo: &Reference,
        digest: &Digest,
        size: u64,
        body: F,
    ) -> Result<()>
    where
        F: Fn() -> S,
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let what = format!("uploading blob {digest}");
        let host = self.host();
        retry(|| async {
            let location = self.begin_upload(repo, &what).await?;
            let mut url = location;
            url.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let req = self
                .endpoint
                .http
                .put(url.clone())
                .header(CONTENT_LENGTH, size)
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(reqwest::Body::wrap_stream(body()));
            // The credential goes to the registry only, not to where it sends the upload.
            let resp = match self.is_registry(&url) {
                true => self.send(req, &what).await?,
                false => req.send().await.map_err(|e| Error::http(host, &what, &e))?,
            };
            match resp.status() {
                StatusCode::CREATED => Ok(()),
                _ => Err(refusal(resp, host, &what).await),
            }
        })
        .await
    }

    /// Opens an upload session: where its bytes go.
    async fn begin_upload(&self, repo: &Reference, what: &str) -> Result<Url> {
        let start = self.v2(repo, "blobs/uploads/");
        let req = self.endpoint.http.post(&start).header(CONTENT_LENGTH, 0);
        let resp = self.send(req, what).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(refusal(resp, self.host(), what).await);
        }
        let host = self.host();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::BadRemote(format!("{what} at {host}: no upload Location")))?;
        Url::parse(&start)
            .and_then(|base| base.join(location))
            .map_err(|e| Error::BadRemote(format!("{what} at {host}: Location: {}", chain(&e))))
    }

    /// Whether `url` is on the registry itself (scheme, host and port).
    fn is_registry(&self, url: &Url) -> bool {
        Url::parse(self.base()).is_ok_and(|base| base.origin() == url.origin())
    }

    /// Puts a manifest or index under `reference` (a tag or its digest).
    pub(super) async fn push_manifest(
        &self,
        reference: &Reference,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<()> {
        let what = format!("pushing manifest {}", reference.whole());
        let content_type = HeaderValue::from_str(media_type)
            .map_err(|_| Error::InvalidArgument(format!("media type {media_type:?}")))?;
        let tail = reference.digest().or(reference.tag()).unwrap_or("latest");
        let url = self.v2(reference, &format!("manifests/{tail}"));
        retry(|| async {
            let req = self.endpoint.http.put(&url);
            let req = req.header(CONTENT_TYPE, content_type.clone());
            let resp = self.send(req.body(bytes.clone()), &what).await?;
            match resp.status().is_success() {
                true => Ok(()),
                false => Err(refusal(resp, self.host(), &what).await),
            }
        })
        .await
    }
}
