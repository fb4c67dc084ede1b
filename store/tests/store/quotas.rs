//! Owners (uids, to hyperd) through the store's own API: each has its own refs and its own
//! quota of leases and open writes; an owner sees and deletes only its own leases, which keep
//! their owner across a restart.

use crate::common::*;
use store::limits::{MAX_LEASES_PER_OWNER, MAX_OPEN_WRITES_PER_OWNER};
use store::{Began, Error, WriteStart};

fn start(reference: &str, blob: &[u8], lease: Option<String>) -> WriteStart {
    WriteStart {
        reference: reference.into(),
        expected: sha(blob).parse().unwrap(),
        total: blob.len() as u64,
        lease,
        offset: 0,
    }
}

#[tokio::test]
async fn leases_count_against_their_owner_and_keep_it_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for _ in 0..MAX_LEASES_PER_OWNER {
        store.leases().create_as(1000, 60).await.unwrap();
    }
    let e = store.leases().create_as(1000, 60).await.unwrap_err();
    assert!(matches!(e, Error::QuotaExceeded(_)), "{e:?}");
    let other = store.leases().create_as(1001, 60).await.unwrap().id;
    let own = store.leases().create(60).await.unwrap().id;
    assert_eq!(
        store.leases().list(Some(1001)).unwrap()[0].owner,
        Some(1001)
    );
    drop(store);
    let store = open(dir.path()).await;
    let all = store.leases().list(None).unwrap();
    assert_eq!(all.len(), MAX_LEASES_PER_OWNER + 2);
    let hyperds = all.iter().find(|l| l.id == own).unwrap();
    assert_eq!(hyperds.owner, None);
    assert!(hyperds.created_at.is_some());
    // Another owner's lease is absent to 1000: it can neither delete nor write under it.
    let e = store
        .leases()
        .delete_as(Some(1000), &other)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    let blob = b"leased";
    let e = store
        .content()
        .begin_write_as(1000, start("x", blob, Some(other.clone())))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    store.leases().delete_as(Some(1001), &other).await.unwrap();
    let mine = store.leases().list(Some(1000)).unwrap();
    store.leases().delete_as(None, &mine[0].id).await.unwrap();
    store.leases().create_as(1000, 60).await.unwrap();
}

#[tokio::test]
async fn refs_are_per_owner_and_so_is_the_open_write_quota() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let blob = b"two bytes at least";
    let mut held = Vec::new();
    for i in 0..MAX_OPEN_WRITES_PER_OWNER {
        match store
            .content()
            .begin_write_as(1000, start(&format!("r{i}"), blob, None))
            .await
            .unwrap()
        {
            Began::Open(w) => held.push(w),
            Began::Done(_) => panic!("nothing was written"),
        }
    }
    drop(held);
    let e = store
        .content()
        .begin_write_as(1000, start("one-more", blob, None))
        .await
        .err()
        .unwrap();
    assert!(matches!(e, Error::QuotaExceeded(_)), "{e:?}");
    // 1001's "r0" is its own, and 1000's stays as it was.
    let Began::Open(mut w) = store
        .content()
        .begin_write_as(1001, start("r0", blob, None))
        .await
        .unwrap()
    else {
        panic!("nothing was written")
    };
    w.write(blob[..3].to_vec()).await.unwrap();
    drop(w);
    assert_eq!(
        store.content().write_status_as(1001, "r0").unwrap().offset,
        3
    );
    assert_eq!(
        store.content().write_status_as(1000, "r0").unwrap().offset,
        0
    );
    let e = store.content().write_status_as(1002, "r0").unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    let e = store.content().abort_write_as(1002, "r0").unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e:?}");
    store.content().abort_write_as(1000, "r0").unwrap();
    assert_eq!(
        store.content().write_status_as(1001, "r0").unwrap().offset,
        3
    );
}
