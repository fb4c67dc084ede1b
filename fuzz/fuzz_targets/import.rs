//! Any bytes fed to the importer: no panic, and a refused archive leaves the store as it was.
//!
//!     cargo +nightly fuzz run import
//!
//! Seed the corpus with real archives (any `hyperctl save` output, skopeo oci-archives, docker
//! saves) in fuzz/corpus/import/ for the fuzzer to mutate.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

struct Fixture {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    store: store::Store,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = rt.block_on(store::Store::open(dir.path())).unwrap();
        Fixture { rt, _dir: dir, store }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let before = f.store.list().unwrap();
    match f.rt.block_on(f.store.load(std::io::Cursor::new(data.to_vec()), &[])) {
        Ok(loaded) => {
            for image in loaded {
                f.rt.block_on(f.store.remove(image.id.hex(), true)).unwrap();
            }
        }
        Err(_) => assert_eq!(f.store.list().unwrap(), before, "a refused archive changed the store"),
    }
    let report = f.rt.block_on(f.store.check()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
});
