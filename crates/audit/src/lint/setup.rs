//! Settings lints: packing without per-example attention, token ids the embedding does not
//! have, a validation set too small to measure anything.
use tuneguard_data::batch::plan_packing;
use tuneguard_data::tokenize::TokenizedExample;

use super::ids;
use super::prepare::{Item, Outcome, Prepared};
use super::{Lint, LintInput, Severity};

/// `packing_without_masks` (error): packing is on, the attention is plain causal, and some row
/// holds several examples, so each attends to the ones before it (the cross-contamination that
/// TRL's padding-free packing and flash-attention varlen kernels avoid with position ids).
pub(crate) fn packing_without_masks(input: &LintInput<'_>, items: &[Item]) -> Option<Lint> {
    if !input.packing || input.packing_uses_masks {
        return None;
    }
    let kept: Vec<TokenizedExample> = items.iter().filter(|i| i.is_kept()).map(|i| i.tokens.clone()).collect();
    let rows = match plan_packing(&kept, input.tokenize.max_len) {
        Ok(rows) => {
            let shared = rows.iter().filter(|r| r.len() > 1).count();
            if shared == 0 && !kept.is_empty() {
                return None;
            }
            format!("{shared} of {} packed rows hold several examples", rows.len())
        }
        Err(_) => "packed rows hold several examples".to_string(),
    };
    Some(Lint {
        id: ids::PACKING_WITHOUT_MASKS,
        severity: Severity::Error,
        message: format!(
            "packing is on without per-example attention masks: {rows} (max_len {}), and each example attends to \
             the unrelated ones before it in its row",
            input.tokenize.max_len
        ),
        fix: "give packed rows a block-diagonal causal mask (segment ids, position ids restarting per example), or \
              set data.packing = false"
            .into(),
    })
}

/// `vocab_mismatch` (error): the tokenizer has more ids than the model's embedding has rows, or
/// the data holds ids the embedding lacks (they index past its end, or train random rows).
pub(crate) fn vocab_mismatch(input: &LintInput<'_>, data: &Prepared) -> Option<Lint> {
    let (tok_vocab, model_vocab) = (input.tokenizer.vocab_size(), input.model_vocab_size);
    let out_of_range = |t: &TokenizedExample| t.input_ids.iter().filter(|&&i| i as usize >= model_vocab).count();
    let (mut examples, mut tokens, mut first) = (0usize, 0usize, None);
    for item in data.train.iter().chain(&data.val).filter(|i| i.is_kept()) {
        let n = out_of_range(&item.tokens);
        if n > 0 {
            examples += 1;
            tokens += n;
            first.get_or_insert(item.tokens.input_ids.iter().copied().find(|&i| i as usize >= model_vocab));
        }
    }
    if tok_vocab <= model_vocab && examples == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if tok_vocab > model_vocab {
        parts.push(format!("the tokenizer has {tok_vocab} ids but the model's embedding has {model_vocab} rows"));
    }
    if examples > 0 {
        let id = first.flatten().map_or(String::new(), |i| format!(" (first id {i})"));
        parts.push(format!("{tokens} tokens in {examples} examples have ids ≥ {model_vocab}{id}"));
    }
    Some(Lint {
        id: ids::VOCAB_MISMATCH,
        severity: Severity::Error,
        message: parts.join("; "),
        fix: "use the tokenizer that ships with the model; after adding tokens, resize the embedding (and lm_head) \
              and train those rows"
            .into(),
    })
}

/// `val_too_small` (warning): no held-out example survives tokenization, or fewer than one
/// batch, so the held-out loss (and early stopping on it) measures nothing or noise.
pub(crate) fn val_too_small(input: &LintInput<'_>, data: &Prepared) -> Option<Lint> {
    let kept = data.val.iter().filter(|i| i.is_kept()).count();
    let batch = input.batch_size.max(1);
    if kept >= batch {
        return None;
    }
    let count = |o| data.val.iter().filter(|i| i.outcome == o).count();
    let message = if data.val.is_empty() {
        "the validation set is empty: no held-out loss is measured, so overfitting goes unseen".to_string()
    } else if kept == 0 {
        let unrenderable = match count(Outcome::Unrenderable) {
            0 => String::new(),
            n => format!(", {n} the chat template cannot render"),
        };
        format!(
            "all {} held-out examples are dropped by tokenization ({} too long, {} with nothing supervised{unrenderable}): \
             the validation set is empty",
            data.val.len(),
            count(Outcome::TooLong),
            count(Outcome::NoSupervised)
        )
    } else {
        format!(
            "{kept} held-out examples (of {} before tokenization) are fewer than one batch of {batch}: the held-out \
             loss is noise",
            data.val.len()
        )
    };
    Some(Lint {
        id: ids::VAL_TOO_SMALL,
        severity: Severity::Warning,
        message,
        fix: format!("hold out at least {batch} examples that fit max_len {} (data.val_size)", input.tokenize.max_len),
    })
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{chat_item, input, parts, tokenizer, turn};
    use super::*;

    fn item(tok: &tuneguard_model::tokenizer::TextTokenizer, reply: &str, outcome: Outcome) -> Item {
        chat_item(0, parts(tok, &turn(reply, true)), outcome, &[reply])
    }

    #[test]
    fn packing_lint_needs_shared_rows_without_masks() {
        let Some(tok) = tokenizer() else { return };
        let short = vec![item(&tok, "Hi", Outcome::Kept), item(&tok, "Hi", Outcome::Kept)];
        let n = short[0].tokens.len();
        let on = |masks, max_len| LintInput {
            packing: true,
            packing_uses_masks: masks,
            tokenize: tuneguard_data::TokenizeOptions { max_len, ..input(&tok).tokenize },
            ..input(&tok)
        };
        assert_eq!(packing_without_masks(&input(&tok), &short), None);
        assert_eq!(packing_without_masks(&on(true, 64), &short), None);
        // Two examples of n tokens fit one row of 2n, not one of 2n - 1.
        let lint = packing_without_masks(&on(false, 2 * n), &short).expect("fires");
        assert_eq!((lint.id, lint.severity), (ids::PACKING_WITHOUT_MASKS, Severity::Error));
        assert!(lint.message.contains("1 of 1 packed rows hold several examples"), "{}", lint.message);
        assert_eq!(packing_without_masks(&on(false, 2 * n - 1), &short), None);
    }

    #[test]
    fn vocab_lint_on_tokenizer_size_and_data_ids() {
        let Some(tok) = tokenizer() else { return };
        let mut odd = item(&tok, "Hi", Outcome::Kept);
        odd.tokens.input_ids[1] = 50_000;
        let data = |train| Prepared { train, val: Vec::new(), train_failures: Vec::new() };
        assert_eq!(vocab_mismatch(&input(&tok), &data(vec![item(&tok, "Hi", Outcome::Kept)])), None);
        let lint = vocab_mismatch(&input(&tok), &data(vec![odd.clone()])).expect("fires");
        assert_eq!(lint.message, "1 tokens in 1 examples have ids ≥ 49152 (first id 50000)");
        let small = LintInput { model_vocab_size: 49_000, ..input(&tok) };
        let lint = vocab_mismatch(&small, &data(Vec::new())).expect("fires");
        assert_eq!(lint.message, "the tokenizer has 49152 ids but the model's embedding has 49000 rows");
        // A dropped example never reaches the model.
        odd.outcome = Outcome::TooLong;
        assert_eq!(vocab_mismatch(&input(&tok), &data(vec![odd])), None);
    }

    #[test]
    fn val_lint_on_empty_dropped_and_short() {
        let Some(tok) = tokenizer() else { return };
        let val = |outcomes: &[Outcome]| Prepared {
            train: Vec::new(),
            val: outcomes.iter().map(|&o| item(&tok, "Hi", o)).collect(),
            train_failures: Vec::new(),
        };
        let msg = |p: &Prepared| val_too_small(&input(&tok), p).map(|l| l.message);
        assert_eq!(msg(&val(&[Outcome::Kept; 4])), None);
        let empty = msg(&val(&[])).expect("fires");
        assert!(empty.starts_with("the validation set is empty"), "{empty}");
        let dropped = msg(&val(&[Outcome::TooLong, Outcome::NoSupervised, Outcome::TooLong])).expect("fires");
        assert!(dropped.starts_with("all 3 held-out examples are dropped by tokenization (2 too long, 1 with"));
        let short = msg(&val(&[Outcome::Kept, Outcome::Truncated, Outcome::TooLong])).expect("fires");
        assert!(short.starts_with("2 held-out examples (of 3 before tokenization) are fewer than one batch of 4"));
        let lint = val_too_small(&input(&tok), &val(&[])).expect("fires");
        assert_eq!((lint.id, lint.severity), (ids::VAL_TOO_SMALL, Severity::Warning));
    }
}
