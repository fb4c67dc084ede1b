//! Exit codes and error lines. Scripts tell failures apart by the code:
//! 1 any other failure, 2 usage (clap), 3 not found, 4 hyperd unreachable, 5 a registry
//! refused the credential or the operation, 6 a registry unreachable or failing.

use hyperd_proto::tonic::{Code, Status};
use hyperd_proto::v1::ErrorReason;
use hyperd_proto::{escape_controls, reason_of};

pub(crate) const FAILURE: u8 = 1;
pub(crate) const NOT_FOUND: u8 = 3;
pub(crate) const UNREACHABLE: u8 = 4;
pub(crate) const REGISTRY_AUTH: u8 = 5;
pub(crate) const REGISTRY_UNAVAILABLE: u8 = 6;

/// A registry could not be reached or kept failing, as hyperd's reason says; UNAVAILABLE
/// without it (hyperd stopping, the connection to hyperd lost) is about hyperd.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RegistryUnavailable(String);

/// Tells a registry's unavailability from hyperd's.
pub(crate) fn from_registry(s: Status) -> anyhow::Error {
    if reason_of(&s) == Some(ErrorReason::RegistryUnavailable) {
        return RegistryUnavailable(s.message().to_owned()).into();
    }
    s.into()
}

/// hyperd could not be reached at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to hyperd at {socket}: {cause}. Is hyperd running?")]
pub(crate) struct Unreachable {
    pub(crate) socket: String,
    pub(crate) cause: String,
}

/// Prints the one error line for `e` and returns the exit code it maps to. The line may quote a
/// registry or hyperd: its control characters are printed escaped, never sent to the terminal.
pub(crate) fn report(e: &anyhow::Error) -> u8 {
    eprintln!("Error: {}", escape_controls(&describe(e)));
    raw_code(e)
}

fn raw_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Unreachable>().is_some() {
        return UNREACHABLE;
    }
    if e.downcast_ref::<RegistryUnavailable>().is_some() {
        return REGISTRY_UNAVAILABLE;
    }
    let Some(status) = e.downcast_ref::<Status>() else {
        return FAILURE;
    };
    // hyperd's own refusals (a hand-over without credentials, another user's fd token) travel
    // with the same codes as a registry's, so the reason decides.
    if matches!(
        reason_of(status),
        Some(ErrorReason::RegistryUnauthenticated | ErrorReason::RegistryDenied)
    ) {
        return REGISTRY_AUTH;
    }
    match status.code() {
        Code::NotFound => NOT_FOUND,
        Code::Unavailable => UNREACHABLE,
        _ => FAILURE,
    }
}

/// One line: the daemon's own message for a status, else the context chain.
fn describe(e: &anyhow::Error) -> String {
    let mut out = Vec::new();
    for cause in e.chain() {
        match cause.downcast_ref::<Status>() {
            Some(s) => {
                out.push(s.message().to_owned());
                break;
            }
            None => out.push(cause.to_string()),
        }
    }
    out.join(": ")
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use hyperd_proto::status_with_reason;

    use super::*;

    #[test]
    fn only_hyperd_reason_makes_a_registry_unavailable() {
        let registry = status_with_reason(
            Code::Unavailable,
            "registry.example at x: connection refused",
            ErrorReason::RegistryUnavailable,
        );
        assert_eq!(raw_code(&from_registry(registry)), REGISTRY_UNAVAILABLE);
        let stopping = status_with_reason(
            Code::Unavailable,
            "a message saying nothing of hyperd",
            ErrorReason::ShuttingDown,
        );
        assert_eq!(raw_code(&from_registry(stopping)), UNREACHABLE);
        let lost = Status::unavailable("the registry is unavailable, or so the words say");
        assert_eq!(raw_code(&from_registry(lost)), UNREACHABLE);
    }

    #[test]
    fn only_a_registry_refusal_exits_registry_auth() {
        for (code, reason) in [
            (Code::Unauthenticated, ErrorReason::RegistryUnauthenticated),
            (Code::PermissionDenied, ErrorReason::RegistryDenied),
        ] {
            let s = status_with_reason(code, "refused", reason);
            assert_eq!(raw_code(&from_registry(s)), REGISTRY_AUTH, "{reason:?}");
        }
        for reason in [
            ErrorReason::NoPeerCredentials,
            ErrorReason::FdTokenOtherUser,
        ] {
            let s = status_with_reason(Code::PermissionDenied, "refused", reason);
            assert_eq!(raw_code(&s.into()), FAILURE, "{reason:?}");
        }
        assert_eq!(
            raw_code(&Status::permission_denied("no reason").into()),
            FAILURE
        );
    }

    /// `code` without its `#[cfg(test)]` items; what follows one (a test-only `use`, a
    /// `mod tests;`) is production code again.
    fn without_test_items(code: &str) -> String {
        const MARK: &str = "#[cfg(test)]";
        let mut out = String::new();
        let mut rest = code;
        while let Some(at) = rest.find(MARK) {
            out.push_str(&rest[..at]);
            let item = &rest[at + MARK.len()..];
            rest = &item[item_len(item)..];
        }
        out.push_str(rest);
        out
    }

    /// The length of the item `code` starts with: to its `;` (`use …;`, `mod tests;`) or to the
    /// brace closing its body (`mod tests { … }`), strings, chars and comments skipped.
    fn item_len(code: &str) -> usize {
        let b = code.as_bytes();
        let mut depth = 0usize;
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'"' => i = string_end(b, i + 1),
                b'r' if raw_string_start(b, i) => i = raw_string_end(b, i + 1),
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    i += b[i..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .unwrap_or(b.len() - i);
                }
                b'\'' if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') => i += 3,
                b'\'' if b.get(i + 2) == Some(&b'\'') => i += 2,
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' => depth = depth.saturating_sub(1),
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        // `static X: T = T { … };` ends at its semicolon.
                        let after = &code[i + 1..];
                        let semicolon = after.trim_start().starts_with(';');
                        return i
                            + 1
                            + if semicolon {
                                after.find(';').unwrap() + 1
                            } else {
                                0
                            };
                    }
                }
                b';' if depth == 0 => return i + 1,
                _ => {}
            }
            i += 1;
        }
        b.len()
    }

    /// The index of the quote closing a string whose text starts at `i`.
    fn string_end(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i] != b'"' {
            i += if b[i] == b'\\' { 2 } else { 1 };
        }
        i
    }

    /// True when a raw string (`r"…"`, `r#"…"#`) starts at `i`, not an identifier ending in r.
    fn raw_string_start(b: &[u8], i: usize) -> bool {
        let after_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
        !after_ident && b.get(i + 1 + hashes) == Some(&b'"')
    }

    /// The index of the last `#` (or quote) closing a raw string whose hashes start at `i`.
    fn raw_string_end(b: &[u8], i: usize) -> usize {
        let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
        let close: Vec<u8> = std::iter::once(b'"')
            .chain(std::iter::repeat_n(b'#', hashes))
            .collect();
        let text = i + hashes + 1;
        b[text..]
            .windows(close.len())
            .position(|w| w == close)
            .map_or(b.len(), |at| text + at + close.len() - 1)
    }

    /// Where a status's message is compared or searched in `code` (comments and `#[cfg(test)]`
    /// items left out): clients decide on reasons, and messages are free to change.
    fn message_matches(code: &str) -> Vec<String> {
        let production = without_test_items(code);
        let code: String = production
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut found = Vec::new();
        for (at, _) in code.match_indices(".message()") {
            let (before, after) = (&code[..at], &code[at + ".message()".len()..]);
            let after = after.trim_start();
            // A stream's next message, not a status's text.
            if after.starts_with(".await") {
                continue;
            }
            let compared_after = [
                ".contains(",
                ".starts_with(",
                ".ends_with(",
                ".find(",
                ".matches(",
                ".eq(",
                "==",
                "!=",
            ]
            .iter()
            .any(|p| after.starts_with(p));
            let operand =
                before.trim_end_matches(|c: char| c.is_alphanumeric() || "_.()&*".contains(c));
            let operand = operand.trim_end();
            let compared_before = ["==", "!=", "matches!", "match"]
                .iter()
                .any(|p| operand.ends_with(p));
            if compared_after || compared_before {
                let start = at.saturating_sub(40);
                found.push(code[start..(at + 40).min(code.len())].to_owned());
            }
        }
        found
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_scan_finds_message_matches() {
        for matched in [
            "if s.message().contains(\"left out\") {}",
            "s.message()\n    .starts_with(\"x\")",
            "if \"x\" == status.message() {}",
            "matches!(e.message(), \"x\")",
            "match s.message() { _ => {} }",
            // After a test-only item, production code again.
            "#[cfg(test)]\nuse std::fmt;\nfn f() { s.message().contains(\"x\"); }",
            "#[cfg(test)]\nmod tests;\nfn f() { s.message().contains(\"x\"); }",
            "#[cfg(test)] mod tests { const B: &str = \"}\"; const R: &str = r#\"{\"#; }\n\
             fn f() { s.message().contains(\"x\"); }",
        ] {
            assert_eq!(message_matches(matched).len(), 1, "{matched}");
        }
        for fine in [
            "out.push(s.message().to_owned());",
            "while let Some(m) = stream.message().await? {}",
            "match events.message().await.map_err(from_registry)? { _ => {} }",
            "// s.message().contains(\"in a comment\")",
            "#[cfg(test)] mod tests { fn t() { s.message().contains(\"x\"); } }",
            "#[cfg(test)]\nfn t() { if c == '{' { s.message().contains(\"x\"); } }",
        ] {
            assert_eq!(message_matches(fine), Vec::<String>::new(), "{fine}");
        }
    }

    #[test]
    fn no_production_code_matches_a_status_message() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        for dir in ["hyperctl/src", "hyperd/src", "proto/src"] {
            rust_files(&workspace.join(dir), &mut files);
        }
        assert!(files.len() > 20, "found only {files:?}");
        let offending: Vec<String> = files
            .iter()
            .flat_map(|f| {
                let code = std::fs::read_to_string(f).unwrap();
                message_matches(&code)
                    .into_iter()
                    .map(move |m| format!("{}: …{m}…", f.display()))
            })
            .collect();
        assert!(
            offending.is_empty(),
            "match the status's reason (hyperd_proto::reason_of), not its message:\n{}",
            offending.join("\n")
        );
    }
}
