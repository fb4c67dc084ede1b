//! What has expired at a given time, and when the next thing will. Pure: the janitor in hyperd
//! sleeps on [`next_ms`] and the store drops what [`leases`] and [`write_expired`] name. Leases
//! expire at whole unix seconds, writes are timed in milliseconds.

use std::collections::BTreeMap;

/// Leases whose time is up at `now`, from their expiries by ID.
pub(crate) fn leases(expiries: &BTreeMap<String, i64>, now: i64) -> Vec<String> {
    expiries
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Whether a write last touched at `touched_ms` has been idle for `idle` seconds at `now_ms`.
pub(crate) fn write_expired(touched_ms: i64, idle: u64, now_ms: i64) -> bool {
    expires_ms(touched_ms, idle) <= now_ms
}

fn expires_ms(touched_ms: i64, idle: u64) -> i64 {
    touched_ms.saturating_add_unsigned(idle.saturating_mul(1000))
}

/// The earliest time, unix milliseconds, a lease or a write (by when it was last touched, in
/// milliseconds) expires.
pub(crate) fn next_ms(
    leases: &BTreeMap<String, i64>,
    writes_ms: impl IntoIterator<Item = i64>,
    idle: u64,
) -> Option<i64> {
    let writes = writes_ms.into_iter().map(|t| expires_ms(t, idle));
    let leases = leases.values().map(|at| at.saturating_mul(1000));
    leases.chain(writes).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiries(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_lease_expires_at_its_second() {
        let l = expiries(&[("a", 100), ("b", 200)]);
        assert!(leases(&l, 99).is_empty());
        assert_eq!(leases(&l, 100), ["a"]);
        assert_eq!(leases(&l, 500), ["a", "b"]);
    }

    #[test]
    fn a_write_expires_when_idle_for_the_expiry_to_the_millisecond() {
        assert!(!write_expired(100_990, 1, 101_000));
        assert!(!write_expired(100_990, 1, 101_989));
        assert!(write_expired(100_990, 1, 101_990));
        assert!(!write_expired(i64::MAX, u64::MAX, i64::MAX - 1));
    }

    #[test]
    fn the_next_expiry_is_the_earliest_lease_or_idle_write() {
        let l = expiries(&[("a", 500)]);
        assert_eq!(next_ms(&l, [100_250], 60), Some(160_250));
        assert_eq!(next_ms(&l, [1_000_000], 60), Some(500_000));
        assert_eq!(next_ms(&BTreeMap::new(), [], 60), None);
    }
}
