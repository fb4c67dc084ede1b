//! A `Range` header against a blob's size (RFC 9110 §14): one byte range, or none. Pure.

/// What a `Range` header asks of a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Wanted {
    /// The whole blob: no header, one in another unit, several ranges or one that does not
    /// parse, all of which RFC 9110 lets a server ignore.
    Whole,
    /// The bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range that starts past the end (or an empty blob's): 416.
    Unsatisfiable,
}

pub(super) fn wanted(header: Option<&str>, size: u64) -> Wanted {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else {
        return Wanted::Whole;
    };
    // Several ranges would need a multipart answer; no registry client asks for them.
    let Some((first, last)) = spec.trim().split_once('-').filter(|_| !spec.contains(',')) else {
        return Wanted::Whole;
    };
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let (first_empty, last_empty) = (first.trim().is_empty(), last.trim().is_empty());
    match (number(first), number(last)) {
        // `bytes=-N`: the last N bytes.
        (None, Some(n)) if first_empty => match n > 0 && size > 0 {
            true => Wanted::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            false => Wanted::Unsatisfiable,
        },
        (Some(start), None) if last_empty => satisfiable(start, size.saturating_sub(1), size),
        (Some(start), Some(end)) if start <= end => {
            satisfiable(start, end.min(size.saturating_sub(1)), size)
        }
        _ => Wanted::Whole,
    }
}

fn satisfiable(start: u64, end: u64, size: u64) -> Wanted {
    match start < size {
        true => Wanted::Part { start, end },
        false => Wanted::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> Wanted {
        Wanted::Part { start, end }
    }

    #[test]
    fn one_byte_range_is_served_as_asked() {
        assert_eq!(wanted(None, 10), Wanted::Whole);
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::Whole);
        assert_eq!(wanted(Some("bytes=0-0"), 10), part(0, 0));
        assert_eq!(wanted(Some("bytes=2-5"), 10), part(2, 5));
        assert_eq!(wanted(Some("bytes=2-"), 10), part(2, 9));
        assert_eq!(wanted(Some("bytes=5-100"), 10), part(5, 9));
        assert_eq!(wanted(Some("bytes=-3"), 10), part(7, 9));
        assert_eq!(wanted(Some("bytes=-30"), 10), part(0, 9));
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable_and_malformed_ones_ignored() {
        for past in ["bytes=10-", "bytes=10-12", "bytes=-0"] {
            assert_eq!(wanted(Some(past), 10), Wanted::Unsatisfiable, "{past}");
        }
        for ignored in [
            "bytes=5-2",
            "bytes=",
            "bytes=a-b",
            "bytes=0-1,3-4",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(wanted(Some(ignored), 10), Wanted::Whole, "{ignored}");
        }
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-1"), 0), Wanted::Unsatisfiable);
    }
}
