//! Control and invisible formatting characters that have no place in training text.
//!
//! Flagged: C0 controls U+0000–U+001F except tab, newline and carriage return; DEL U+007F; C1
//! controls U+0080–U+009F (Unicode general category Cc); U+FEFF (a byte-order mark inside a
//! text); and the bidirectional embedding, override and isolate controls U+202A–U+202E and
//! U+2066–U+2069, which reorder displayed text ("Trojan Source", Boucher & Anderson, 2021).

/// Whether `c` is flagged (see the module docs).
pub fn is_flagged(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{7F}'..='\u{9F}'
        | '\u{FEFF}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The first flagged character of `text` and its position in characters (0-based), with the
/// number of flagged characters in all.
pub fn find(text: &str) -> Option<(char, usize, usize)> {
    // Fast path: all flagged characters are below U+00A0 or start with byte 0xE2/0xEF in UTF-8.
    if !text.bytes().any(|b| b < 0x20 || b == 0x7F || b == 0xC2 || b == 0xE2 || b == 0xEF) {
        return None;
    }
    let mut first = None;
    let mut count = 0;
    for (i, c) in text.chars().enumerate() {
        if is_flagged(c) {
            count += 1;
            first.get_or_insert((c, i));
        }
    }
    first.map(|(c, i)| (c, i, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (first flagged char, its char index, how many).
    type Found = Option<(char, usize, usize)>;

    #[test]
    fn find_table() {
        let cases: &[(&str, Found)] = &[
            ("plain text\twith tab\r\nand newline", None),
            ("café – “quotes” © non-breaking\u{A0}space", None),
            ("bell\u{7} and NUL\u{0}", Some(('\u{7}', 4, 2))),
            ("del\u{7F}", Some(('\u{7F}', 3, 1))),
            ("c1 \u{85} next line", Some(('\u{85}', 3, 1))),
            ("bom\u{FEFF}inside", Some(('\u{FEFF}', 3, 1))),
            ("abc\u{202E}fed", Some(('\u{202E}', 3, 1))),
            ("isolate \u{2066}x\u{2069}", Some(('\u{2066}', 8, 2))),
            // Zero-width joiner is legitimate (emoji sequences, Indic scripts).
            ("a\u{200D}b", None),
        ];
        for (text, want) in cases {
            assert_eq!(find(text), *want, "{text:?}");
        }
    }
}
