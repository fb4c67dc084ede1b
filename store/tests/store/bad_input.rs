//! Every malformed or hostile archive is refused with an error naming the cause, and the store is
//! left exactly as it was: no tag, no visible blob, no temp file.

use crate::common::*;
use serde_json::json;
use store::Error;
use tokio_tar::EntryType;

#[tokio::test]
async fn traversal_with_dot_dot() {
    let img = plain().await;
    let mut e = oci_entries(&[(&img, &[])]);
    e.push(Entry::file("../escaped", b"x"));
    refused(tar(&e).await, "'..'").await;
    let mut e = oci_entries(&[(&img, &[])]);
    e.push(Entry::file("blobs/sha256/../../../escaped", b"x"));
    refused(tar(&e).await, "'..'").await;
}

#[tokio::test]
async fn absolute_names() {
    let mut e = oci_entries(&[(&plain().await, &[])]);
    e.insert(0, Entry::file("/tmp/escaped", b"x"));
    refused(tar(&e).await, "absolute").await;
}

#[tokio::test]
async fn links_as_blobs_and_links_out_of_the_archive() {
    let img = plain().await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    let layer = e.pop().unwrap();
    e.push(Entry::link(&layer.path, EntryType::Symlink, "/etc/passwd"));
    refused(tar(&e).await, "is a link").await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    let layer = e.pop().unwrap();
    e.push(Entry::link(&layer.path, EntryType::Link, "index.json"));
    refused(tar(&e).await, "is a link").await;
    // docker-archive layers may be links, but only to entries inside the archive.
    let entries = vec![
        Entry::file("cfg.json", &img.config),
        Entry::link("aaa/layer.tar", EntryType::Symlink, "../../../etc/passwd"),
        Entry::file(
            "manifest.json",
            &serde_json::to_vec(&json!([{"Config": "cfg.json", "Layers": ["aaa/layer.tar"]}]))
                .unwrap(),
        ),
    ];
    refused(tar(&entries).await, "outside the archive").await;
}

#[tokio::test]
async fn devices_and_fifos() {
    for kind in [EntryType::Char, EntryType::Block, EntryType::Fifo] {
        let mut e = oci_entries(&[(&plain().await, &[])]);
        e.push(Entry {
            path: "dev".into(),
            data: vec![],
            kind,
            link: None,
        });
        refused(tar(&e).await, "only regular files").await;
    }
}

#[tokio::test]
async fn duplicate_entries_in_either_order() {
    let img = plain().await;
    let layer = Entry::blob(&img.layers[0].0);
    let mut evil = layer.clone();
    evil.data[600] ^= 1;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    e.push(evil.clone());
    refused(tar(&e).await, "more than once").await;
    // The forged copy first fails its own digest before the duplicate is even seen.
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    e.pop();
    e.extend([evil, layer]);
    refused(tar(&e).await, "digest mismatch").await;
    // Duplicated documents, where readers disagree on which copy wins: refused either way.
    let other = index_json(vec![
        img.descriptor(&[("io.containerd.image.name", "evil:1")]),
    ]);
    for at in [1, 2] {
        let mut e = with_index(&img, vec![img.descriptor(&[])]);
        e.insert(at, Entry::file("index.json", &other));
        refused(tar(&e).await, "more than once").await;
    }
}

#[tokio::test]
async fn digest_mismatch() {
    let img = plain().await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    let name = e.last().unwrap().path.clone();
    let mut tampered = img.layers[0].0.clone();
    tampered[600] ^= 1;
    *e.last_mut().unwrap() = Entry::file(&name, &tampered);
    let err = refused(tar(&e).await, "digest mismatch").await;
    assert!(matches!(err, Error::DigestMismatch { .. }));
}

#[tokio::test]
async fn size_mismatch_with_the_descriptor() {
    let img = plain().await;
    let mut d = img.descriptor(&[]);
    d["size"] = json!(img.manifest.len() + 1);
    // index.json first: refused when the entry's header is read, before its body.
    refused(
        tar(&with_index(&img, vec![d.clone()])).await,
        "its descriptor says",
    )
    .await;
    // index.json last: refused when the index is resolved.
    let mut e = with_index(&img, vec![d]);
    e.rotate_left(2);
    refused(tar(&e).await, "descriptor says").await;
}

#[tokio::test]
async fn missing_blobs() {
    let img = plain().await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    e.pop();
    refused(tar(&e).await, "is not in the archive").await;
}

#[tokio::test]
async fn huge_json() {
    let img = plain().await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    let mut big = b"{\"schemaVersion\":2,\"manifests\":[],\"x\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 5 << 20));
    big.extend(b"\"}");
    e[1] = Entry::file("index.json", &big);
    refused(tar(&e).await, "limit for JSON").await;
}

#[tokio::test]
async fn deeply_nested_json() {
    let img = plain().await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    // Where the parser descends: refused by type, never by exhausting the stack.
    let deep = format!(
        "{{\"schemaVersion\":2,\"manifests\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    e[1] = Entry::file("index.json", deep.as_bytes());
    refused(tar(&e).await, "index.json is not a valid image index").await;
    // Where it skips (an unknown field): harmless, and the empty index is refused for itself.
    let deep = format!(
        "{{\"schemaVersion\":2,\"manifests\":[],\"x\":{}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    e[1] = Entry::file("index.json", deep.as_bytes());
    refused(tar(&e).await, "lists no images").await;
}

#[tokio::test]
async fn index_nested_too_deep() {
    let img = plain().await;
    let mut entries = img.blob_entries();
    let mut child = img.descriptor(&[]);
    for _ in 0..12 {
        let idx = index_json(vec![child]);
        child = json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(&idx), "size": idx.len()});
        entries.push(Entry::blob(&idx));
    }
    entries.push(Entry::file("oci-layout", LAYOUT));
    entries.push(Entry::file("index.json", &index_json(vec![child])));
    refused(tar(&entries).await, "nested more than").await;
}

#[tokio::test]
async fn media_type_confusion() {
    let img = plain().await;
    // An index where a manifest is declared.
    let idx = index_json(vec![img.descriptor(&[])]);
    let lie = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&idx), "size": idx.len()});
    let mut e = with_index(&img, vec![lie]);
    e.push(Entry::blob(&idx));
    refused(tar(&e).await, "declared an image manifest but is not one").await;
    // A manifest that says it is something else.
    let other = img.manifest_with(|m| {
        m["mediaType"] = json!("application/vnd.docker.distribution.manifest.v2+json")
    });
    let d = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&other), "size": other.len()});
    let mut e = with_index(&img, vec![d]);
    e.push(Entry::blob(&other));
    refused(tar(&e).await, "but says it is").await;
}

#[tokio::test]
async fn invalid_digests_and_references() {
    let img = plain().await;
    let mut d = img.descriptor(&[]);
    d["digest"] = json!("sha256:nothex");
    refused(
        tar(&with_index(&img, vec![d])).await,
        "index.json is not a valid image index",
    )
    .await;
    let d = img.descriptor(&[("io.containerd.image.name", "NOT A NAME")]);
    refused(tar(&with_index(&img, vec![d])).await, "invalid reference").await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    e.push(Entry::file("blobs/sha512/abcd", b"x"));
    refused(tar(&e).await, "only sha256").await;
}

#[tokio::test]
async fn foreign_layers_are_never_fetched() {
    let img = plain().await;
    let foreign = b"not here";
    let manifest = img.manifest_with(|m| {
        m["layers"].as_array_mut().unwrap().push(json!({
            "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "digest": sha(foreign), "size": foreign.len(), "urls": ["https://example.invalid/layer"],
        }))
    });
    let d = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&manifest), "size": manifest.len()});
    let mut e = with_index(&img, vec![d]);
    e.push(Entry::blob(&manifest));
    refused(tar(&e).await, "never fetches").await;
}

#[tokio::test]
async fn pax_size_that_disagrees_with_the_header() {
    let img = plain().await;
    let mut bytes = tar(&with_index(&img, vec![img.descriptor(&[])])).await;
    // A PAX record claiming another size, spliced in before the last entry.
    let (_, last) = tar_offsets(&bytes).into_iter().last().unwrap();
    let record = "20 size=99999999999\n";
    let mut pax = tokio_tar::Header::new_ustar();
    pax.set_entry_type(EntryType::XHeader);
    pax.set_size(record.len() as u64);
    pax.set_path("pax").unwrap();
    pax.set_cksum();
    let mut block = pax.as_bytes().to_vec();
    let mut body = record.as_bytes().to_vec();
    body.resize(512, 0);
    block.extend(body);
    bytes.splice(last..last, block);
    refused(bytes, "PAX size").await;
}

#[tokio::test]
async fn truncated_streams() {
    let img = plain().await;
    let bytes = oci_archive(&[(&img, &[("io.containerd.image.name", "t:1")])]).await;
    for cut in [100, 700, bytes.len() / 2, bytes.len() - 700] {
        refused(bytes[..cut].to_vec(), "").await;
    }
    let gz = gzip(&bytes).await;
    refused(gz[..gz.len() / 2].to_vec(), "").await;
}

#[tokio::test]
async fn empty_input_and_not_a_tar() {
    refused(vec![], "the archive is empty (0 bytes)").await;
    refused(
        b"this is not a tar archive, just some words".repeat(20),
        "not a tar archive: the input is text",
    )
    .await;
    refused(
        gzip(b"gzip of something that is not a tar").await,
        "not a tar archive: the input is gzip-compressed text",
    )
    .await;
}

#[tokio::test]
async fn docker_layer_that_does_not_match_its_diff_id() {
    let img = plain().await;
    let mut other = layer_tar("other").await;
    other.truncate(other.len());
    let entries = vec![
        Entry::file("cfg.json", &img.config),
        Entry::file("aaa/layer.tar", &other),
        Entry::file(
            "manifest.json",
            &serde_json::to_vec(
                &json!([{"Config": "cfg.json", "RepoTags": ["x:1"], "Layers": ["aaa/layer.tar"]}]),
            )
            .unwrap(),
        ),
    ];
    let err = refused(tar(&entries).await, "diff_id").await;
    assert!(matches!(err, Error::DigestMismatch { .. }));
}

#[tokio::test]
async fn docker_manifest_naming_a_path_that_is_not_there() {
    let img = plain().await;
    let entries = vec![
        Entry::file("cfg.json", &img.config),
        Entry::file(
            "manifest.json",
            &serde_json::to_vec(&json!([{"Config": "cfg.json", "Layers": ["nope/layer.tar"]}]))
                .unwrap(),
        ),
    ];
    refused(
        tar(&entries).await,
        "\"nope/layer.tar\", which is not in the archive",
    )
    .await;
}

#[tokio::test]
async fn a_map_naming_an_absent_ref() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let img = plain().await;
    let err = store
        .images()
        .load(
            reader(oci_archive(&[(&img, &[("org.opencontainers.image.ref.name", "hello")])]).await),
            &map(&[("a:1", "world")]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound(ref m) if m.contains("world") && m.contains("hello")),
        "{err}"
    );
    assert!(rows(&store).is_empty());
    assert!(blob_files(dir.path()).is_empty());
    assert_eq!(ingest_files(dir.path()), 0);
}

#[tokio::test]
async fn unsupported_layout_version() {
    let img = plain().await;
    let mut e = with_index(&img, vec![img.descriptor(&[])]);
    e[0] = Entry::file("oci-layout", br#"{"imageLayoutVersion":"2.0.0"}"#);
    refused(tar(&e).await, "oci-layout version").await;
}

#[tokio::test]
async fn decompression_bombs_are_refused() {
    // 80 MiB of zeros in a layer, the whole archive gzipped: about 80 KiB on the wire.
    let zeros = tar(&[Entry::file("zeros", &vec![0u8; 80 << 20])]).await;
    let img = Image::from_layers(vec![zeros], "bomb", "amd64", Comp::None).await;
    let archive =
        gzip(&oci_archive(&[(&img, &[("io.containerd.image.name", "bomb:1")])]).await).await;
    assert!(archive.len() < 1 << 20);
    refused(archive, "100:1").await;
}

#[tokio::test]
async fn a_gzip_layer_bomb_in_a_docker_archive_is_refused() {
    // The diff_id check decompresses the layer: 80 MiB of zeros from about 80 KiB.
    let raw = tar(&[Entry::file("zeros", &vec![0u8; 80 << 20])]).await;
    let img = Image::from_layers(vec![raw.clone()], "layer-bomb", "amd64", Comp::None).await;
    let entries = vec![
        Entry::file("cfg.json", &img.config),
        Entry::file("aaa/layer.tar", &gzip(&raw).await),
        Entry::file("manifest.json", &serde_json::to_vec(&json!([{"Config": "cfg.json", "RepoTags": ["bomb:1"], "Layers": ["aaa/layer.tar"]}])).unwrap()),
    ];
    refused(tar(&entries).await, "100:1").await;
}

#[tokio::test]
async fn more_entries_than_the_limit_are_refused() {
    let mut entries = oci_entries(&[(&plain().await, &[])]);
    // Links: the cheapest entries to make and to read, so the test is about the count alone.
    for i in 0..store::limits::MAX_ENTRIES {
        entries.push(Entry::link(&format!("junk/{i}"), EntryType::Symlink, "x"));
    }
    refused(
        tar(&entries).await,
        &format!("more than {} entries", store::limits::MAX_ENTRIES),
    )
    .await;
}
