//! Test support: archive fixtures, and a real `hyperd` on a temporary socket and root.

pub mod artifacts;
pub mod daemon;
pub mod damage;
pub mod fixtures;
pub mod tools;

pub use daemon::{TestDaemon, bin};
