//! Store types <-> API messages.

use hyperd_proto::v1;
use store::{
    Digest, ImageName, ImageSummary, Loaded, LoadedImage, ReferrerRecord, Removed, SaveItem,
};
use tonic::Status;

use super::status::{invalid_request, to_status};

pub(crate) fn image(s: &ImageSummary) -> v1::Image {
    v1::Image {
        repository: s
            .name
            .as_ref()
            .map(ImageName::familiar_repository)
            .unwrap_or_default(),
        tag: s
            .name
            .as_ref()
            .map(|n| n.tag().to_owned())
            .unwrap_or_default(),
        name: s.name.as_ref().map(ImageName::full).unwrap_or_default(),
        id: s.id.to_string(),
        digest: s.digest.to_string(),
        created: s.created.clone().unwrap_or_default(),
        size: s.size,
        platforms: s.platforms.clone(),
        last_used: time(s.usage.last_used),
        pinned: s.usage.pinned,
    }
}

/// A time as the API writes it: RFC 3339 in UTC with nanoseconds, empty for none.
pub(crate) fn time(t: Option<std::time::SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_nanos(t).to_string())
        .unwrap_or_default()
}

pub(crate) fn ref_map(refs: Vec<v1::RefMapping>) -> Result<Vec<(ImageName, String)>, Status> {
    refs.into_iter()
        .map(|r| {
            if r.ref_name.is_empty() {
                return Err(invalid_request(format!(
                    "ref mapping for {:?} has no ref name",
                    r.name
                )));
            }
            let name = r.name.parse().map_err(to_status)?;
            Ok((name, r.ref_name))
        })
        .collect()
}

/// The format and the options it takes; `platform` only means something for docker-archive,
/// `no_referrers` only for OCI.
pub(crate) fn format(
    f: i32,
    platform: String,
    no_referrers: bool,
) -> Result<store::Format, Status> {
    match v1::ArchiveFormat::try_from(f) {
        Ok(v1::ArchiveFormat::Unspecified | v1::ArchiveFormat::Oci) => Ok(store::Format::Oci {
            referrers: match no_referrers {
                true => store::Referrers::Omit,
                false => store::Referrers::Include,
            },
        }),
        Ok(v1::ArchiveFormat::Docker) => Ok(store::Format::Docker {
            platform: non_empty(platform)
                .map(|p| p.parse())
                .transpose()
                .map_err(to_status)?,
        }),
        Err(_) => Err(invalid_request(format!("unknown archive format {f}"))),
    }
}

pub(crate) fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A digest as the API spells it, `sha256:<64 lowercase hex>`.
pub(crate) fn digest(s: &str) -> Result<Digest, Status> {
    s.parse().map_err(|_| {
        invalid_request(format!(
            "{s:?} is not a digest: want sha256:<64 lowercase hex digits>"
        ))
    })
}

pub(crate) fn referrer(r: &ReferrerRecord) -> v1::Referrer {
    v1::Referrer {
        digest: r.digest.to_string(),
        media_type: r.media_type.clone(),
        artifact_type: r.artifact_type.clone().unwrap_or_default(),
        size: r.size,
        annotations: r.annotations.clone().into_iter().collect(),
        subject: r.subject.to_string(),
    }
}

pub(crate) fn loaded_image(l: &LoadedImage) -> v1::LoadedImage {
    v1::LoadedImage {
        names: l.names.iter().map(ToString::to_string).collect(),
        id: l.id.to_string(),
        digest: l.digest.to_string(),
    }
}

/// What a load committed, logged and as the answer.
pub(crate) fn loaded(uid: Option<u32>, loaded: Loaded) -> v1::LoadResponse {
    let names: Vec<String> = loaded
        .images
        .iter()
        .flat_map(|l| l.names.iter().map(ToString::to_string))
        .collect();
    let (blobs, already_stored) = (loaded.blobs, loaded.already_stored);
    tracing::info!(uid, images = loaded.images.len(), names = ?names, blobs, already_stored, "loaded");
    v1::LoadResponse {
        images: loaded.images.iter().map(loaded_image).collect(),
        blobs,
        already_stored,
        already_stored_bytes: loaded.already_stored_bytes,
    }
}

/// What removals did, as Remove answers it.
pub(crate) fn removed(removed: Vec<Removed>) -> v1::RemoveResponse {
    let mut resp = v1::RemoveResponse::default();
    for r in removed {
        match r {
            Removed::Untagged(n) => resp.untagged.push(n.to_string()),
            Removed::Deleted(id) => resp.deleted.push(id.to_string()),
            Removed::Referrer(d) => resp.deleted_referrers.push(d.to_string()),
        }
    }
    resp
}

/// The images a save names, and its format.
pub(crate) fn save(req: v1::SaveRequest) -> Result<(Vec<SaveItem>, store::Format), Status> {
    let format = format(req.format, req.platform, req.no_referrers)?;
    if req.images.is_empty() {
        return Err(invalid_request("name at least one image to save"));
    }
    let items = req
        .images
        .into_iter()
        .map(|i| SaveItem {
            image: i.image,
            ref_name: non_empty(i.ref_name),
        })
        .collect();
    Ok((items, format))
}
