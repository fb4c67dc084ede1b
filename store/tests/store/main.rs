//! The store's tests through its public API, in one binary (one link instead of one per file):
//! a module per subject, helpers in `common`. Run one by its path, e.g.
//! `cargo test -p store --test store bad_input`.

mod common;

mod architecture;
mod bad_input;
mod damage;
mod elided;
mod lastused;
mod lifecycle;
mod one_meaning;
mod property;
mod quotas;
mod referrers;
mod roundtrip;
mod stats;
mod uploads;
mod usage;
