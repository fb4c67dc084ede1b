//! Limits on what an archive may ask of the store. Each is checked before the work it bounds.

/// Largest JSON document read into memory: index.json, manifest.json, manifests, indexes, configs.
pub const MAX_JSON: u64 = 4 << 20;
/// Deepest chain of nested image indexes followed.
pub const MAX_INDEX_DEPTH: usize = 8;
/// Most tar entries (other than directories) one archive may hold: room for thousands of layers.
pub const MAX_ENTRIES: usize = 10_000;
/// Most descriptors (images, manifests, layers) one archive may name in total.
pub const MAX_DESCRIPTORS: usize = 100_000;
/// Most symlinks followed when resolving one docker-archive path.
pub const MAX_LINK_HOPS: usize = 8;
/// Largest ratio of decompressed to compressed bytes accepted once past [`BOMB_GRACE`]: ordinary
/// layers expand 2-10 times, a decompression bomb a thousand times or more.
pub const MAX_EXPANSION: u64 = 100;
/// Decompressed bytes always accepted, whatever the ratio.
pub const BOMB_GRACE: u64 = 64 << 20;
