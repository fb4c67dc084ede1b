//! hyperd's Prometheus metrics: one [`Metrics`] holds every metric family, each a typed field
//! that the place which counts gets a handle to (a counter, a gauge, a family); what the store
//! already counts (its blobs and bytes, collections, leases, open writes) is read at scrape time
//! (`store.rs`), so neither the store nor its callers keep a second count.
//!
//! - `grpc.rs`: the tower layer on the gRPC server that counts every call by method and code
//!   and times it, when its status passes (at a stream's end), before the client sees it.
//!
//! Every count is taken before the client learns that the work ended, so a scrape after a call
//! returned sees what it did. The counts are kept whether or not the page is served: a few
//! atomic additions a call, and one per chunk of a load or save.
//! - `text.rs`: the page in the Prometheus text format (0.0.4) that Debian's promtool checks.
//! - `serve.rs`: `--metrics-listen`: the address, the listener, and `GET /metrics`.
//!
//! Names follow Prometheus conventions: `hyperd_` first, base units (seconds, bytes) in the name,
//! counters ending in `_total` (prometheus-client adds it to the samples of a counter).

mod grpc;
mod serve;
mod store;
mod text;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub(crate) use grpc::Layer;
pub use serve::Listener;
pub(crate) use serve::serve;

/// Every metric hyperd serves, and the registry that writes the page.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) grpc: grpc::Calls,
    /// Archive bytes loads read: a Load's chunks as they arrive; a LoadFile's archive length
    /// when it succeeds (blobs it held passed over, not copied), else as far as it got.
    pub(crate) load_bytes: Counter,
    /// Bytes a client left out of a Load stream because hyperd holds them (`elided`).
    pub(crate) load_elided_bytes: Counter,
    /// Archive bytes saves wrote (Save's chunks, SaveFile's file).
    pub(crate) save_bytes: Counter,
    pub(crate) pulls: Pulls,
    slots: Family<Kind, Gauge>,
    slots_waiting: Family<Kind, Gauge>,
    /// Connections open on hyperd's gRPC socket.
    pub(crate) connections: Gauge,
    /// Connections refused because one uid, or all together, held as many as they may.
    connections_refused: Family<Reason, Counter>,
    policy: Policy,
}

/// What the daemon's GC policy did, by rule.
#[derive(Default)]
struct Policy {
    passes: Counter,
    images: Family<Rule, Counter>,
    untagged: Family<Rule, Counter>,
    freed_bytes: Family<Rule, Counter>,
}

impl Policy {
    fn register(&self, r: &mut Registry) {
        r.register(
            "gc_policy_passes",
            "Passes of the daemon's GC policy",
            self.passes.clone(),
        );
        r.register(
            "gc_policy_removed_images",
            "Images the GC policy removed, by rule",
            self.images.clone(),
        );
        r.register(
            "gc_policy_removed_tags",
            "Tags the GC policy removed, by rule",
            self.untagged.clone(),
        );
        r.register(
            "gc_policy_freed_bytes",
            "Bytes of the blobs the GC policy's removals freed, by rule",
            self.freed_bytes.clone(),
        );
        for rule in [
            ::store::Rule::Keep,
            ::store::Rule::Unused,
            ::store::Rule::Watermark,
        ] {
            let rule = Rule {
                rule: rule.as_str(),
            };
            let _ = self.images.get_or_create(&rule);
            let _ = self.untagged.get_or_create(&rule);
            let _ = self.freed_bytes.get_or_create(&rule);
        }
    }
}

/// Which rule of the GC policy: `keep`, `unused` or `watermark`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Rule {
    rule: &'static str,
}

/// What successful pulls stored: blobs fetched from the registry, and blobs the store held
/// already and so did not fetch (manifests and indexes, always fetched, are not counted).
pub(crate) struct Pulls {
    pub(crate) fetched_bytes: Counter,
    pub(crate) present_bytes: Counter,
    pub(crate) fetched_blobs: Counter,
    pub(crate) present_blobs: Counter,
}

/// Which slots: `load` or `write`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

/// Why a connection was refused: `uid` (its uid's cap) or `total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

impl Reason {
    const UID: Reason = Reason { reason: "uid" };
    const TOTAL: Reason = Reason { reason: "total" };
}

/// The gauges of one kind of slot, for `api/slots.rs`.
#[derive(Clone, Default)]
pub(crate) struct SlotGauges {
    pub(crate) in_use: Gauge,
    pub(crate) waiting: Gauge,
}

impl Metrics {
    /// The metrics of a hyperd serving `store`.
    pub(crate) fn new(store: ::store::Store) -> Self {
        let mut registry = Registry::with_prefix("hyperd");
        let grpc = grpc::Calls::new(&mut registry);
        let m = Metrics {
            grpc,
            load_bytes: Counter::default(),
            load_elided_bytes: Counter::default(),
            save_bytes: Counter::default(),
            pulls: Pulls {
                fetched_bytes: Counter::default(),
                present_bytes: Counter::default(),
                fetched_blobs: Counter::default(),
                present_blobs: Counter::default(),
            },
            slots: Family::default(),
            slots_waiting: Family::default(),
            connections: Gauge::default(),
            connections_refused: Family::default(),
            policy: Policy::default(),
            registry,
        };
        m.register(store)
    }

    fn register(mut self, store: ::store::Store) -> Self {
        let r = &mut self.registry;
        let p = &self.pulls;
        r.register(
            "load_bytes",
            "Archive bytes read by loads",
            self.load_bytes.clone(),
        );
        r.register(
            "load_elided_bytes",
            "Archive bytes clients left out of loads because hyperd held them",
            self.load_elided_bytes.clone(),
        );
        r.register(
            "save_bytes",
            "Archive bytes written by saves",
            self.save_bytes.clone(),
        );
        r.register(
            "pull_fetched_bytes",
            "Blob bytes pulls fetched from registries",
            p.fetched_bytes.clone(),
        );
        r.register(
            "pull_present_bytes",
            "Blob bytes pulls needed and found stored already",
            p.present_bytes.clone(),
        );
        r.register(
            "pull_fetched_blobs",
            "Blobs pulls fetched from registries",
            p.fetched_blobs.clone(),
        );
        r.register(
            "pull_present_blobs",
            "Blobs pulls needed and found stored already",
            p.present_blobs.clone(),
        );
        r.register(
            "slots_in_use",
            "Load and write slots held",
            self.slots.clone(),
        );
        r.register(
            "slots_waiting",
            "Loads and writes waiting for a slot",
            self.slots_waiting.clone(),
        );
        r.register(
            "connections",
            "Connections open on the gRPC socket",
            self.connections.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused at a cap (per uid, or in total)",
            self.connections_refused.clone(),
        );
        for reason in [Reason::UID, Reason::TOTAL] {
            let _ = self.connections_refused.get_or_create(&reason);
        }
        self.policy.register(r);
        r.register_collector(Box::new(store::Sampled(store)));
        self
    }

    /// The gauges of the slots of one kind (`load`, `write`).
    pub(crate) fn slots(&self, kind: &'static str) -> SlotGauges {
        let kind = Kind { kind };
        SlotGauges {
            in_use: self.slots.get_or_create(&kind).clone(),
            waiting: self.slots_waiting.get_or_create(&kind).clone(),
        }
    }

    /// Counts a connection refused at the total cap, or at its uid's.
    pub(crate) fn connection_refused(&self, at_total: bool) {
        let reason = if at_total { Reason::TOTAL } else { Reason::UID };
        self.connections_refused.get_or_create(&reason).inc();
    }

    /// Counts what a successful pull stored.
    pub(crate) fn pulled(&self, p: &crate::registry::Pulled) {
        let pulls = &self.pulls;
        pulls.fetched_bytes.inc_by(p.downloaded_bytes);
        pulls.present_bytes.inc_by(p.present_bytes);
        pulls.fetched_blobs.inc_by(p.downloaded.into());
        pulls.present_blobs.inc_by(p.present.into());
    }

    /// Counts a pass of the GC policy and what it did.
    pub(crate) fn enforced(&self, enforced: &::store::Enforced) {
        let policy = &self.policy;
        policy.passes.inc();
        for step in &enforced.steps {
            let rule = Rule {
                rule: step.rule.as_str(),
            };
            for removed in &step.removed {
                match removed {
                    ::store::Removed::Deleted(_) => policy.images.get_or_create(&rule).inc(),
                    ::store::Removed::Untagged(_) => policy.untagged.get_or_create(&rule).inc(),
                    ::store::Removed::Referrer(_) => 0,
                };
            }
            policy.freed_bytes.get_or_create(&rule).inc_by(step.freed);
        }
    }

    /// The page, in the Prometheus text format.
    pub(crate) fn page(&self) -> String {
        let mut open_metrics = String::new();
        prometheus_client::encoding::text::encode_registry(&mut open_metrics, &self.registry)
            .expect("writing into a String cannot fail");
        text::prometheus(&open_metrics)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// One unit of a gauge held while this lives: a waiting call, a held slot, an open connection.
#[derive(Debug)]
pub(crate) struct Held(Gauge);

impl Held {
    pub(crate) fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Held(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}
