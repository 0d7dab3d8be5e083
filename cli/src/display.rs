//! What the CLI prints of text that others chose: framework and task names, agents' host names
//! and attributes, task messages, a framework's result, the master's error messages.
//!
//! Such text may hold NUL, newlines or terminal escape sequences (`ESC [ ...`) that would break
//! a table, forge a line, or drive the reader's terminal. Every human-readable printout passes
//! it through [`escape_controls`] (one-line fields) or [`escape_controls_keep_lines`]
//! (multi-line text): control characters, and the Unicode controls that reorder text on
//! screen, are shown as Rust-style escapes (`\n`, `\u{1b}`); everything else is unchanged.
//! JSON output is not passed through here: `serde_json` escapes control characters already.

use std::borrow::Cow;
use std::fmt::Write;

/// True for characters shown escaped: Unicode controls (C0, DEL, C1) and the bidirectional
/// overrides, embeddings and isolates (U+202A..U+202E, U+2066..U+2069), which reorder what
/// follows them on screen.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` with every control character escaped (`\n`, `\t`, `\0`, `\u{1b}`, ...), for one-line
/// fields such as names, ids and messages in a table. Borrowed when nothing needed escaping.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    escape_where(s, is_hidden)
}

/// Like [`escape_controls`] but keeping newlines and tabs as they are, for text that is meant
/// to span lines (a framework's result, an error message).
pub fn escape_controls_keep_lines(s: &str) -> Cow<'_, str> {
    escape_where(s, |c| c != '\n' && c != '\t' && is_hidden(c))
}

fn escape_where(s: &str, hide: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(&hide) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !hide(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("pi-é 1"), "pi-é 1");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\nb\r\tc\0d"), "a\\nb\\r\\tc\\0d");
        assert_eq!(
            escape_controls("\x1b[2J\x1b]0;pwned\x07"),
            "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"
        );
        assert_eq!(escape_controls("\u{7f}\u{9b}"), "\\u{7f}\\u{9b}");
        assert_eq!(escape_controls("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn multi_line_text_keeps_its_lines_but_not_escapes() {
        assert_eq!(
            escape_controls_keep_lines("line 1\nline\t2\x1b[31m\r"),
            "line 1\nline\t2\\u{1b}[31m\\r"
        );
    }

    #[test]
    fn escaped_text_has_no_control_character_left() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!escape_controls(&all).chars().any(is_hidden));
        assert!(
            !escape_controls_keep_lines(&all)
                .chars()
                .any(|c| c != '\n' && c != '\t' && is_hidden(c))
        );
    }
}
