//! Pull-through (`--registry-pull-through`): before a manifest is answered, what the store lacks
//! is pulled from the repository's own registry (`made.up.example/app` from made.up.example,
//! `busybox` from Docker Hub), and a tag looked up there longer ago than the configured age is
//! looked up again. An upstream that fails leaves a stored tag served as it is.

use store::Digest;

use super::error::Problem;
use super::handler::{Ask, digest};
use crate::registry::{Error, PullThrough};

pub(super) async fn before_manifest(
    ask: &Ask<'_>,
    through: &PullThrough,
    repository: &str,
    reference: &str,
) -> Result<(), Problem> {
    if is_own(ask, repository) {
        return Ok(());
    }
    if reference.contains(':') {
        let d = digest(reference, Problem::manifest_unknown)?;
        if ask.may_see(repository, &d).await? {
            return Ok(());
        }
        let wanted = format!("{repository}@{d}");
        return through
            .pull(&wanted)
            .await
            .map(drop)
            .map_err(|e| refusal(&wanted, reference, &e));
    }
    let wanted = format!("{repository}:{reference}");
    let stored = ask.store.images().tagged(repository, reference)?;
    if stored.is_some() && !through.is_stale(&wanted) {
        return Ok(());
    }
    match through.pull(&wanted).await {
        Ok(_) => Ok(()),
        Err(e) if stored.is_some() => {
            tracing::warn!(reference = %wanted, error = %e, "serving the stored tag: upstream failed");
            Ok(())
        }
        Err(e) => Err(refusal(&wanted, reference, &e)),
    }
}

/// Whether the image pulled through by digest under `repository` is, or uses, `digest`.
pub(super) fn pulled_uses(
    ask: &Ask<'_>,
    through: &PullThrough,
    repository: &str,
    digest: &Digest,
) -> bool {
    through.pulled_by_digest(repository).iter().any(|image| {
        image == digest
            || ask
                .store
                .images()
                .blobs_of(image)
                .is_ok_and(|blobs| blobs.contains(digest))
    })
}

/// A repository of this endpoint's own address: pulling it through would ask this endpoint.
fn is_own(ask: &Ask<'_>, repository: &str) -> bool {
    let host = repository.split('/').next().unwrap_or_default();
    ask.own_hosts.iter().any(|own| own == host)
}

fn refusal(wanted: &str, reference: &str, e: &Error) -> Problem {
    match e {
        Error::NotFound(_) => Problem::manifest_unknown(reference),
        e => Problem::upstream(wanted, e),
    }
}
