//! PII-like strings: e-mail addresses, phone numbers, payment card numbers and IBANs.
//!
//! Patterns find candidates; card numbers and IBANs must also pass their check digits, which
//! keeps random digit runs out:
//! - e-mail: the WHATWG HTML "valid e-mail address" grammar, with a dot and an alphabetic TLD
//!   required in the domain;
//! - phone: E.164 numbers written with `+` and a country code (8–15 digits, ITU-T E.164 §6),
//!   and North American numbers `(555) 123-4567` / `555-123-4567` / `555.123.4567` (NANP);
//!   local formats without `+` are not recognized (too close to other numbers);
//! - card: 13–19 digits, plain or in groups, major industry identifier 2–6 (ISO/IEC 7812-1),
//!   valid Luhn check digit (ISO/IEC 7812-1 Annex B; US patent 2,950,048);
//! - IBAN: country code, two check digits and the BBAN, with the country's length from the SWIFT
//!   IBAN Registry and the ISO 7064 MOD 97-10 check (ISO 13616-1 §6).
use std::sync::OnceLock;

use regex::Regex;

use super::CheckId;

/// One PII-like match in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiHit {
    pub check: CheckId,
    /// Byte offset of the match in the scanned text.
    pub start: usize,
    /// The match with all but its first and last two characters replaced by `*`, so reports
    /// do not spread the data they warn about.
    pub masked: String,
}

struct Patterns {
    email: Regex,
    phone_intl: Regex,
    phone_nanp: Regex,
    card: Regex,
    iban: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        // ASCII word boundaries: Unicode ones stop the lazy DFA on non-ASCII text (3× slower).
        let re = |s: &str| Regex::new(s).unwrap_or_else(|e| unreachable!("built-in PII pattern {s}: {e}"));
        let label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
        Patterns {
            email: re(&format!(r"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]+@{label}(?:\.{label})*\.[A-Za-z]{{2,63}}(?-u:\b)")),
            phone_intl: re(r"\+[1-9][0-9]{0,2}(?:[ .\-]?\(?[0-9]{1,4}\)?){2,6}(?-u:\b)"),
            phone_nanp: re(r"(?:\([0-9]{3}\) ?|(?-u:\b)[0-9]{3}[.\-])[0-9]{3}[.\-][0-9]{4}(?-u:\b)"),
            card: re(r"(?-u:\b)(?:[0-9]{13,19}|[0-9]{4}[ \-][0-9]{4}[ \-][0-9]{4}[ \-][0-9]{1,7}|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5})(?-u:\b)"),
            iban: re(r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,32}"),
        }
    })
}

/// Every PII-like string in `text`, in the order e-mail, phone, card, IBAN, each by position.
/// `enabled(check)` skips the patterns of checks that are off.
pub fn scan(text: &str, enabled: impl Fn(CheckId) -> bool) -> Vec<PiiHit> {
    let p = patterns();
    let mut hits = Vec::new();
    let hit = |check, start, s: &str| PiiHit { check, start, masked: mask(s) };
    if enabled(CheckId::PiiEmail) && text.contains('@') {
        hits.extend(p.email.find_iter(text).map(|m| hit(CheckId::PiiEmail, m.start(), m.as_str())));
    }
    if enabled(CheckId::PiiPhone) {
        let intl = p.phone_intl.find_iter(text).filter(|m| (8..=15).contains(&digits(m.as_str()).len()));
        let mut phones: Vec<_> = intl.chain(p.phone_nanp.find_iter(text)).map(|m| (m.start(), m.as_str())).collect();
        phones.sort_unstable();
        phones.dedup_by_key(|(s, _)| *s);
        hits.extend(phones.into_iter().map(|(s, m)| hit(CheckId::PiiPhone, s, m)));
    }
    if enabled(CheckId::PiiCard) {
        let cards = p.card.find_iter(text).filter(|m| is_card_number(&digits(m.as_str())));
        hits.extend(cards.map(|m| hit(CheckId::PiiCard, m.start(), m.as_str())));
    }
    if enabled(CheckId::PiiIban) {
        for m in p.iban.find_iter(text) {
            if let Some(iban) = iban_prefix(m.as_str()) {
                hits.push(hit(CheckId::PiiIban, m.start(), &iban));
            }
        }
    }
    hits
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

fn mask(s: &str) -> String {
    let n = s.chars().count();
    s.chars().enumerate().map(|(i, c)| if i < 2 || i + 2 >= n { c } else { '*' }).collect()
}

/// Luhn (mod 10) check over a string of ASCII digits: from the right, every second digit is
/// doubled (minus 9 when above 9), and the sum must be a multiple of 10. Non-digits → false.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        if !c.is_ascii_digit() {
            return false;
        }
        let mut d = u32::from(c - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// 13–19 digits, first digit (major industry identifier) 2–6, not all one digit, Luhn-valid.
fn is_card_number(d: &str) -> bool {
    let b = d.as_bytes();
    (13..=19).contains(&b.len()) && (b'2'..=b'6').contains(&b[0]) && b.iter().any(|&x| x != b[0]) && luhn_valid(d)
}

/// IBAN lengths per country code, from the SWIFT IBAN Registry.
const IBAN_LENGTHS: &str = "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 \
DJ27 DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 \
JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 \
PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 \
VG24 XK20 YE30";

fn iban_length(country: &str) -> Option<usize> {
    IBAN_LENGTHS.split_whitespace().find(|e| &e[..2] == country).and_then(|e| e[2..].parse().ok())
}

/// The valid IBAN (spaces removed) that `candidate` starts with: the country's registered
/// length, cut from a match that may run into the next word, and a valid MOD 97-10 check.
fn iban_prefix(candidate: &str) -> Option<String> {
    let compact: String = candidate.chars().filter(|c| *c != ' ').collect();
    let len = iban_length(compact.get(..2)?)?;
    let iban = compact.get(..len)?;
    iban_valid(iban).then(|| iban.to_string())
}

/// ISO 13616 check: move the first four characters to the end, letters → 10..35, and the
/// number mod 97 must be 1 (ISO 7064 MOD 97-10), computed digit by digit to stay in u32.
pub fn iban_valid(iban: &str) -> bool {
    let b = iban.as_bytes();
    if b.len() < 5 || !b.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut rem = 0u32;
    for &c in b[4..].iter().chain(&b[..4]) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            _ => u32::from(c.to_ascii_uppercase() - b'A') + 10,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_table() {
        // Test numbers published by card networks / payment processors, and the Luhn example
        // 79927398713 from ISO/IEC 7812-1.
        let valid = ["79927398713", "4111111111111111", "5555555555554444", "378282246310005", "6011111111111117"];
        let invalid = ["79927398710", "4111111111111112", "1234567812345678", "", "4111a11111111111"];
        for d in valid {
            assert!(luhn_valid(d), "{d}");
        }
        for d in invalid {
            assert!(!luhn_valid(d), "{d}");
        }
    }

    #[test]
    fn iban_table() {
        // Examples from the SWIFT IBAN Registry / ECBS; the invalid ones change one character.
        let valid = [
            "DE89370400440532013000",
            "GB82WEST12345698765432",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "BE68539007547034",
            "CH9300762011623852957",
            "NO9386011117947",
            "MT84MALT011000012345MTLCAST001S",
        ];
        for i in valid {
            assert!(iban_valid(i), "{i}");
            assert_eq!(iban_length(&i[..2]), Some(i.len()), "{i}");
        }
        for i in ["DE89370400440532013001", "GB82WEST12345698765433", "GB28WEST12345698765432", "DE8"] {
            assert!(!iban_valid(i), "{i}");
        }
    }

    fn found(text: &str) -> Vec<(CheckId, String)> {
        scan(text, |_| true).into_iter().map(|h| (h.check, h.masked)).collect()
    }

    #[test]
    fn scan_table() {
        use CheckId::*;
        // Expected matches unmasked (IBANs without spaces), masked here.
        let cases: &[(&str, &[(CheckId, &str)])] = &[
            ("mail jane.doe+tag@example.co.uk now", &[(PiiEmail, "jane.doe+tag@example.co.uk")]),
            ("call +44 20 7946 0958.", &[(PiiPhone, "+44 20 7946 0958")]),
            ("call (555) 123-4567 or 555.123.4567", &[(PiiPhone, "(555) 123-4567"), (PiiPhone, "555.123.4567")]),
            ("card 4111 1111 1111 1111 ok", &[(PiiCard, "4111 1111 1111 1111")]),
            ("card 378282246310005", &[(PiiCard, "378282246310005")]),
            ("IBAN DE89 3704 0044 0532 0130 00 THE END", &[(PiiIban, "DE89370400440532013000")]),
            ("iban GB82WEST12345698765432.", &[(PiiIban, "GB82WEST12345698765432")]),
            // Not PII: bad check digits, dates, plain numbers, an address without a TLD, ISBN.
            ("card 4111 1111 1111 1112, IBAN DE89370400440532013001", &[]),
            ("on 2019-10-12 at 10:30, 1,000,000 people; user@localhost", &[]),
            ("ISBN 978-3-16-148410-0, year 1999 2000 2001 2002", &[]),
            ("the sum is 1234567812345678", &[]),
        ];
        for (text, want) in cases {
            let want: Vec<(CheckId, String)> = want.iter().map(|(c, m)| (*c, mask(m))).collect();
            assert_eq!(found(text), want, "{text}");
        }
    }

    #[test]
    fn mask_keeps_two_chars_each_side() {
        assert_eq!(mask("abcdef"), "ab**ef");
        assert_eq!(mask("abcd"), "abcd");
        assert_eq!(mask("a@b.co"), "a@**co");
    }

    #[test]
    fn disabled_checks_are_skipped() {
        let text = "a@b.org 4111111111111111";
        let hits = scan(text, |c| c == CheckId::PiiCard);
        assert_eq!(hits.iter().map(|h| h.check).collect::<Vec<_>>(), [CheckId::PiiCard]);
        assert_eq!(hits[0].start, 8);
    }
}
