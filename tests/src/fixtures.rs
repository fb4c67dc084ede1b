//! Archives made in memory, so each test says exactly which bytes go in: OCI layouts and
//! docker-archives, plain or compressed, well-formed or hostile.

use std::collections::BTreeMap;

use async_compression::tokio::write::{GzipEncoder, ZstdEncoder};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_tar::{Builder, EntryType, Header};

pub fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

/// One tar entry of an archive under construction.
#[derive(Clone)]
pub struct Entry {
    pub path: String,
    pub data: Vec<u8>,
    pub kind: EntryType,
    pub link: Option<String>,
}

impl Entry {
    pub fn file(path: &str, data: &[u8]) -> Self {
        Entry {
            path: path.into(),
            data: data.to_vec(),
            kind: EntryType::Regular,
            link: None,
        }
    }
    pub fn link(path: &str, kind: EntryType, target: &str) -> Self {
        Entry {
            path: path.into(),
            data: vec![],
            kind,
            link: Some(target.into()),
        }
    }
    pub fn blob(data: &[u8]) -> Self {
        Entry::file(&format!("blobs/sha256/{}", hex_of(&sha(data))), data)
    }
}

pub async fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = Builder::new_non_terminated(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(0o644);
        if let Some(l) = &e.link {
            h.set_link_name(l).unwrap();
        }
        if e.kind == EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        // set_path would refuse `..`; hostile archives need it, so write the name raw.
        let name = e.path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, e.data.as_slice()).await.unwrap();
    }
    b.into_inner().await.unwrap()
}

pub async fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzipEncoder::new(Vec::new());
    e.write_all(data).await.unwrap();
    e.shutdown().await.unwrap();
    e.into_inner()
}

pub async fn zstd(data: &[u8]) -> Vec<u8> {
    let mut e = ZstdEncoder::new(Vec::new());
    e.write_all(data).await.unwrap();
    e.shutdown().await.unwrap();
    e.into_inner()
}

/// `len` incompressible bytes, the same for the same seed: sha256 in counter mode.
pub fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(counter.to_le_bytes());
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// A layer: a real tar holding one file of `len` incompressible bytes.
pub async fn big_layer_tar(seed: &str, len: usize) -> Vec<u8> {
    tar(&[Entry::file(&format!("blob-{seed}"), &noise(seed, len))]).await
}

/// A layer: a real tar holding one file whose content depends on `seed`.
pub async fn layer_tar(seed: &str) -> Vec<u8> {
    tar(&[Entry::file(
        &format!("file-{seed}"),
        format!("content of {seed}\n").repeat(50).as_bytes(),
    )])
    .await
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// An image's blobs and its manifest, made from layer seeds.
#[derive(Clone)]
pub struct Image {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
    /// (stored bytes, uncompressed bytes)
    pub layers: Vec<(Vec<u8>, Vec<u8>)>,
    pub layer_types: Vec<String>,
}

impl Image {
    pub async fn new(seeds: &[&str], arch: &str, comp: Comp) -> Image {
        let mut raws = Vec::new();
        for s in seeds {
            raws.push(layer_tar(s).await);
        }
        Image::from_layers(raws, &seeds.join(","), arch, comp).await
    }

    /// An image of the given uncompressed layer tars; `label` makes its config unique.
    pub async fn from_layers(raws: Vec<Vec<u8>>, label: &str, arch: &str, comp: Comp) -> Image {
        let mut layers = Vec::new();
        let mut types = Vec::new();
        for raw in raws {
            let (stored, mt) = match comp {
                Comp::None => (raw.clone(), "application/vnd.oci.image.layer.v1.tar"),
                Comp::Gzip => (
                    gzip(&raw).await,
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                ),
                Comp::Zstd => (
                    zstd(&raw).await,
                    "application/vnd.oci.image.layer.v1.tar+zstd",
                ),
            };
            layers.push((stored, raw));
            types.push(mt.to_string());
        }
        let diff_ids: Vec<String> = layers.iter().map(|(_, raw)| sha(raw)).collect();
        let config = serde_json::to_vec(&json!({
            "created": format!("2024-01-0{}T00:00:00Z", layers.len().clamp(1, 9)),
            "architecture": arch,
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"], "Labels": {"label": label}},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let mut img = Image {
            manifest: vec![],
            config,
            layers,
            layer_types: types,
        };
        img.manifest = img.manifest_with(|_| {});
        img
    }

    pub fn manifest_with(&self, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let layers: Vec<Value> = self
            .layers
            .iter()
            .zip(&self.layer_types)
            .map(|((b, _), mt)| json!({"mediaType": mt, "digest": sha(b), "size": b.len()}))
            .collect();
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&self.config), "size": self.config.len()},
            "layers": layers,
        });
        edit(&mut m);
        serde_json::to_vec(&m).unwrap()
    }

    pub fn id(&self) -> String {
        sha(&self.config)
    }

    pub fn blob_entries(&self) -> Vec<Entry> {
        let mut v = vec![Entry::blob(&self.manifest), Entry::blob(&self.config)];
        v.extend(self.layers.iter().map(|(b, _)| Entry::blob(b)));
        v
    }

    pub fn descriptor(&self, annotations: &[(&str, &str)]) -> Value {
        let mut d = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&self.manifest),
            "size": self.manifest.len(),
        });
        if !annotations.is_empty() {
            let a: BTreeMap<&str, &str> = annotations.iter().cloned().collect();
            d["annotations"] = json!(a);
        }
        d
    }
}

/// An image of `layers` incompressible layers of `kib` KiB each, after `base` (a layer shared
/// with other images) when given; `label` makes it unique.
pub async fn noise_image(label: &str, layers: usize, kib: usize, base: Option<&[u8]>) -> Image {
    let mut raws: Vec<Vec<u8>> = base.into_iter().map(<[u8]>::to_vec).collect();
    for i in 0..layers {
        raws.push(big_layer_tar(&format!("{label}-{i}"), kib << 10).await);
    }
    Image::from_layers(raws, label, "amd64", Comp::None).await
}

/// A two-platform image (linux/amd64 and linux/arm64, gzip layers) named `name` by
/// `io.containerd.image.name`: the archive's entries, the two images, and the inner index.
pub async fn multi_platform(name: &str) -> (Vec<Entry>, Image, Image, Vec<u8>) {
    let amd = Image::new(&["m-amd"], "amd64", Comp::Gzip).await;
    let arm = Image::new(&["m-arm"], "arm64", Comp::Gzip).await;
    let mut amd_d = amd.descriptor(&[]);
    amd_d["platform"] = json!({"os": "linux", "architecture": "amd64"});
    let mut arm_d = arm.descriptor(&[]);
    arm_d["platform"] = json!({"os": "linux", "architecture": "arm64"});
    let inner = index_json(vec![amd_d, arm_d]);
    let top = json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": sha(&inner), "size": inner.len(),
        "annotations": {"io.containerd.image.name": name},
    });
    let mut entries = vec![
        Entry::file("oci-layout", LAYOUT),
        Entry::file("index.json", &index_json(vec![top])),
        Entry::blob(&inner),
    ];
    entries.extend(amd.blob_entries());
    entries.extend(arm.blob_entries());
    (entries, amd, arm, inner)
}

pub fn index_json(descriptors: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": descriptors})).unwrap()
}

pub const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// An OCI layout archive: oci-layout, index.json, then the images' blobs.
pub async fn oci_archive(images: &[(&Image, &[(&str, &str)])]) -> Vec<u8> {
    tar(&oci_entries(images)).await
}

pub fn oci_entries(images: &[(&Image, &[(&str, &str)])]) -> Vec<Entry> {
    let mut entries = vec![
        Entry::file("oci-layout", LAYOUT),
        Entry::file(
            "index.json",
            &index_json(images.iter().map(|(i, a)| i.descriptor(a)).collect()),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (img, _) in images {
        for e in img.blob_entries() {
            if seen.insert(e.path.clone()) {
                entries.push(e);
            }
        }
    }
    entries
}

/// A docker-archive in the pre-25 shape: `<id>/layer.tar`, `<hex>.json`, manifest.json last.
pub async fn docker_archive(images: &[(&Image, &[&str])]) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut manifest = Vec::new();
    for (img, tags) in images {
        let config_path = format!("{}.json", hex_of(&img.id()));
        entries.push(Entry::file(&config_path, &img.config));
        let mut layer_paths = Vec::new();
        for (_, raw) in &img.layers {
            let id = hex_of(&sha(raw)).to_string();
            entries.push(Entry::file(&format!("{id}/VERSION"), b"1.0"));
            entries.push(Entry::file(&format!("{id}/json"), b"{}"));
            entries.push(Entry::file(&format!("{id}/layer.tar"), raw));
            layer_paths.push(format!("{id}/layer.tar"));
        }
        manifest.push(json!({"Config": config_path, "RepoTags": tags, "Layers": layer_paths}));
    }
    entries.push(Entry::file(
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    ));
    tar(&entries).await
}

/// Entries of a tar archive, by path, with their bytes.
pub async fn untar(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    let mut a = tokio_tar::Archive::new(bytes);
    let mut out = BTreeMap::new();
    let mut entries = a.entries().unwrap();
    while let Some(e) = entries.next().await {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).await.unwrap();
        out.insert(p, data);
    }
    out
}
