//! Text normalization for duplicate and leakage checks.
//!
//! Two texts that differ only in Unicode compatibility forms (fullwidth letters, ligatures,
//! NBSP), letter case or whitespace layout are treated as the same text. The order follows the
//! Unicode standard's caseless-matching recipe (UAX #15 NFKC, then full case mapping), without
//! the final re-normalization, which only matters for rare characters whose lowercase form is
//! not NFKC-stable and does not change equality of ordinary text.
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// NFKC (Unicode Standard Annex #15), then Unicode lowercase (`char::to_lowercase`), then every
/// run of whitespace (`char::is_whitespace`) collapsed to one ASCII space, trimmed at both ends.
pub fn normalize_text(s: &str) -> String {
    // NFKC is the costly step; text already in NFKC (all ASCII text is) skips it, by the UAX #15
    // quick check, which answers "yes" only when normalization would not change the text.
    if s.is_ascii() {
        fold_ascii(s)
    } else if is_nfkc_quick(s.chars()) == IsNormalized::Yes {
        fold(s.chars(), s.len())
    } else {
        fold(s.nfkc(), s.len())
    }
}

/// [`fold`] for ASCII text, byte by byte. The whitespace set is `char::is_whitespace` on ASCII
/// (U+0009–U+000D and space; `u8::is_ascii_whitespace` would miss U+000B).
fn fold_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for b in s.bytes() {
        if matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(b.to_ascii_lowercase() as char);
    }
    out
}

/// Lowercases and collapses whitespace.
fn fold(chars: impl Iterator<Item = char>, len: usize) -> String {
    let mut out = String::with_capacity(len);
    // True while a space is owed before the next non-space char: trims the start and collapses
    // runs without a second pass; a trailing run is never written.
    let mut pending_space = false;
    for c in chars {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let cases: &[(&str, &str)] = &[
            ("Hello World", "hello world"),
            // Fullwidth Latin letters and digits (NFKC maps them to ASCII).
            ("\u{FF28}\u{FF45}\u{FF4C}\u{FF4C}\u{FF4F} \u{FF11}\u{FF12}", "hello 12"),
            // Ligature "ﬁ" (U+FB01) → "fi".
            ("\u{FB01}nd the \u{FB01}le", "find the file"),
            // NBSP (U+00A0) is whitespace after NFKC (→ U+0020) and collapses with its neighbours.
            ("a\u{00A0}\u{00A0}b", "a b"),
            // Tabs, newlines, CRLF, leading/trailing runs.
            ("  \tline one\r\n\n line\ttwo \n", "line one line two"),
            // Unicode case: Greek and German.
            ("ΣΟΦΙΑ Straße", "σοφια straße"),
            // Composed vs decomposed é: NFKC composes both to U+00E9.
            ("Cafe\u{0301}", "caf\u{00E9}"),
            ("CAF\u{00C9}", "caf\u{00E9}"),
            // Superscript two (compatibility) → "2".
            ("x\u{00B2}", "x2"),
            ("", ""),
            (" \t\n ", ""),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_text(input), *want, "input {input:?}");
            // The quick-check shortcut agrees with full NFKC.
            assert_eq!(fold(input.nfkc(), 0), *want, "input {input:?}");
        }
    }

    #[test]
    fn ascii_path_matches_char_path() {
        let all_ascii: String = (0u8..128).map(char::from).collect();
        for s in [all_ascii.as_str(), "  A\u{0B}b\x0C\rC\x1Fd  ", "MiXeD\tCase\n\nText "] {
            assert_eq!(fold_ascii(s), fold(s.chars(), 0), "{s:?}");
        }
    }

    #[test]
    fn normalize_is_idempotent() {
        for s in ["Ａｂ\u{FB01}  C\u{00A0}d", "Über\tALLES\n", "plain"] {
            let once = normalize_text(s);
            assert_eq!(normalize_text(&once), once);
        }
    }
}
