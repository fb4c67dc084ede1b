//! Limits on what an archive or a content request may ask of the store. Each is checked before the work it bounds.

/// Largest JSON document read into memory: index.json, manifest.json, manifests, indexes, configs.
pub const MAX_JSON: u64 = 4 << 20;
/// Deepest chain of nested image indexes followed: an index at depth `MAX_INDEX_DEPTH` (the
/// top-level one is at depth 0) is refused, on import and on export alike. A manifest may be
/// one deeper (the deepest index allowed lists it); deeper still (a chain of manifests each
/// listing the next as a layer) it is refused by the walk too.
pub const MAX_INDEX_DEPTH: usize = 8;
/// Most tar entries (other than directories) one archive may hold: far above real archives
/// (thousands of layers, or an air-gap bundle of a whole host), with per-entry bookkeeping of a
/// few hundred bytes.
pub const MAX_ENTRIES: usize = 250_000;
/// Longest entry name or link target kept, in bytes: Linux's PATH_MAX. Names are kept for the
/// whole load, so this, not the metadata limit below, bounds what each entry costs.
pub const MAX_ENTRY_NAME: usize = 4096;
/// Most bytes of tar header metadata one entry may carry (header blocks, PAX extended headers,
/// GNU long names and link names), which the tar reader holds in memory whole. Go's archive/tar
/// has the same 1 MiB bound on PAX headers.
pub const MAX_TAR_METADATA: u64 = 1 << 20;
/// Most descriptors (images, manifests, layers) one archive may name in total; likewise one
/// pull, its image and referrers together.
pub const MAX_DESCRIPTORS: usize = 100_000;
/// Most symlinks followed when resolving one docker-archive path.
pub const MAX_LINK_HOPS: usize = 8;
/// Largest ratio of decompressed to compressed bytes accepted once past [`BOMB_GRACE`]: ordinary
/// layers expand 2-10 times, a decompression bomb a thousand times or more.
pub const MAX_EXPANSION: u64 = 100;
/// Decompressed bytes always accepted, whatever the ratio.
pub const BOMB_GRACE: u64 = 64 << 20;

/// Most digests one content `Info` request may ask about.
pub const MAX_INFO_DIGESTS: usize = 10_000;
/// Longest write ref, in bytes.
pub const MAX_WRITE_REF: usize = 256;
/// Most content writes one uid may have open at once (streaming or waiting to be resumed): each
/// holds a partial file, an open descriptor and a hash state in memory.
pub const MAX_OPEN_WRITES_PER_OWNER: usize = 256;
/// Most content writes open at once, hyperd's own (a pull's) and every uid's together: a safety
/// net on descriptors and memory, sixteen times what one uid may hold, so that one uid at its
/// quota leaves room for the others and for pulls.
pub const MAX_OPEN_WRITES: usize = 4_096;
/// Largest blob a content write may announce: 1 TiB, far above any real layer.
pub const MAX_WRITE_TOTAL: u64 = 1 << 40;
/// Lease lifetime when a request names none; also the span of the shared lease that holds the
/// blobs of writes without one (each blob from one to two such spans).
pub const DEFAULT_LEASE_TTL: u64 = 3_600;
/// Longest lease lifetime a client may ask for: 7 days.
pub const MAX_LEASE_TTL: u64 = 7 * 24 * 3_600;
/// Most leases one uid may hold at once.
pub const MAX_LEASES_PER_OWNER: usize = 1_024;
/// Most leases at once, every uid's and hyperd's own (a transfer's) together, the shared leases
/// of writes without one aside: a safety net on the lease table, 64 times what one uid may hold.
pub const MAX_LEASES: usize = 65_536;
/// Most (lease, blob) pairs across all leases, the shared ones included: room for ten
/// multi-platform images of 10,000 blobs in flight at once. Each costs one key of ~100 bytes in
/// the database, and collection keeps the set of leased digests in memory.
pub const MAX_LEASED_BLOBS: u64 = 100_000;
/// Uploads (blobs pushed to the registry endpoint) open at once; each holds a file descriptor.
pub const MAX_OPEN_UPLOADS: usize = 256;
/// An upload that receives no bytes for this long is dropped, with its partial file, when the
/// next upload begins.
pub const UPLOAD_IDLE_SECS: u64 = 15 * 60;
/// Images whose last use (a save, a push, a registry GET) waits in memory at which hyperd's
/// flusher is woken to write them in one transaction, off the async threads (noting a use
/// never writes).
pub const MAX_PENDING_USES: usize = 1000;
/// Hard cap on the images whose last use waits in memory (reached only while writes keep
/// failing): past it, a use of an image not already waiting is refused, and that image keeps
/// its older stamp. Each waiting use costs 50 to 100 bytes (a 32-byte digest, a time, the
/// map's slack), so at most about 1 MiB waits.
pub const MAX_WAITING_USES: usize = 10_000;
/// Longest a use waits in memory while others keep coming, the period of hyperd's flush of
/// them, and its pause after a failed write; the store writes what waits when it closes too.
pub const USES_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
