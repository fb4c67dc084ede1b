//! CreateImage of a referrer, as a registry pull stores a signature: only with its subject
//! stored and without names; it then lists nowhere, answers the Referrers RPC and goes with its
//! image.

use hyperd_proto::v1::{CreateImageRequest, ReferrersRequest};
use integration::artifacts::{EMPTY, MANIFEST, cosign_signature, standalone_artifact};

use super::*;

fn create(digest: &str, names: &[&str]) -> CreateImageRequest {
    CreateImageRequest {
        digest: digest.into(),
        media_type: String::new(),
        names: names.iter().map(|n| n.to_string()).collect(),
    }
}

#[tokio::test]
async fn a_referrer_created_from_written_blobs_lives_with_its_subject() {
    let d = TestDaemon::start();
    let mut c = content(&d.socket).await;
    let mut images = images(&d.socket).await;
    let l = lease(&mut c, 0).await;
    let img = Image::new(&["pulled"], "amd64", Comp::Gzip).await;
    let sig = cosign_signature(&img.manifest, MANIFEST, "pulled");
    let chart = standalone_artifact("pulled");
    let mut blobs: Vec<&[u8]> = vec![&img.config, &img.manifest, &sig.manifest, &chart.manifest];
    blobs.extend(img.layers.iter().map(|(stored, _)| stored.as_slice()));
    blobs.extend(sig.blobs.iter().chain(&chart.blobs).map(Vec::as_slice));
    for (i, b) in blobs.iter().enumerate() {
        write(&mut c, &format!("pulled-{i}"), b, &l.id)
            .await
            .unwrap();
    }

    // Not before its subject is stored.
    let early = images.create_image(create(&sig.digest(), &[])).await;
    refused(early, Code::FailedPrecondition, "is not stored");
    let made = images.create_image(create(&sha(&img.manifest), &["pulled:1"]));
    assert_eq!(made.await.unwrap().into_inner().image.unwrap().id, img.id());

    let named = images.create_image(create(&sig.digest(), &["sig:1"])).await;
    refused(named, Code::InvalidArgument, "takes no names");
    let created = images
        .create_image(create(&sig.digest(), &[]))
        .await
        .unwrap()
        .into_inner();
    assert!(created.image.is_none());
    let r = created.referrer.unwrap();
    assert_eq!(
        (r.digest.as_str(), r.subject, r.artifact_type.as_str()),
        (sig.digest().as_str(), sha(&img.manifest), EMPTY)
    );
    assert_eq!(r.size, sig.manifest.len() as u64);
    let unnamed = images.create_image(create(&chart.digest(), &[])).await;
    refused(unnamed, Code::InvalidArgument, "kept only under a name");

    let listed = images
        .list(v1::ListRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.images.len(), 1);
    let req = ReferrersRequest {
        digest: sha(&img.manifest),
        artifact_type: String::new(),
    };
    let index = images.referrers(req).await.unwrap().into_inner().index;
    let index: serde_json::Value = serde_json::from_slice(&index).unwrap();
    assert_eq!(index["manifests"][0]["digest"], sig.digest());

    // The referrer holds its blobs without the lease, until its image goes.
    let del = v1::DeleteLeaseRequest { id: l.id.clone() };
    c.delete_lease(del).await.unwrap();
    assert!(info(&mut c, &sig.digest()).await.0);
    assert!(info(&mut c, &sha(&sig.blobs[1])).await.0);
    assert!(!info(&mut c, &chart.digest()).await.0);
    let out = d.ok(&["rmi", "pulled:1"]);
    assert!(
        out.contains(&format!("Deleted referrer: {}", sig.digest())),
        "{out}"
    );
    for b in [sig.digest(), sha(&sig.blobs[0]), sha(&sig.blobs[1])] {
        assert!(!info(&mut c, &b).await.0, "{b} is still stored");
    }
}
