//! Paths and names as shown to people: in messages, logs and tables.
//!
//! A file name may hold any byte but `/` and NUL. Printed raw, a newline forges a log line, an
//! escape sequence drives the terminal and U+202E reverses what follows. [`shown`] escapes
//! them, keeps invalid UTF-8 visible as `\xNN` (not a lossy U+FFFD), and shortens a huge path
//! in the middle so one name cannot fill a screen. Machine output (JSON) stays exact instead.

use std::ffi::OsStr;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;

/// Longest text [`shown`] prints for one path before cutting out its middle.
pub const MAX_SHOWN_CHARS: usize = 240;

/// `path`, escaped and shortened for people; see the module documentation.
pub fn shown(path: impl AsRef<OsStr>) -> String {
    shown_bytes(path.as_ref().as_bytes())
}

/// [`shown`] for raw bytes (names from archives or the ledger).
pub fn shown_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            escape_char(c, &mut out);
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    shorten(out)
}

/// Whether `c` would change how the text around it reads: controls, line and paragraph
/// separators, and the bidirectional overrides and isolates.
fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{2028}' | '\u{2029}'
            | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn escape_char(c: char, out: &mut String) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if is_dangerous(c) && (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_dangerous(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

/// `text` with its middle cut out when it is longer than [`MAX_SHOWN_CHARS`].
pub fn shorten(text: String) -> String {
    let count = text.chars().count();
    if count <= MAX_SHOWN_CHARS {
        return text;
    }
    let keep = (MAX_SHOWN_CHARS - 1) / 2;
    let head: String = text.chars().take(keep).collect();
    let tail: String = text.chars().skip(count - keep).collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_invalid_bytes_are_escaped() {
        assert_eq!(shown("/home/u/plain name.txt"), "/home/u/plain name.txt");
        assert_eq!(shown("a\nINFO forged"), "a\\nINFO forged");
        assert_eq!(shown("tab\there"), "tab\\there");
        assert_eq!(shown("esc\x1b[31m"), "esc\\x1b[31m");
        assert_eq!(shown("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(shown("back\\slash"), "back\\\\slash");
        assert_eq!(shown("café"), "café");
        assert_eq!(shown_bytes(b"bad\xff\xfe"), "bad\\xff\\xfe");
    }

    #[test]
    fn huge_paths_are_cut_in_the_middle() {
        let long = format!("/start/{}/end.txt", "d/".repeat(5000));
        let text = shown(&long);
        assert!((MAX_SHOWN_CHARS - 1..=MAX_SHOWN_CHARS).contains(&text.chars().count()));
        assert!(text.starts_with("/start/d/"), "{text}");
        assert!(text.ends_with("/end.txt"), "{text}");
        assert!(text.contains('…'));
    }
}
