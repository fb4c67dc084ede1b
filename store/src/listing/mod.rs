//! What `images` lists and in which order, apart from where the rows are stored. Pure.
//!
//! Rows are ordered as docker orders them, newest first, then by name (an untagged row before
//! the tagged ones), then by digest. [`row_key`] encodes that order as bytes that sort
//! ascending, so that a page of the listing is one range of keys and a page token is the last key
//! a page returned: a token stays valid while the store changes, and rows added or removed
//! behind it are simply not seen again.

mod filter;

pub use filter::ListFilter;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// The most rows one page holds, whatever a client asks: one page of tiny rows stays well under
/// the 4 MiB that default gRPC clients accept.
pub const MAX_PAGE: usize = 1_000;

/// How much of an image's `created` orders the listing.
const CREATED_SORTED: usize = 64;

/// The bytes under which a row sorts: `created` newest first (bytes complemented, then a 0xFF
/// terminator so that a longer time with the same prefix sorts first; rows without a time
/// last), then the name (empty when untagged), then the digest. Only the first
/// [`CREATED_SORTED`] bytes of `created` count: an RFC 3339 time is shorter, and a config's
/// garbage must not make keys of any size.
pub(crate) fn row_key(created: Option<&str>, name: Option<&str>, digest: &Digest) -> Vec<u8> {
    let mut key = Vec::with_capacity(96);
    let created = created.map(|c| &c.as_bytes()[..c.len().min(CREATED_SORTED)]);
    match created {
        Some(c) => {
            key.push(0x00);
            key.extend(c.iter().map(|b| !b));
            key.push(0xFF);
        }
        None => key.push(0x01),
    }
    key.extend_from_slice(name.unwrap_or("").as_bytes());
    key.push(0x00);
    key.extend_from_slice(digest.hex().as_bytes());
    key
}

/// A page token for the page after the row whose key is `key`.
pub(crate) fn token(key: &[u8]) -> String {
    hex::encode(key)
}

/// The key a page token names: INVALID_ARGUMENT for anything [`token`] did not make.
pub(crate) fn parse_token(token: &str) -> Result<Vec<u8>> {
    hex::decode(token)
        .ok()
        .filter(|k| matches!(k.first(), Some(0x00 | 0x01)))
        .ok_or_else(|| Error::InvalidArgument(format!("malformed page token {token:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_newest_first_then_untagged_then_by_name() {
        let d = Digest::of(b"x");
        let mut keys = [
            row_key(None, Some("a"), &d),
            row_key(Some("2024-01-01T00:00:00Z"), Some("b"), &d),
            row_key(Some("2024-01-01T00:00:00.5Z"), Some("c"), &d),
            row_key(Some("2025-01-01T00:00:00Z"), Some("z"), &d),
            row_key(Some("2024-01-01T00:00:00Z"), None, &d),
            row_key(Some("2024-01-01T00:00:00Z"), Some("a"), &d),
        ];
        keys.sort();
        let order: Vec<usize> = keys
            .iter()
            .map(|k| {
                [
                    row_key(Some("2025-01-01T00:00:00Z"), Some("z"), &d),
                    row_key(Some("2024-01-01T00:00:00Z"), None, &d),
                    row_key(Some("2024-01-01T00:00:00Z"), Some("a"), &d),
                    row_key(Some("2024-01-01T00:00:00Z"), Some("b"), &d),
                    row_key(Some("2024-01-01T00:00:00.5Z"), Some("c"), &d),
                    row_key(None, Some("a"), &d),
                ]
                .iter()
                .position(|e| e == k)
                .unwrap()
            })
            .collect();
        // "…00.5Z" sorts after "…00Z" as a string ('.' < 'Z'), which is how rows compared before.
        assert_eq!(order, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_token_round_trips_and_garbage_is_invalid() {
        let key = row_key(Some("2024"), Some("a"), &Digest::of(b"x"));
        assert_eq!(parse_token(&token(&key)).unwrap(), key);
        assert!(matches!(parse_token("zz"), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            parse_token("ff00"),
            Err(Error::InvalidArgument(_))
        ));
    }
}
