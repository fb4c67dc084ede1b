//! The store's own counts, read at each scrape from [`store::Store::stats`]: blobs and bytes
//! stored, collections and what they freed, leases, open content writes, and the size and free
//! space of the store's filesystem. The store keeps these counts in memory (blobs counted once
//! at open, then at each change), so a scrape costs a few atomic reads, two short locks and one
//! `statvfs`, never a walk of the blob directory.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The store whose counts a scrape reads.
pub(super) struct Sampled(pub(super) store::Store);

impl std::fmt::Debug for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the store's counts")
    }
}

impl Collector for Sampled {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0.stats();
        let b = s.blobs;
        // Read at each scrape (one statvfs); a filesystem that cannot be read shows 0.
        let fs = self.0.filesystem().unwrap_or(store::Filesystem {
            size: 0,
            available: 0,
        });
        let gauges = [
            (
                "store_filesystem_size_bytes",
                "Size of the filesystem the store is on.",
                fs.size,
            ),
            (
                "store_filesystem_available_bytes",
                "Bytes of the store's filesystem available to unprivileged users.",
                fs.available,
            ),
            ("store_blobs", "Blobs stored.", b.blobs),
            ("store_blob_bytes", "Bytes of the blobs stored.", b.bytes),
            ("leases", "Leases clients and transfers hold.", s.leases),
            ("content_writes_open", "Content writes open.", s.open_writes),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            (
                "gc_runs",
                "Collections of unreferenced blobs.",
                b.collections,
            ),
            (
                "gc_freed_blobs",
                "Blobs collections deleted.",
                b.collected_blobs,
            ),
            (
                "gc_freed_bytes",
                "Bytes collections freed.",
                b.collected_bytes,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
