//! `GET /v2/<name>/referrers/<digest>`: the store's referrers index of a manifest the repository
//! uses, filtered by `artifactType`. The spec wants 200 and an empty index, never a 404, for a
//! subject without referrers, so a subject the repository does not use gets the empty index too.

use http::{HeaderValue, Response};
use store::OCI_INDEX;

use super::body::Body;
use super::error::Problem;
use super::handler::{Ask, digest, json};

pub(super) async fn get(ask: &Ask<'_>, name: &str, raw: &str) -> Result<Response<Body>, Problem> {
    let repository = ask.known_repository(name)?;
    // Another algorithm's digest names nothing stored: its referrers are none.
    let subject = match digest(raw, |_| Problem::manifest_unknown(raw)) {
        Ok(d) => Some(d),
        Err(p) if p.code == "MANIFEST_UNKNOWN" => None,
        Err(p) => return Err(p),
    };
    let images = ask.store.images();
    let filter = ask.query.artifact_type.as_deref();
    let index = match subject {
        Some(d) if ask.may_see(&repository, &d).await? => {
            match images.referrers_index(&d, filter) {
                Ok(index) => index,
                Err(store::Error::NotFound(_)) => empty(),
                Err(e) => return Err(e.into()),
            }
        }
        _ => empty(),
    };
    let mut response = json(ask, OCI_INDEX, index);
    if filter.is_some() {
        response.headers_mut().insert(
            "OCI-Filters-Applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}

fn empty() -> Vec<u8> {
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
    serde_json::to_vec(&index).expect("an index serialises")
}
