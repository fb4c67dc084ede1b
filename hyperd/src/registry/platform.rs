//! docker's refusal of a single-platform image pulled for another platform: an index is chosen
//! from by the platforms it lists, but a lone manifest says its platform only in its config,
//! which is read (and checked) before anything else is fetched.

use bytes::BytesMut;
use futures_util::TryStreamExt;
use oci_client::Reference;
use store::{Digest, Document, Platform};

use super::error::{Error, Result, read_error};
use super::mirrors::Sources;
use super::remote::{Fetched, retry};

/// Configs larger than this are not read ahead: the platform then goes unchecked, as it would
/// be without `--platform`, rather than holding an unbounded body in memory.
const CONFIG_READ_LIMIT: u64 = 4 << 20;

/// Refuses `top`, a manifest the reference names directly, unless its config declares a
/// platform that satisfies `wanted`.
pub(super) async fn refuse_other(
    sources: &Sources<'_>,
    reference: &Reference,
    top: &Fetched,
    wanted: &Platform,
) -> Result<()> {
    let context = format!(
        "{} from {}",
        reference.whole(),
        sources.sent_by(&top.digest)
    );
    let config = Document::parse(&top.digest, &top.media_type, &top.bytes)
        .and_then(|doc| doc.image_config())
        .map_err(|e| Error::bad_document(&context, e))?;
    let Some(config) = config.filter(|c| c.size <= CONFIG_READ_LIMIT) else {
        return Ok(());
    };
    let json = retry(|| read_config(sources, reference, &config.digest, config.size)).await?;
    let has =
        Platform::of_config(&config.digest, &json).map_err(|e| Error::bad_document(&context, e))?;
    if has.satisfies(wanted) {
        return Ok(());
    }
    Err(Error::NoPlatform(format!(
        "{} is an image for {has} only, not {wanted}; pull it without --platform",
        reference.whole()
    )))
}

/// The config's bytes, at most `size`, checked against its digest.
async fn read_config(
    sources: &Sources<'_>,
    reference: &Reference,
    digest: &Digest,
    size: u64,
) -> Result<Vec<u8>> {
    let (host, mut body) = sources.blob(reference, digest, size, &[]).await?;
    let mut json = BytesMut::new();
    let too_long = || {
        Error::BadRemote(format!(
            "config {digest} at {host}: more than the {size} bytes the manifest gives"
        ))
    };
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| read_error(&host, digest, &e))?
    {
        if (json.len() + chunk.len()) as u64 > size {
            return Err(too_long());
        }
        json.extend_from_slice(&chunk);
    }
    if Digest::of(&json) != *digest {
        return Err(Error::BadRemote(format!(
            "config {digest} at {host}: its bytes have another digest"
        )));
    }
    Ok(json.to_vec())
}
