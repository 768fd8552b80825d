//! The checks that look at one row alone (control characters, PII, length) and the keys the
//! duplicate checks compare; run in parallel, ahead of the sequential comparison.
use std::collections::BTreeMap;

use tuneguard_data::Example;

use super::config::{Actions, AuditConfig};
use super::duplicates::{row_keys, NearHashers, RowKeys};
use super::run::LengthFn;
use super::{control, pii, Action, CheckId};

/// What one row gives the sequential pass.
pub(crate) struct RowFacts {
    /// Length in tokens or characters (saturating at u32::MAX).
    pub len: u32,
    /// Row-local findings with their reasons.
    pub local: Vec<(CheckId, String)>,
    /// Keys for the duplicate checks (when any is on).
    pub keys: Option<RowKeys>,
}

/// The read-only part of an audit, shared by the worker threads.
pub(crate) struct Checker<'a> {
    actions: Actions,
    length_fn: Option<&'a LengthFn<'a>>,
    hashers: Option<NearHashers>,
    keys: bool,
    max_bytes: Option<usize>,
}

pub(crate) const DUP_CHECKS: [CheckId; 3] =
    [CheckId::ExactDuplicate, CheckId::ConflictingAnswer, CheckId::NearDuplicate];
const PII_CHECKS: [CheckId; 4] = [CheckId::PiiEmail, CheckId::PiiPhone, CheckId::PiiCard, CheckId::PiiIban];

impl<'a> Checker<'a> {
    pub fn new(cfg: &AuditConfig, actions: Actions, length_fn: Option<&'a LengthFn<'a>>) -> Self {
        let near = actions.get(CheckId::NearDuplicate) != Action::Off;
        Checker {
            actions,
            length_fn,
            hashers: near.then(|| NearHashers::new(cfg.num_perm, cfg.shingle_words, cfg.seed)),
            keys: actions.any_on(&DUP_CHECKS),
            max_bytes: None,
        }
    }

    /// Measures and hashes rows cut to `max_bytes` of text (see `AuditOptions::max_example_bytes`).
    pub fn with_max_bytes(mut self, max_bytes: Option<usize>) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// `instruction_len`: the byte length of the instruction at the start of the user turn, for
    /// instruction-format rows.
    pub fn facts(&self, e: &Example, instruction_len: Option<usize>) -> RowFacts {
        let on = |c| self.actions.get(c) != Action::Off;
        let mut local = Vec::new();
        if on(CheckId::ControlChars) {
            local.extend(control_finding(e));
        }
        if self.actions.any_on(&PII_CHECKS) {
            local.extend(pii_findings(e, on));
        }
        // Length and duplicate keys of an over-long row are those of the part training keeps.
        let cut = self.max_bytes.and_then(|m| e.cut_to(m));
        let kept = cut.as_ref().unwrap_or(e);
        let len = match self.length_fn {
            Some(f) => f(kept),
            None => example_chars(kept),
        };
        // A cut row keeps its instruction only if the cut left all of it (`split_shared` checks).
        let keys = self.keys.then(|| row_keys(kept, instruction_len, self.hashers.as_ref()));
        RowFacts { len: u32::try_from(len).unwrap_or(u32::MAX), local, keys }
    }
}

fn example_chars(e: &Example) -> usize {
    match e {
        Example::Chat(m) => m.iter().map(|m| m.content.chars().count()).sum(),
        Example::Text(t) => t.chars().count(),
    }
}

/// The example's texts with a label for reasons ("message 2 (assistant)", "the text").
fn labelled(e: &Example) -> Vec<(String, &str)> {
    match e {
        Example::Chat(m) => {
            m.iter().enumerate().map(|(i, m)| (format!("message {} ({})", i + 1, m.role), m.content.as_str())).collect()
        }
        Example::Text(t) => vec![("the text".into(), t.as_str())],
    }
}

fn control_finding(e: &Example) -> Option<(CheckId, String)> {
    let mut total = 0;
    let mut first = None;
    for (label, text) in labelled(e) {
        if let Some((c, at, n)) = control::find(text) {
            total += n;
            first.get_or_insert((c, at, label));
        }
    }
    let (c, at, label) = first?;
    Some((
        CheckId::ControlChars,
        format!("control character U+{:04X} in {label} at character {at} ({total} in the row)", c as u32),
    ))
}

/// One finding per PII check: the first match (masked) and how many there are.
fn pii_findings(e: &Example, on: impl Fn(CheckId) -> bool + Copy) -> Vec<(CheckId, String)> {
    let mut first: BTreeMap<CheckId, (String, usize)> = BTreeMap::new();
    for (label, text) in labelled(e) {
        for hit in pii::scan(text, on) {
            let what = match hit.check {
                CheckId::PiiEmail => "e-mail address",
                CheckId::PiiPhone => "phone number",
                CheckId::PiiCard => "card number (Luhn-valid)",
                _ => "IBAN (check digits valid)",
            };
            first.entry(hit.check).or_insert_with(|| (format!("{what} {} in {label}", hit.masked), 0)).1 += 1;
        }
    }
    first.into_iter().map(|(c, (s, n))| (c, if n > 1 { format!("{s} ({n} in the row)") } else { s })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuneguard_model::chat::ChatMessage;

    #[test]
    fn reasons_name_the_message_and_count() -> crate::Result<()> {
        let cfg = AuditConfig::default();
        let checker = Checker::new(&cfg, cfg.resolve()?, None);
        let e = Example::Chat(vec![
            ChatMessage::new("user", "Mail a@example.org or b@example.org\u{7}"),
            ChatMessage::new("assistant", "ok\u{0}"),
        ]);
        let f = checker.facts(&e, None);
        assert_eq!(f.len, 39);
        assert_eq!(
            f.local,
            [
                (
                    CheckId::ControlChars,
                    "control character U+0007 in message 1 (user) at character 35 (2 in the row)".into()
                ),
                (CheckId::PiiEmail, "e-mail address a@*********rg in message 1 (user) (2 in the row)".into()),
            ]
        );
        assert!(f.keys.is_some_and(|k| k.sig.is_some() && k.prompt_answer.is_some()));
        Ok(())
    }

    #[test]
    fn an_over_long_row_is_measured_and_hashed_cut_but_scanned_whole() -> crate::Result<()> {
        let cfg = AuditConfig::default();
        let checker = Checker::new(&cfg, cfg.resolve()?, None).with_max_bytes(Some(12));
        let e = Example::Text(format!("{} a@example.org", "word ".repeat(100)));
        let cut = Example::Text("word word wo".into());
        let f = checker.facts(&e, None);
        assert_eq!(f.len, 12);
        assert_eq!(f.keys, Some(row_keys(&cut, None, checker.hashers.as_ref())));
        assert_eq!(f.local.len(), 1, "the e-mail address past the cut is found: {:?}", f.local);
        Ok(())
    }
}
