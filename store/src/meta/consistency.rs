//! The indexes answer what the whole records answer, after any sequence of changes.

use std::collections::BTreeSet;

use proptest::prelude::*;
use redb::ReadableDatabase;

use super::index::ListRow;
use super::tests::{d, open};
use super::{Changes, ImageRecord, Meta, View};

#[derive(Clone, Debug)]
enum Step {
    PutImage {
        n: u8,
        id: u8,
        inside: u8,
        created: Option<u8>,
    },
    DeleteImage(u8),
    PutTag {
        name: u8,
        n: u8,
    },
    DeleteTag(u8),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..8u8, 1..4u8, 20..23u8, proptest::option::of(0..3u8)).prop_map(
            |(n, id, inside, created)| Step::PutImage {
                n,
                id,
                inside,
                created
            }
        ),
        (1..8u8).prop_map(Step::DeleteImage),
        (0..6u8, 1..9u8).prop_map(|(name, n)| Step::PutTag { name, n }),
        (0..6u8).prop_map(Step::DeleteTag),
    ]
}

fn name(n: u8) -> String {
    format!("docker.io/library/n{n}:latest")
}

fn changes(step: &Step) -> Changes {
    let mut c = Changes::default();
    match *step {
        Step::PutImage {
            n,
            id,
            inside,
            created,
        } => c.put_images.push(ImageRecord {
            id: d(100 + id),
            created: created.map(|t| format!("2024-01-0{}T00:00:00Z", t + 1)),
            manifests: vec![d(n), d(inside)],
            ..super::tests::image(n, &[n, 50], &[])
        }),
        Step::DeleteImage(n) => c.delete_images.push(d(n)),
        Step::PutTag { name: t, n } => c.put_tags.push((name(t), d(n))),
        Step::DeleteTag(t) => c.delete_tags.push(name(t)),
    }
    c
}

/// The listing as the records make it: one row per name or an untagged one, in key order.
fn listing_from_records(meta: &Meta) -> Vec<(Vec<u8>, ListRow)> {
    let snap = meta.snapshot().unwrap();
    let mut rows = Vec::new();
    for rec in snap.images.values() {
        let names: Vec<Option<String>> = match snap.names_of(&rec.digest).unwrap() {
            n if n.is_empty() => vec![None],
            n => n.into_iter().map(|n| Some(n.full())).collect(),
        };
        rows.extend(names.into_iter().map(|name| ListRow::keyed(rec, name)));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn assert_indexes_agree(meta: &Meta) {
    let snap = meta.snapshot().unwrap();
    let read = meta.read().unwrap();
    for t in 0..6 {
        assert_eq!(read.tag(&name(t)).unwrap(), snap.tag(&name(t)).unwrap());
    }
    for n in (1..9).chain(20..23) {
        let digest = d(n);
        assert_eq!(read.image(&digest).unwrap(), snap.image(&digest).unwrap());
        assert_eq!(
            read.names_of(&digest).unwrap(),
            snap.names_of(&digest).unwrap()
        );
        let holding = |v: Vec<_>| v.into_iter().collect::<BTreeSet<_>>();
        assert_eq!(
            holding(read.holding(&digest).unwrap()),
            holding(snap.holding(&digest).unwrap())
        );
    }
    for id in 1..4 {
        let hex = d(100 + id).hex();
        let found = |v: Vec<_>| v.into_iter().collect::<BTreeSet<_>>();
        assert_eq!(
            found(read.with_id_prefix(&hex[..3], 100).unwrap()),
            found(snap.with_id_prefix(&hex[..3], 100).unwrap())
        );
    }
    assert_eq!(
        read.list(None, usize::MAX, |_| true).unwrap(),
        listing_from_records(meta)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn indexes_follow_every_change(steps in proptest::collection::vec(step(), 1..24)) {
        let (dir, meta) = open();
        for s in &steps {
            meta.apply(&changes(s)).unwrap();
        }
        assert_indexes_agree(&meta);
        // A reopened store keeps them, and one that predates them builds the same at open.
        drop(meta);
        let path = dir.path().join("meta.redb");
        assert_indexes_agree(&Meta::open(&path).unwrap());
        super::index::tests::forget_indexes(&path);
        assert_indexes_agree(&Meta::open(&path).unwrap());
    }
}

#[test]
fn indexes_a_build_without_them_left_behind_are_rebuilt_at_open() {
    let (dir, meta) = open();
    for s in [
        Step::PutImage {
            n: 1,
            id: 1,
            inside: 20,
            created: None,
        },
        Step::PutTag { name: 0, n: 1 },
    ] {
        meta.apply(&changes(&s)).unwrap();
    }
    drop(meta);
    // What an older hyperd does: a second name, in `tags` alone.
    let path = dir.path().join("meta.redb");
    let db = redb::Database::open(&path).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(super::TAGS)
        .unwrap()
        .insert(name(1).as_str(), d(1).to_string().as_str())
        .unwrap();
    tx.commit().unwrap();
    assert!(!super::index::agree(&db.begin_read().unwrap()).unwrap());
    drop(db);

    let meta = Meta::open(&path).unwrap();
    assert!(meta.indexes_agree().unwrap());
    assert_eq!(meta.read().unwrap().names_of(&d(1)).unwrap().len(), 2);
    assert_indexes_agree(&meta);
}
