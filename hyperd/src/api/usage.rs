//! DiskUsage and Prune: the whole store's usage (every record read, off the async threads) and
//! the removal of what a prune picks.

use std::time::{Duration, SystemTime};

use hyperd_proto::v1;
use store::{PruneOptions, Store};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::convert;
use super::status::to_status;

pub(super) async fn disk_usage(store: Store) -> Result<v1::DiskUsageResponse, Status> {
    let usage = tokio::task::spawn_blocking(move || store.images().disk_usage())
        .await
        .map_err(|e| Status::internal(format!("disk usage: {e}")))?
        .map_err(to_status)?;
    let images = usage
        .images
        .into_iter()
        .map(|i| v1::ImageDiskUsage {
            digest: i.digest.to_string(),
            id: i.id.to_string(),
            names: i.names.iter().map(ToString::to_string).collect(),
            created: i.created.unwrap_or_default(),
            size: i.size,
            unique: i.unique,
            shared: i.shared,
            referrers: i.referrers,
            last_used: convert::time(i.last_used),
            pinned: i.pinned,
        })
        .collect();
    Ok(v1::DiskUsageResponse {
        images,
        tagged: usage.tagged,
        referrers: usage.referrers,
        bytes: usage.bytes,
        reclaimable: usage.reclaimable,
    })
}

pub(super) async fn prune(
    store: &Store,
    uid: Option<u32>,
    req: v1::PruneRequest,
    shutdown: CancellationToken,
) -> Result<v1::PruneResponse, Status> {
    let opts = PruneOptions {
        all: req.all,
        created_before: (req.created_before > 0)
            .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(req.created_before as u64)),
        dry_run: req.dry_run,
        labels: req.labels,
        not_labels: req.not_labels,
        stop: Some(shutdown),
    };
    let pruned = store.images().prune(&opts).await.map_err(to_status)?;
    crate::events::pruned(uid, &pruned, opts.dry_run);
    tracing::info!(
        uid,
        all = opts.all,
        dry_run = opts.dry_run,
        images = pruned.images.len(),
        freed = pruned.freed,
        "pruned"
    );
    Ok(v1::PruneResponse {
        removed: Some(convert::removed(
            pruned.removed.into_iter().flat_map(|(_, r)| r).collect(),
        )),
        images: pruned.images.iter().map(ToString::to_string).collect(),
        freed: pruned.freed,
    })
}

pub(super) async fn set_pinned(
    store: Store,
    uid: Option<u32>,
    req: v1::SetPinnedRequest,
) -> Result<v1::SetPinnedResponse, Status> {
    let images = store.images();
    let digest = images
        .set_pinned(&req.image, req.pinned)
        .await
        .map_err(to_status)?;
    tracing::info!(uid, image = %req.image, %digest, pinned = req.pinned, "pin set");
    crate::events::pinned(uid, &digest, req.pinned);
    Ok(v1::SetPinnedResponse {
        digest: digest.to_string(),
    })
}
