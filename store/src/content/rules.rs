//! The rules of content requests, decided from plain values: which refs are valid, whether a
//! write starts, restarts or resumes, which bytes a read covers, how long a lease lives. No I/O.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::limits::{DEFAULT_LEASE_TTL, MAX_LEASE_TTL, MAX_WRITE_REF, MAX_WRITE_TOTAL};

use super::WriteStatus;

/// A ref names a write: any text but NUL (it never becomes a path; its hash does), 1 to
/// [`MAX_WRITE_REF`] bytes.
pub(crate) fn check_ref(reference: &str) -> Result<()> {
    if reference.is_empty() || reference.len() > MAX_WRITE_REF || reference.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "write ref {reference:?} must be 1 to {MAX_WRITE_REF} bytes without NUL"
        )));
    }
    Ok(())
}

pub(crate) fn check_total(total: u64) -> Result<()> {
    if total > MAX_WRITE_TOTAL {
        return Err(Error::InvalidArgument(format!(
            "total {total} is over the {MAX_WRITE_TOTAL}-byte limit of one blob"
        )));
    }
    Ok(())
}

/// What a stream's first message does to the write under its ref.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// No write is open: a new one.
    New,
    /// Offset 0 on an open write: its bytes are dropped and it starts over.
    Restart,
    /// The offset the open write is at: it goes on from there.
    Resume,
}

/// Decides from the write open under the ref (if any) and the first message's fields.
pub(crate) fn start(
    open: Option<&WriteStatus>,
    expected: &Digest,
    total: u64,
    offset: u64,
) -> Result<Start> {
    check_total(total)?;
    match open {
        None if offset == 0 => Ok(Start::New),
        None => Err(Error::OutOfRange(format!(
            "no write is open under this ref, so it is at offset 0, not {offset}"
        ))),
        Some(w) if w.expected != *expected || w.total != total => Err(Error::Conflict(format!(
            "ref {:?} is open for {} ({} bytes); abort it to write {expected} ({total} bytes)",
            w.reference, w.expected, w.total
        ))),
        Some(w) if offset == w.offset => Ok(Start::Resume),
        Some(_) if offset == 0 => Ok(Start::Restart),
        Some(w) => Err(Error::OutOfRange(format!(
            "write {:?} is at offset {}, not {offset}",
            w.reference, w.offset
        ))),
    }
}

/// How many bytes a read of `length` (0: to the end) from `offset` covers in a blob of `size`.
pub(crate) fn read_len(digest: &Digest, size: u64, offset: u64, length: u64) -> Result<u64> {
    let end = if length == 0 {
        Some(size)
    } else {
        offset.checked_add(length)
    };
    match end {
        Some(end) if offset <= size && end <= size => Ok(end - offset),
        _ => Err(Error::OutOfRange(format!(
            "{digest} is {size} bytes: offset {offset} and length {length} reach past its end"
        ))),
    }
}

/// What the shared leases' IDs start with; a client's lease ID is hex, so never does.
const SHARED_LEASE: &str = "shared-";

/// The shared lease that holds, at `now`, the blob of a write without a lease, and when it
/// expires. There is one per span of [`DEFAULT_LEASE_TTL`] seconds, expiring one span after
/// its own ends, so each such blob is held one to two spans and at most two shared leases are
/// live at once. A single lease pushed forward on each add would keep every lease-less blob as
/// long as anyone kept writing; a lease per write would let such writes fill the lease table.
pub(crate) fn shared_lease(now: i64) -> (String, i64) {
    let span = DEFAULT_LEASE_TTL as i64;
    let start = now.div_euclid(span) * span;
    (format!("{SHARED_LEASE}{start}"), start + 2 * span)
}

/// Whether `id` names a shared lease, which clients can neither name in a write nor delete.
pub(crate) fn is_shared_lease(id: &str) -> bool {
    id.starts_with(SHARED_LEASE)
}

/// A lease's lifetime in seconds: 0 means the default, and more than the cap is refused.
pub(crate) fn lease_ttl(ttl: u64) -> Result<u64> {
    match ttl {
        0 => Ok(DEFAULT_LEASE_TTL),
        t if t <= MAX_LEASE_TTL => Ok(t),
        t => Err(Error::InvalidArgument(format!(
            "a lease may last at most {MAX_LEASE_TTL} s, not {t}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(offset: u64) -> WriteStatus {
        WriteStatus {
            reference: "r".into(),
            expected: Digest::of(b"x"),
            total: 10,
            offset,
            started_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn refs_are_one_to_256_bytes_without_nul() {
        assert!(check_ref("layer-sha256:abc/../x y").is_ok());
        assert!(check_ref(&"é".repeat(128)).is_ok());
        for bad in [String::new(), "a\0b".into(), "a".repeat(257)] {
            assert!(matches!(check_ref(&bad), Err(Error::InvalidArgument(_))));
        }
    }

    #[test]
    fn the_first_offset_starts_restarts_resumes_or_is_out_of_range() {
        let d = Digest::of(b"x");
        assert_eq!(start(None, &d, 10, 0).unwrap(), Start::New);
        let e = start(None, &d, 10, 3).unwrap_err();
        assert!(
            matches!(e, Error::OutOfRange(ref m) if m.contains("offset 0")),
            "{e}"
        );
        assert_eq!(start(Some(&open(4)), &d, 10, 4).unwrap(), Start::Resume);
        assert_eq!(start(Some(&open(0)), &d, 10, 0).unwrap(), Start::Resume);
        assert_eq!(start(Some(&open(4)), &d, 10, 0).unwrap(), Start::Restart);
        let e = start(Some(&open(4)), &d, 10, 5).unwrap_err();
        assert!(
            matches!(e, Error::OutOfRange(ref m) if m.contains("offset 4")),
            "{e}"
        );
    }

    #[test]
    fn an_open_write_for_other_bytes_is_a_conflict_and_totals_are_bounded() {
        let d = Digest::of(b"x");
        assert!(matches!(
            start(Some(&open(4)), &Digest::of(b"y"), 10, 0),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            start(Some(&open(4)), &d, 11, 4),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            start(None, &d, MAX_WRITE_TOTAL + 1, 0),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn reads_stay_inside_the_blob() {
        let d = Digest::of(b"x");
        assert_eq!(read_len(&d, 10, 0, 0).unwrap(), 10);
        assert_eq!(read_len(&d, 10, 4, 0).unwrap(), 6);
        assert_eq!(read_len(&d, 10, 4, 6).unwrap(), 6);
        assert_eq!(read_len(&d, 10, 10, 0).unwrap(), 0);
        for (offset, length) in [(11, 0), (4, 7), (1, u64::MAX)] {
            assert!(matches!(
                read_len(&d, 10, offset, length),
                Err(Error::OutOfRange(_))
            ));
        }
    }

    #[test]
    fn a_lease_less_blob_is_held_one_to_two_spans_by_its_span_s_lease() {
        let span = DEFAULT_LEASE_TTL as i64;
        let start = 1_700_000_000 / span * span;
        let (id, at) = shared_lease(start);
        assert!(is_shared_lease(&id));
        assert_eq!(at, start + 2 * span);
        assert_eq!(shared_lease(start + span - 1), (id.clone(), at));
        let (next, next_at) = shared_lease(start + span);
        assert_ne!(next, id);
        assert_eq!(next_at, at + span);
        for now in [start, start + 1, start + span - 1] {
            let held = shared_lease(now).1 - now;
            assert!(held > span && held <= 2 * span, "{held}");
        }
        assert!(!is_shared_lease("0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn lease_ttls_default_and_are_capped() {
        assert_eq!(lease_ttl(0).unwrap(), DEFAULT_LEASE_TTL);
        assert_eq!(lease_ttl(5).unwrap(), 5);
        assert!(lease_ttl(MAX_LEASE_TTL + 1).is_err());
    }
}
