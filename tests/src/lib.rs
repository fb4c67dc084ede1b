//! Test support: archive fixtures, a real `hyperd` on a temporary socket and root, and a real
//! registry on a free port, a fake one that misbehaves on demand, a second local user, and stores
//! of many tiny images.

pub mod artifacts;
pub mod daemon;
pub mod damage;
pub mod fake_registry;
pub mod fixtures;
pub mod grpc;
pub mod handoff;
pub mod python;
pub mod registry;
pub mod scale;
pub mod serve;
pub mod tools;
pub mod users;
pub mod wait;

pub use daemon::{TestDaemon, bin};
