//! How many connections each client address holds on the registry endpoint, under
//! `--registry-max-connections-per-ip`: one client cannot take every place under the total cap
//! (`--registry-max-connections`) and starve the others. Pure counting; a place is held by an
//! RAII [`Held`] and given back when the connection ends, however it ends.
//!
//! A client is its IPv4 address (an IPv4-mapped IPv6 address, as a dual-stack listener sees it,
//! is that IPv4 address), or the /64 of its IPv6 address: one host is handed a whole /64, so a
//! cap per IPv6 address would cap nothing.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// The count of each client's connections, shared by every listener of the endpoint.
#[derive(Clone, Debug)]
pub(super) struct Peers {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Connections one client may hold; 0: no cap.
    cap: usize,
}

/// One connection's place under its client's cap, given back on drop.
#[derive(Debug)]
pub(super) struct Held {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl Peers {
    /// Counts for `cap` connections per client; 0 counts nothing and refuses nothing.
    pub(super) fn new(cap: usize) -> Self {
        Peers {
            held: Arc::default(),
            cap,
        }
    }

    /// A place for one more connection from `ip`, or `None` when its client holds the cap.
    pub(super) fn admit(&self, ip: IpAddr) -> Option<Held> {
        if self.cap == 0 {
            return Some(Held {
                held: Arc::default(),
                client: ip,
            });
        }
        let client = client_of(ip);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(client).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Held {
            held: self.held.clone(),
            client,
        })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.client) {
            *count -= 1;
            // A client that holds nothing takes no memory: the map is as large as the
            // connections open, never as the addresses ever seen.
            if *count == 0 {
                held.remove(&self.client);
            }
        }
    }
}

/// Whom `ip` counts as: its IPv4 address, or its IPv6 /64.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_at_its_cap_is_refused_until_one_of_its_connections_ends() {
        let peers = Peers::new(2);
        let first = peers.admit(ip("127.0.0.1")).unwrap();
        let _second = peers.admit(ip("127.0.0.1")).unwrap();
        assert!(peers.admit(ip("127.0.0.1")).is_none());
        // Another client is not held back.
        let other = peers.admit(ip("127.0.0.2")).unwrap();
        drop(first);
        let _again = peers.admit(ip("127.0.0.1")).unwrap();
        assert!(peers.admit(ip("127.0.0.1")).is_none());
        drop(other);
        assert!(!peers.held.lock().unwrap().contains_key(&ip("127.0.0.2")));
    }

    #[test]
    fn a_client_is_its_ipv4_address_or_its_ipv6_64() {
        let peers = Peers::new(1);
        let _v4 = peers.admit(ip("192.0.2.7")).unwrap();
        assert!(peers.admit(ip("::ffff:192.0.2.7")).is_none());
        let _v6 = peers.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(peers.admit(ip("2001:db8:1:2:ffff::9")).is_none());
        assert!(peers.admit(ip("2001:db8:1:3::1")).is_some());
    }

    #[test]
    fn a_cap_of_zero_refuses_nothing_and_counts_nothing() {
        let peers = Peers::new(0);
        let held: Vec<_> = (0..100).map(|_| peers.admit(ip("::1")).unwrap()).collect();
        assert!(peers.held.lock().unwrap().is_empty());
        drop(held);
    }
}
