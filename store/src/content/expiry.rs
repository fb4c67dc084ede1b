//! What has expired at a given time, and when the next thing will. Pure: the janitor in hyperd
//! sleeps on [`next`] and the store drops what [`leases`] and [`write_expired`] name.

use std::collections::BTreeMap;

/// Leases whose time is up at `now`, from their expiries by ID.
pub(crate) fn leases(expiries: &BTreeMap<String, i64>, now: i64) -> Vec<String> {
    expiries
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Whether a write last touched at `updated_at` has been idle for `idle` seconds at `now`.
pub(crate) fn write_expired(updated_at: i64, idle: u64, now: i64) -> bool {
    updated_at.saturating_add_unsigned(idle) <= now
}

/// The earliest time a lease or a write (by when it was last touched) expires.
pub(crate) fn next(
    leases: &BTreeMap<String, i64>,
    writes: impl IntoIterator<Item = i64>,
    idle: u64,
) -> Option<i64> {
    let writes = writes.into_iter().map(|t| t.saturating_add_unsigned(idle));
    leases.values().copied().chain(writes).min()
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
    fn a_write_expires_when_idle_for_the_expiry() {
        assert!(!write_expired(100, 60, 159));
        assert!(write_expired(100, 60, 160));
        assert!(!write_expired(i64::MAX, u64::MAX, i64::MAX - 1));
    }

    #[test]
    fn the_next_expiry_is_the_earliest_lease_or_idle_write() {
        let l = expiries(&[("a", 500)]);
        assert_eq!(next(&l, [100], 60), Some(160));
        assert_eq!(next(&l, [1000], 60), Some(500));
        assert_eq!(next(&BTreeMap::new(), [], 60), None);
    }
}
