//! Is each reply what is trained? Examples whose prompt fills `max_len` keep no supervised token
//! and are dropped without a word (`ChatTokenizer::tokenize_all` only counts them); masks built
//! from the wrong offsets supervise something other than the reply.
use tuneguard_data::IGNORE_INDEX;

use super::ids;
use super::prepare::{percent, snippet, supervised_runs, Ctx, Item, Outcome};
use super::{Lint, Severity};
use crate::error::Result;

/// `no_supervised_tokens`: training examples with nothing supervised after templating and
/// truncation. Error when no example is left to train on, else warning.
pub(crate) fn no_supervised_tokens(ctx: &Ctx<'_>, items: &[Item]) -> Option<Lint> {
    let empty: Vec<&Item> = items.iter().filter(|i| i.outcome == Outcome::NoSupervised).collect();
    let first = *empty.first()?;
    let never = empty.iter().filter(|i| i.first_supervised.is_none()).count();
    let longest_prompt = empty.iter().filter_map(|i| i.first_supervised).max();
    let severity = if items.iter().any(Item::is_kept) { Severity::Warning } else { Severity::Error };
    let why = match first.first_supervised {
        Some(p) => format!("whose prompt takes {p} of its {} tokens", first.full_len),
        None => "which has nothing supervised even before truncation".to_string(),
    };
    let message = format!(
        "{} of {} training examples ({}) have no supervised token after templating and truncation to \
         max_len {} and are dropped ({never} of them have none even before truncation); first: {}, {why}",
        empty.len(),
        items.len(),
        percent(empty.len(), items.len()),
        ctx.opts.max_len,
        ctx.row(first.index),
    );
    let mut fix = Vec::new();
    if let Some(p) = longest_prompt {
        fix.push(format!(
            "raise data.max_len above the longest such prompt ({p} tokens) or shorten the prompts; \
             data.overflow = \"drop\" leaves over-long examples out instead of cutting their answers"
        ));
    }
    if never > 0 {
        fix.push("make the chat template render the assistant replies (only they are supervised)".to_string());
    }
    Some(Lint { id: ids::NO_SUPERVISED_TOKENS, severity, message, fix: fix.join("; ") })
}

/// Text with all whitespace and the end-of-turn text removed, so template spacing and
/// `strip()` do not count as differences.
fn squash(s: &str, eot: &str) -> String {
    let s = if eot.is_empty() { s.to_string() } else { s.replace(eot, "") };
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// First position where a supervised label differs from its input id (labels must be
/// unshifted: the loss shifts them).
fn first_shifted(item: &Item) -> Option<usize> {
    let t = &item.tokens;
    (0..t.len()).find(|&k| t.labels[k] != IGNORE_INDEX && t.labels[k] != i64::from(t.input_ids[k]))
}

/// The supervised text of `item` (each run decoded without special tokens), and the first
/// reply it does not contain.
fn missing_reply(ctx: &Ctx<'_>, item: &Item) -> Result<Option<(String, String)>> {
    let mut text = String::new();
    for (s, e) in supervised_runs(&item.tokens.labels) {
        text.push_str(&ctx.tokenizer.decode(&item.tokens.input_ids[s..e], true)?);
        text.push('\n');
    }
    let got = squash(&text, &ctx.eot_text);
    Ok(item.replies.iter().find(|r| !got.contains(&squash(r, &ctx.eot_text))).map(|r| (r.clone(), text)))
}

/// `label_decode_mismatch` (error): untruncated kept examples whose supervised tokens do not
/// decode to their assistant replies (whitespace and the end-of-turn marker aside), or whose
/// labels differ from the input ids where supervised.
///
/// # Errors
/// `Model` when the tokenizer cannot decode.
pub(crate) fn label_decode_mismatch(ctx: &Ctx<'_>, items: &[Item]) -> Result<Option<Lint>> {
    let (mut checked, mut shifted, mut differs) = (0usize, 0usize, 0usize);
    let mut first: Option<String> = None;
    for item in items.iter().filter(|i| i.outcome == Outcome::Kept) {
        checked += 1;
        if let Some(k) = first_shifted(item) {
            shifted += 1;
            first.get_or_insert_with(|| {
                format!(
                    "{}: label {} at position {k} but input id {}",
                    ctx.row(item.index),
                    item.tokens.labels[k],
                    item.tokens.input_ids[k]
                )
            });
        } else if let Some((reply, text)) = missing_reply(ctx, item)? {
            differs += 1;
            first.get_or_insert_with(|| {
                format!("{}: reply {} but supervised {}", ctx.row(item.index), snippet(&reply, 50), snippet(&text, 50))
            });
        }
    }
    let Some(first) = first else { return Ok(None) };
    Ok(Some(Lint {
        id: ids::LABEL_DECODE_MISMATCH,
        severity: Severity::Error,
        message: format!(
            "{} of {checked} untruncated training examples are not supervised on their assistant reply \
             ({differs} decode to other text, {shifted} have labels that differ from the input ids); first: {first}",
            differs + shifted
        ),
        fix: "supervise exactly the tokens of each reply: the template must insert message content unchanged, the \
              mask must follow the rendered text's token offsets, and labels must equal the input ids (the loss \
              shifts them)"
            .into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{chat_item, ctx, parts, tokenizer, turn};
    use super::*;

    #[test]
    fn squash_ignores_whitespace_and_end_of_turn() {
        assert_eq!(squash(" a b\n<|im_end|>\n", "<|im_end|>"), "ab");
        assert_eq!(squash("a\tb", ""), "ab");
    }

    #[test]
    fn no_supervised_counts_share_and_prompt_length() {
        let Some(tok) = tokenizer() else { return };
        let ctx = ctx(&tok);
        let t = parts(&tok, &turn("Hi", true));
        let prompt = t.labels.iter().position(|&l| l != IGNORE_INDEX).expect("supervised");
        let cut = |mut it: Item| {
            it.tokens.labels.iter_mut().for_each(|l| *l = IGNORE_INDEX);
            it.outcome = Outcome::NoSupervised;
            it
        };
        let kept = chat_item(0, t.clone(), Outcome::Kept, &["Hi"]);
        let items = vec![kept.clone(), cut(chat_item(1, t.clone(), Outcome::Kept, &["Hi"])), kept.clone(), kept];
        let lint = no_supervised_tokens(&ctx, &items).expect("fires");
        assert_eq!((lint.id, lint.severity), (ids::NO_SUPERVISED_TOKENS, Severity::Warning));
        assert!(lint.message.starts_with("1 of 4 training examples (25.0%)"), "{}", lint.message);
        assert!(lint.message.contains(&format!("example 1, whose prompt takes {prompt} of its {} tokens", t.len())));
        assert!(lint.fix.contains(&format!("({prompt} tokens)")), "{}", lint.fix);
        let all = vec![cut(chat_item(0, t.clone(), Outcome::Kept, &["Hi"]))];
        assert_eq!(no_supervised_tokens(&ctx, &all).map(|l| l.severity), Some(Severity::Error));
        assert_eq!(no_supervised_tokens(&ctx, &items[..1]), None);
    }

    #[test]
    fn decode_mismatch_cases() {
        let Some(tok) = tokenizer() else { return };
        let ctx = ctx(&tok);
        let check = |p: &[(&str, bool)], reply: &str| {
            label_decode_mismatch(&ctx, &[chat_item(0, parts(&tok, p), Outcome::Kept, &[reply])]).expect("decode")
        };
        // Spacing and the end-of-turn marker do not count.
        assert_eq!(check(&turn(" Hello there ", true), "Hello there"), None);
        // The mask starts one word late: the reply's first word is not supervised.
        let late = [("<|im_start|>assistant\nHello", false), (" there", true), ("<|im_end|>", true)];
        let lint = check(&late, "Hello there").expect("fires");
        assert_eq!((lint.id, lint.severity), (ids::LABEL_DECODE_MISMATCH, Severity::Error));
        assert!(lint.message.contains("(1 decode to other text, 0 have labels"), "{}", lint.message);
        assert!(lint.message.contains("reply \"Hello there\" but supervised \" there\\n\""), "{}", lint.message);
        // Labels shifted left by one (pre-shifted before collation).
        let mut t = parts(&tok, &turn("Hello there", true));
        let n = t.labels.len();
        let ids = t.input_ids.clone();
        for k in 0..n - 1 {
            if t.labels[k] != IGNORE_INDEX {
                t.labels[k] = i64::from(ids[k + 1]);
            }
        }
        let lint = label_decode_mismatch(&ctx, &[chat_item(2, t, Outcome::Kept, &["Hello there"])]).expect("decode");
        assert!(lint.expect("fires").message.contains("0 decode to other text, 1 have labels"));
    }
}
