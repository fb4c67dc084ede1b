//! OCI 1.1 referrers and artifacts made in memory, in the shapes cosign, syft/oras and buildx
//! give them: signatures and SBOMs that name their image as `subject`, and attestation
//! manifests inside a buildx image index.

use serde_json::{Value, json};

use crate::fixtures::{Comp, Entry, Image, LAYOUT, index_json, sha};

/// The empty config every artifact shares (`{}`), as the image-spec defines it.
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_CONFIG: &[u8] = b"{}";
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const SPDX: &str = "application/spdx+json";
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// A manifest that is no image: its bytes, its config and layers, and its artifact type as the
/// referrers API reports it (its `artifactType`, else its config's media type).
#[derive(Clone)]
pub struct Artifact {
    pub manifest: Vec<u8>,
    /// Config first, then layers.
    pub blobs: Vec<Vec<u8>>,
    pub artifact_type: String,
}

impl Artifact {
    pub fn digest(&self) -> String {
        sha(&self.manifest)
    }

    pub fn blob_entries(&self) -> Vec<Entry> {
        let mut v = vec![Entry::blob(&self.manifest)];
        v.extend(self.blobs.iter().map(|b| Entry::blob(b)));
        v
    }

    /// Its descriptor as oras and cosign list it in index.json: with its artifactType, no name.
    pub fn descriptor(&self) -> Value {
        json!({
            "mediaType": MANIFEST,
            "digest": self.digest(),
            "size": self.manifest.len(),
            "artifactType": self.artifact_type,
        })
    }
}

fn empty_descriptor() -> Value {
    json!({"mediaType": EMPTY, "digest": sha(EMPTY_CONFIG), "size": 2, "data": "e30="})
}

/// A manifest of `layers` (media type, bytes, annotations) over the empty config, describing the
/// manifest `subject` (of media type `subject_type`) when given.
fn artifact(
    artifact_type: Option<&str>,
    layers: &[(&str, Vec<u8>, Value)],
    subject: Option<(&[u8], &str)>,
    annotations: Value,
) -> Artifact {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": empty_descriptor(),
        "layers": layers
            .iter()
            .map(|(mt, b, a)| json!({"mediaType": mt, "digest": sha(b), "size": b.len(), "annotations": a}))
            .collect::<Vec<_>>(),
        "annotations": annotations,
    });
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    if let Some((bytes, media_type)) = subject {
        m["subject"] = json!({"mediaType": media_type, "digest": sha(bytes), "size": bytes.len()});
    }
    let mut blobs = vec![EMPTY_CONFIG.to_vec()];
    blobs.extend(layers.iter().map(|(_, b, _)| b.clone()));
    Artifact {
        manifest: serde_json::to_vec(&m).unwrap(),
        blobs,
        artifact_type: artifact_type.unwrap_or(EMPTY).to_owned(),
    }
}

/// A cosign-style signature of the manifest `subject`: the empty config, one simple-signing
/// payload naming the subject's digest, the signature in the layer's annotations, no
/// artifactType (so the referrers API reports the empty config's media type).
pub fn cosign_signature(subject: &[u8], subject_type: &str, seed: &str) -> Artifact {
    let payload = serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": "registry.example/art/app"},
            "image": {"docker-manifest-digest": sha(subject)},
            "type": "cosign container image signature",
        },
        "optional": {"seed": seed},
    }))
    .unwrap();
    let layer_annotations =
        json!({"dev.cosignproject.cosign/signature": format!("MEUCIQ{seed}signature==")});
    artifact(
        None,
        &[(SIMPLESIGNING, payload, layer_annotations)],
        Some((subject, subject_type)),
        json!({"org.opencontainers.image.created": "2025-01-01T00:00:00Z"}),
    )
}

/// An SPDX SBOM of the manifest `subject`, as syft attaches one with oras.
pub fn spdx_sbom(subject: &[u8], subject_type: &str) -> Artifact {
    let document = serde_json::to_vec(&json!({
        "spdxVersion": "SPDX-2.3",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": "art/app",
        "packages": [{"name": "busybox", "versionInfo": "1.36.1", "SPDXID": "SPDXRef-busybox"}],
    }))
    .unwrap();
    let title = json!({"org.opencontainers.image.title": "sbom.spdx.json"});
    artifact(
        Some(SPDX),
        &[(SPDX, document, title)],
        Some((subject, subject_type)),
        json!({"org.example.sbom.format": "spdx"}),
    )
}

/// An artifact that describes nothing: a chart-like document with an artifactType of its own.
pub fn standalone_artifact(seed: &str) -> Artifact {
    let body = format!("standalone {seed}\n").into_bytes();
    artifact(
        Some("application/vnd.example.chart.v1"),
        &[(
            "application/vnd.example.chart.layer.v1.tar",
            body,
            json!({}),
        )],
        None,
        json!({}),
    )
}

/// A buildx image index: an attestation manifest first (platform unknown/unknown, buildkit's
/// annotations, an image config with the in-toto layer as diff_id), then the image for
/// `linux/<arch>`. Returns the index bytes, the image, the attestation manifest, and the layout's
/// entries with the index named `name` by `io.containerd.image.name`.
pub async fn buildx_index(name: &str, arch: &str) -> (Vec<u8>, Image, Vec<u8>, Vec<Entry>) {
    let image = Image::new(&[&format!("buildx {arch}")], arch, Comp::Gzip).await;
    let statement = serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://spdx.dev/Document",
        "subject": [{"name": name, "digest": {"sha256": sha(&image.manifest)}}],
    }))
    .unwrap();
    let config = serde_json::to_vec(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha(&statement)]},
    }))
    .unwrap();
    let attestation = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{
            "mediaType": IN_TOTO,
            "digest": sha(&statement),
            "size": statement.len(),
            "annotations": {"in-toto.io/predicate-type": "https://spdx.dev/Document"},
        }],
    }))
    .unwrap();
    let mut image_d = image.descriptor(&[]);
    image_d["platform"] = json!({"os": "linux", "architecture": arch});
    let attestation_d = json!({
        "mediaType": MANIFEST,
        "digest": sha(&attestation),
        "size": attestation.len(),
        "platform": {"os": "unknown", "architecture": "unknown"},
        "annotations": {
            "vnd.docker.reference.type": "attestation-manifest",
            "vnd.docker.reference.digest": sha(&image.manifest),
        },
    });
    let index = index_json(vec![attestation_d, image_d]);
    let top = json!({
        "mediaType": INDEX,
        "digest": sha(&index),
        "size": index.len(),
        "annotations": {"io.containerd.image.name": name},
    });
    let mut entries = vec![
        Entry::file("oci-layout", LAYOUT),
        Entry::file("index.json", &index_json(vec![top])),
        Entry::blob(&index),
        Entry::blob(&attestation),
        Entry::blob(&config),
        Entry::blob(&statement),
    ];
    entries.extend(image.blob_entries());
    (index, image, attestation, entries)
}

/// An OCI layout listing `images` (with their annotations) then `referrers`, each blob once.
pub fn layout(images: &[(&Image, &[(&str, &str)])], referrers: &[&Artifact]) -> Vec<Entry> {
    let mut descriptors: Vec<Value> = images.iter().map(|(i, a)| i.descriptor(a)).collect();
    descriptors.extend(referrers.iter().map(|r| r.descriptor()));
    let mut entries = vec![
        Entry::file("oci-layout", LAYOUT),
        Entry::file("index.json", &index_json(descriptors)),
    ];
    let mut seen = std::collections::HashSet::new();
    let blobs = images
        .iter()
        .flat_map(|(i, _)| i.blob_entries())
        .chain(referrers.iter().flat_map(|r| r.blob_entries()));
    for e in blobs {
        if seen.insert(e.path.clone()) {
            entries.push(e);
        }
    }
    entries
}
