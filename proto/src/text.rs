//! Text that came from elsewhere (a registry's error body, a name it sent), made safe to print
//! on a terminal: a control character there could retitle the window, clear the screen, move
//! the cursor or forge lines that seem to be hyperctl's own.

use std::borrow::Cow;

/// `text` with every control character (C0, newlines and tabs among them, DEL and C1) written
/// as its Rust escape (`\n`, `\u{1b}`), so that it prints as one inert line. Other text,
/// backslashes included, is left as it is.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c.is_control() {
            true => out.extend(c.escape_debug()),
            false => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn terminal_sequences_and_forged_lines_print_inert() {
        let hostile = "denied\x1b]0;owned\x07\x1b[2J\r\nError: fake line\t\u{7f}\u{9b}31m";
        let shown = escape_controls(hostile);
        assert_eq!(
            shown,
            r"denied\u{1b}]0;owned\u{7}\u{1b}[2J\r\nError: fake line\t\u{7f}\u{9b}31m"
        );
        assert!(!shown.chars().any(char::is_control), "{shown}");
    }

    #[test]
    fn plain_text_is_left_alone() {
        for text in ["", "manifest unknown", r"a\b", "Größe: 4 MiB ✓"] {
            assert_eq!(escape_controls(text), text);
        }
    }
}
