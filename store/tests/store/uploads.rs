//! Uploads, the registry endpoint's pushes: bytes in pieces, the digest last, nothing visible
//! before it was checked, one request at a time.

use store::{Digest, Error, WriteOutcome};

use crate::common::*;

#[tokio::test]
async fn an_upload_in_pieces_is_stored_under_the_digest_it_ends_with() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let content = store.content();
    let bytes = b"first piece, second piece".to_vec();
    let digest = Digest::of(&bytes);
    content.begin_upload("u1").await.unwrap();
    let mut first = content.upload("u1").unwrap();
    first.write(bytes[..12].to_vec()).await.unwrap();
    drop(first);
    let mut second = content.upload("u1").unwrap();
    assert_eq!(second.offset(), 12);
    second.write(bytes[12..].to_vec()).await.unwrap();
    assert!(
        blob_files(dir.path()).is_empty(),
        "nothing visible before the digest"
    );
    let written = second.finish(&digest).await.unwrap();
    assert_eq!(written.outcome, WriteOutcome::Committed);
    assert_eq!(written.offset, bytes.len() as u64);
    assert_eq!(blob_files(dir.path()), vec![digest.hex()]);
    assert!(matches!(content.upload("u1"), Err(Error::NotFound(_))));

    content.begin_upload("u2").await.unwrap();
    let mut again = content.upload("u2").unwrap();
    again.write(bytes.clone()).await.unwrap();
    let written = again.finish(&digest).await.unwrap();
    assert_eq!(written.outcome, WriteOutcome::AlreadyStored);
    assert_eq!(ingest_files(dir.path()), 1, "only ingest/content/ is left");
}

#[tokio::test]
async fn a_wrong_digest_stores_nothing_and_ends_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let content = store.content();
    content.begin_upload("u").await.unwrap();
    let mut upload = content.upload("u").unwrap();
    upload.write(b"these bytes".to_vec()).await.unwrap();
    let e = upload
        .finish(&Digest::of(b"other bytes"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(blob_files(dir.path()).is_empty());
    assert_eq!(ingest_files(dir.path()), 1, "the partial file is gone");
    assert!(matches!(content.upload("u"), Err(Error::NotFound(_))));
}

#[tokio::test]
async fn one_request_at_a_time_and_a_cancel_drops_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let content = store.content();
    content.begin_upload("u").await.unwrap();
    assert!(matches!(
        content.begin_upload("u").await,
        Err(Error::Conflict(_))
    ));
    let mut held = content.upload("u").unwrap();
    held.write(b"some".to_vec()).await.unwrap();
    assert!(matches!(content.upload("u"), Err(Error::Conflict(_))));
    content.cancel_upload("u").unwrap();
    drop(held);
    assert!(matches!(content.upload("u"), Err(Error::NotFound(_))));
    assert_eq!(
        ingest_files(dir.path()),
        1,
        "the cancelled upload's file is gone"
    );
    assert!(matches!(
        content.cancel_upload("u"),
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn a_push_mount_holds_only_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let content = store.content();
    let bytes = b"a mounted blob".to_vec();
    let digest = Digest::of(&bytes);
    assert!(!content.hold_for_push(&digest).await.unwrap());
    content.begin_upload("u").await.unwrap();
    let upload = content.upload("u").unwrap();
    drop(upload);
    let mut upload = content.upload("u").unwrap();
    upload.write(bytes).await.unwrap();
    upload.finish(&digest).await.unwrap();
    assert!(content.hold_for_push(&digest).await.unwrap());
    store.gc().await.unwrap();
    assert_eq!(blob_files(dir.path()), vec![digest.hex()], "held");
}
