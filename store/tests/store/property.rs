//! Whatever an archive's bytes, a load either commits whole images that verify or changes
//! nothing; it never panics. Mutations of valid archives, in the spirit of the fuzz target in
//! `fuzz/`, but small enough to run in CI.

use crate::common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Splice { from: usize, to: usize, len: usize },
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip { at, bit } => {
                if !bytes.is_empty() {
                    bytes[at % len] ^= 1 << (bit % 8);
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % len),
            Mutation::Insert { at, bytes: extra } => {
                let at = at % len;
                bytes.splice(at..at, extra.iter().copied());
            }
            Mutation::Splice { from, to, len: n } => {
                let (from, to) = (from % len, to % len);
                let chunk: Vec<u8> = bytes.iter().skip(from).take(*n).copied().collect();
                let to = to.min(bytes.len());
                bytes.splice(to..to, chunk);
            }
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..600)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), any::<usize>(), 1usize..2048).prop_map(|(from, to, len)| Mutation::Splice { from, to, len }),
    ]
}

#[test]
fn mutated_archives_commit_whole_images_or_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (oci, docker, keep) = rt.block_on(async {
        let a = Image::new(&["p1", "p2"], "amd64", Comp::Gzip).await;
        let b = Image::new(&["p3"], "amd64", Comp::None).await;
        let keep = oci_archive(&[(&b, &[("io.containerd.image.name", "keep:1")])]).await;
        let oci = oci_archive(&[(&a, &[("org.opencontainers.image.ref.name", "prop:1")])]).await;
        let docker = docker_archive(&[(&a, &["prop:2"])]).await;
        (oci, docker, keep)
    });
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(open(dir.path()));
    rt.block_on(store.images().load(reader(keep), &[])).unwrap();

    let config = Config {
        cases: 96,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    };
    let strategy = (any::<bool>(), proptest::collection::vec(mutation(), 1..4));
    TestRunner::new(config)
        .run(&strategy, |(use_docker, mutations)| {
            let source = if use_docker { &docker } else { &oci };
            let bytes = apply(source.clone(), &mutations);
            let before = rows(&store);
            let blobs_before = blob_files(dir.path());
            let result = rt.block_on(store.images().load(reader(bytes), &[]));
            let report = rt.block_on(store.check()).unwrap();
            prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
            prop_assert_eq!(report.unreferenced, 0);
            prop_assert_eq!(ingest_files(dir.path()), 0);
            match result {
                Ok(loaded) => {
                    // Whatever was committed saves whole.
                    for image in loaded.images {
                        let items = [store::SaveItem {
                            image: image.id.hex(),
                            ref_name: None,
                        }];
                        let saved = rt.block_on(store.images().save(
                            &items,
                            store::Format::Oci {
                                referrers: store::Referrers::Include,
                            },
                            Vec::new(),
                        ));
                        prop_assert!(saved.is_ok(), "{:?}", saved.err());
                        rt.block_on(store.images().remove(&image.id.hex(), true))
                            .unwrap();
                    }
                }
                Err(_) => {
                    prop_assert_eq!(rows(&store), before);
                    prop_assert_eq!(blob_files(dir.path()), blobs_before);
                }
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(rows(&store).len(), 1, "the kept image survived every case");
}
