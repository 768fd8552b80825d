//! Is the end-of-turn token trained? A model that never sees its end-of-turn (or eos) token
//! in the labels never learns to stop. Two ways it goes missing: the template does not write it
//! after the reply, or the mask leaves it out — e.g. with pad = eos, transformers'
//! `DataCollatorForLanguageModeling` masks every eos (huggingface/transformers#23530,
//! huggingface/trl#976).
use super::ids;
use super::prepare::{snippet, supervised_runs, Ctx, Item, Outcome};
use super::{Lint, Severity};

/// How a reply's end-of-turn token is absent from its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Absent {
    /// In the input right after the reply, but not supervised.
    Masked,
    /// Not after the reply at all.
    Missing,
}

/// The first supervised run (reply) of `item` that does not contain `close` among its labels,
/// as `(run, how)`. The last run of a truncated example is not judged: the cut removed its end.
fn first_unclosed(item: &Item, close: u32) -> Option<((usize, usize), Absent)> {
    let mut runs = supervised_runs(&item.tokens.labels);
    if item.outcome == Outcome::Truncated {
        runs.pop();
    }
    runs.into_iter().find_map(|(s, e)| {
        if item.tokens.labels[s..e].contains(&i64::from(close)) {
            return None;
        }
        let how = if item.tokens.input_ids.get(e) == Some(&close) { Absent::Masked } else { Absent::Missing };
        Some(((s, e), how))
    })
}

/// `eos_not_supervised` (error): kept examples with a reply whose closing token (end-of-turn for
/// chat, eos for plain text) is not supervised.
pub(crate) fn eos_not_supervised(ctx: &Ctx<'_>, items: &[Item]) -> Option<Lint> {
    let (mut checked, mut masked, mut missing) = (0usize, 0usize, 0usize);
    let mut first = None;
    for item in items.iter().filter(|i| i.is_kept()) {
        let Some(close) = ctx.closing_id(item) else { continue };
        checked += 1;
        let Some((run, how)) = first_unclosed(item, close) else { continue };
        match how {
            Absent::Masked => masked += 1,
            Absent::Missing => missing += 1,
        }
        first.get_or_insert((item, run));
    }
    let (item, (s, e)) = first?;
    let tail = ctx.tokenizer.decode(&item.tokens.input_ids[s.max(e.saturating_sub(8))..e], false).unwrap_or_default();
    let token = format!("`{}` (id {})", ctx.eot_text, ctx.eot_id.map_or("?".into(), |i| i.to_string()));
    let message = format!(
        "{} of {checked} training examples have a reply whose end-of-turn token {token} is not in the labels \
         ({masked} masked, {missing} not written after the reply), so the model does not learn to stop; \
         first: {}, supervised text ends {}",
        masked + missing,
        ctx.row(item.index),
        snippet(&tail, 60),
    );
    let mut fix = Vec::new();
    if missing > 0 {
        fix.push(format!(
            "make the chat template write {token} right after every assistant reply, as the model's own template \
             does (for a base model whose eos differs from the template's end-of-turn, set the end-of-turn to the \
             token the template writes)"
        ));
    }
    if masked > 0 {
        fix.push(format!(
            "end the supervised span after {token}, not before it (close `{{% generation %}}` after it; do not \
             mask padding by token id when pad = eos)"
        ));
    }
    Some(Lint { id: ids::EOS_NOT_SUPERVISED, severity: Severity::Error, message, fix: fix.join("; ") })
}

/// `pad_is_eos_unsupervised` (warning): pad = eos while eos is absent from the labels of kept,
/// untruncated examples. With pad = eos, any collator that masks padding by token id also masks
/// eos, which is how eos most often goes missing.
pub(crate) fn pad_is_eos_unsupervised(ctx: &Ctx<'_>, items: &[Item]) -> Option<Lint> {
    let (Some(pad), Some(eos)) = (ctx.pad_id, ctx.eos_id) else { return None };
    if pad != eos {
        return None;
    }
    let whole: Vec<&Item> = items.iter().filter(|i| i.outcome == Outcome::Kept).collect();
    let lacking: Vec<&&Item> = whole.iter().filter(|i| !i.tokens.labels.contains(&i64::from(eos))).collect();
    let first = lacking.first()?;
    let name = ctx.tokenizer.id_to_token(eos).unwrap_or_default();
    Some(Lint {
        id: ids::PAD_IS_EOS_UNSUPERVISED,
        severity: Severity::Warning,
        message: format!(
            "the pad token is the eos token `{name}` (id {eos}) and eos is not in the labels of {} of {} \
             untruncated training examples (first: {}); collators that mask padding by token id mask every eos too",
            lacking.len(),
            whole.len(),
            ctx.row(first.index)
        ),
        fix: "supervise eos at the end of every example and mask padding by position (attention mask), not by \
              token id, or give the tokenizer a pad token other than eos"
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{chat_item, ctx, parts, tokenizer, turn};
    use super::*;

    #[test]
    fn eos_lint_tells_masked_from_missing() {
        let Some(tok) = tokenizer() else { return };
        let ctx = ctx(&tok);
        let item = |p: &[(&str, bool)], outcome| chat_item(3, parts(&tok, p), outcome, &["Hi there"]);
        let two_turns = [turn("Hi there", true), turn("Bye", false)].concat();
        // (parts, outcome) → (masked, missing) counts in the message, or None.
        type Case<'a> = (Vec<(&'a str, bool)>, Outcome, Option<&'a str>);
        let cases: Vec<Case> = vec![
            (turn("Hi there", true), Outcome::Kept, None),
            (turn("Hi there", false), Outcome::Kept, Some("(1 masked, 0 not written")),
            (vec![("<|im_start|>assistant\n", false), ("Hi there\n", true)], Outcome::Kept, Some("(0 masked, 1 not")),
            (two_turns.clone(), Outcome::Kept, Some("(1 masked, 0 not written")),
            // The cut removed the last reply's end: not judged.
            (two_turns, Outcome::Truncated, None),
            (turn("Hi there", false), Outcome::NoSupervised, None),
        ];
        for (p, outcome, want) in cases {
            let lint = eos_not_supervised(&ctx, &[item(&p, outcome)]);
            match want {
                None => assert_eq!(lint, None, "{p:?}"),
                Some(counts) => {
                    let lint = lint.expect("lint fires");
                    assert_eq!((lint.id, lint.severity), (ids::EOS_NOT_SUPERVISED, Severity::Error));
                    assert!(lint.message.starts_with("1 of 1 training examples"), "{}", lint.message);
                    assert!(lint.message.contains(counts), "{}", lint.message);
                    assert!(lint.message.contains("first: example 3"), "{}", lint.message);
                }
            }
        }
    }

    #[test]
    fn eos_lint_on_plain_text_wants_eos() {
        let Some(tok) = tokenizer() else { return };
        let ctx = ctx(&tok);
        let text = |p: &[(&str, bool)]| super::super::prepare::Item {
            chat: false,
            ..chat_item(0, parts(&tok, p), Outcome::Kept, &["Some text."])
        };
        assert_eq!(eos_not_supervised(&ctx, &[text(&[("Some text.<|im_end|>", true)])]), None);
        let lint = eos_not_supervised(&ctx, &[text(&[("Some text.", true)])]).expect("fires");
        assert!(lint.message.contains("ends \"Some text.\""), "{}", lint.message);
    }

    #[test]
    fn pad_lint_needs_pad_equal_to_eos_and_eos_unsupervised() {
        let Some(tok) = tokenizer() else { return };
        let base = ctx(&tok);
        let items = |eot| vec![chat_item(0, parts(&tok, &turn("Hi", eot)), Outcome::Kept, &["Hi"])];
        let other_pad = Ctx { pad_id: Some(0), ..ctx(&tok) };
        assert_eq!(pad_is_eos_unsupervised(&base, &items(true)), None);
        assert_eq!(pad_is_eos_unsupervised(&other_pad, &items(false)), None);
        let lint = pad_is_eos_unsupervised(&base, &items(false)).expect("fires");
        assert_eq!((lint.id, lint.severity), (ids::PAD_IS_EOS_UNSUPERVISED, Severity::Warning));
        assert!(lint.message.contains("`<|im_end|>` (id 2)") && lint.message.contains("1 of 1"), "{}", lint.message);
    }
}
