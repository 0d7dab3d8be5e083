//! What the CLI prints of text that others chose: framework and task names, agents' host names
//! and attributes, task messages, a framework's result, the master's error messages.
//!
//! Such text may hold NUL, newlines or terminal escape sequences (`ESC [ ...`) that would break
//! a table, forge a line, or drive the reader's terminal. Every human-readable printout passes
//! it through [`escape_controls`] (one-line fields) or [`escape_controls_keep_lines`]
//! (multi-line text): control characters, and the Unicode controls that reorder text on
//! screen, are shown as Rust-style escapes (`\n`, `\u{1b}`); everything else is unchanged.
//! JSON output is not passed through here: `serde_json` escapes control characters already.
//!
//! Durations are printed in one style, [`duration`]'s (`250ms`, `3s`, `1m 3s`), which every
//! time flag reads back.

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

/// `d` as people read it and as every time flag parses it back (humantime's units): whole
/// milliseconds under a second (`250ms`), seconds and milliseconds under 10 s (`2s 350ms`),
/// whole seconds above, in days, hours, minutes and seconds without the zero parts (`3s`,
/// `1m 3s`, `2h 5s`, `1d 2h`).
pub fn duration(d: std::time::Duration) -> String {
    if d < std::time::Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    if d < std::time::Duration::from_secs(10) {
        let ms = d.subsec_millis();
        return match ms {
            0 => format!("{}s", d.as_secs()),
            ms => format!("{}s {ms}ms", d.as_secs()),
        };
    }
    let secs = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let mut out = String::new();
    for (n, unit) in parts.iter().filter(|(n, _)| *n > 0) {
        if !out.is_empty() {
            out.push(' ');
        }
        let _ = write!(out, "{n}{unit}");
    }
    out
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

    #[test]
    fn durations_read_as_people_write_them_and_parse_back() {
        use std::time::Duration;
        let cases = [
            (Duration::ZERO, "0ms"),
            (Duration::from_micros(250_700), "250ms"),
            (Duration::from_secs(3), "3s"),
            (Duration::from_millis(2350), "2s 350ms"),
            (Duration::from_millis(59_600), "1m"),
            (Duration::from_secs(63), "1m 3s"),
            (Duration::from_secs(7205), "2h 5s"),
            (Duration::from_secs(93_600), "1d 2h"),
        ];
        for (d, shown) in cases {
            assert_eq!(duration(d), shown, "{d:?}");
            // What a flag reads back is what was shown (rounded as shown).
            let back = humantime::parse_duration(shown).unwrap();
            assert!(
                back.abs_diff(d) < Duration::from_millis(500),
                "{shown}: {back:?} vs {d:?}"
            );
        }
    }
}
