//! ImageService.CreateImage from blobs written through ContentService.Write: the image lists,
//! saves and loads in skopeo, and what a load would refuse is refused.

use hyperd_proto::v1::CreateImageRequest;
use integration::tools::{p, skopeo_copy, skopeo_digests};

use super::*;

async fn write_blobs(c: &mut Content, blobs: &[&[u8]], lease: &str) {
    for (i, b) in blobs.iter().enumerate() {
        let w = write(c, &format!("blob-{i}"), b, lease).await.unwrap();
        assert!(w.committed, "{w:?}");
    }
}

fn request(manifest: &[u8], media_type: &str, names: &[&str]) -> CreateImageRequest {
    CreateImageRequest {
        digest: sha(manifest),
        media_type: media_type.into(),
        names: names.iter().map(|n| n.to_string()).collect(),
    }
}

#[tokio::test]
async fn an_image_created_from_written_blobs_lists_saves_and_loads_in_skopeo() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let mut images = images(&d.socket).await;
    let l = lease(&mut c, 0).await;
    let img = Image::new(&["created a", "created b"], "amd64", Comp::Gzip).await;
    let mut blobs: Vec<&[u8]> = vec![&img.config, &img.manifest];
    blobs.extend(img.layers.iter().map(|(stored, _)| stored.as_slice()));
    write_blobs(&mut c, &blobs, &l.id).await;

    let req = request(&img.manifest, "", &["created:1", "quay.io/x/created:2"]);
    let created = images
        .create_image(req)
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(
        created,
        v1::LoadedImage {
            names: vec!["created:1".into(), "quay.io/x/created:2".into()],
            id: img.id(),
            digest: sha(&img.manifest),
        }
    );
    let listed: Vec<(String, String)> = images
        .list(v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
        .into_iter()
        .map(|i| (i.name, i.id))
        .collect();
    assert_eq!(
        listed,
        [
            ("docker.io/library/created:1".to_owned(), img.id()),
            ("quay.io/x/created:2".to_owned(), img.id())
        ]
    );
    // The image holds its blobs now, without the lease.
    let del = v1::DeleteLeaseRequest { id: l.id.clone() };
    c.delete_lease(del).await.unwrap();
    assert!(info(&mut c, &sha(&img.manifest)).await.0);

    let saved = d.path("created.tar");
    d.ok(&["save", "-f", "oci", "-o", p(&saved), "created:1"]);
    let archive = format!("oci-archive:{}", p(&saved));
    assert_eq!(skopeo_digests(&archive), (sha(&img.manifest), img.id()));
    let copied = d.path("copied");
    skopeo_copy(&archive, &format!("oci:{}:copied", p(&copied)));
    assert_eq!(
        skopeo_digests(&format!("oci:{}:copied", p(&copied))),
        (sha(&img.manifest), img.id())
    );
    let out = d.ok(&["check"]);
    assert!(out.contains(": 0 problems, 0 unreferenced"), "{out}");

    // Created again untagged, it is the same image; a name moves as on load.
    let again = images
        .create_image(request(&img.manifest, "", &[]))
        .await
        .unwrap();
    assert!(again.into_inner().image.unwrap().names.is_empty());
}

#[tokio::test]
async fn create_image_refuses_what_a_load_refuses() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let mut images = images(&d.socket).await;
    let l = lease(&mut c, 0).await;
    let img = Image::new(&["refused a"], "amd64", Comp::None).await;
    let layer = img.layers[0].0.clone();
    let extra = layer_tar("refused extra").await;
    let two_layers = img.manifest_with(|m| {
        let mut second = m["layers"][0].clone();
        second["digest"] = sha(&extra).into();
        second["size"] = extra.len().into();
        m["layers"].as_array_mut().unwrap().push(second);
    });
    let untyped = img.manifest_with(|m| {
        m.as_object_mut().unwrap().remove("mediaType");
    });
    // The layer is not written yet.
    write_blobs(
        &mut c,
        &[&img.config, &img.manifest, &two_layers, &untyped, &extra],
        &l.id,
    )
    .await;

    let mut create = async |req| images.create_image(req).await;
    let missing = create(request(&img.manifest, "", &["a:1"])).await;
    let s = refused(missing, Code::InvalidArgument, &sha(&layer));
    assert!(s.message().contains("is not stored"), "{s:?}");
    write(&mut c, "layer", &layer, &l.id).await.unwrap();

    let r = create(request(&two_layers, "", &["a:1"])).await;
    refused(r, Code::InvalidArgument, "diff_ids");
    let r = create(request(
        &img.manifest,
        "application/vnd.oci.image.layer.v1.tar",
        &[],
    ))
    .await;
    refused(
        r,
        Code::InvalidArgument,
        "neither an image manifest nor an image index",
    );
    let index = "application/vnd.oci.image.index.v1+json";
    let r = create(request(&img.manifest, index, &[])).await;
    refused(r, Code::InvalidArgument, "is declared an image index");
    let r = create(request(&untyped, "", &[])).await;
    refused(r, Code::InvalidArgument, "no mediaType");
    let r = create(request(&img.manifest, "", &["UPPER:case"])).await;
    refused(r, Code::InvalidArgument, "UPPER:case");
    let r = create(request(b"never written", "", &[])).await;
    refused(r, Code::InvalidArgument, "is not stored");
    let mut bad = request(&img.manifest, "", &[]);
    bad.digest = "sha256:nope".into();
    refused(create(bad).await, Code::InvalidArgument, "sha256:nope");
    assert!(d.ok(&["images", "-q"]).is_empty());

    // With the layer written, the untyped manifest goes in under the type the request names.
    let ok = create(request(
        &untyped,
        "application/vnd.oci.image.manifest.v1+json",
        &["a:1"],
    ));
    assert_eq!(ok.await.unwrap().into_inner().image.unwrap().id, img.id());
}
