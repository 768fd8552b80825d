//! Pre-flight lint: the silent fine-tuning bugs that cost a whole run and raise no error —
//! the end-of-turn token left out of the labels, examples with nothing supervised after
//! truncation, a chat template the model was not tuned with, packing that lets examples see
//! each other, a tokenizer larger than the embedding, a validation set smaller than one batch.
//!
//! The lint renders and tokenizes the data the way training does ([`ChatTokenizer`] with the
//! same [`TokenizeOptions`]), but keeps what training silently drops so it can be counted.
//! The failure modes are the ones reported against Hugging Face transformers/TRL (e.g. pad = eos
//! masking every eos: huggingface/transformers#23530, huggingface/trl#976).
//!
//! - this file: [`Lint`], [`Severity`], [`LintInput`], [`run_lints`], [`lint_report_text`];
//! - `prepare`: tokenizing train/val examples and recording what the length policy did;
//! - `labels`: `eos_not_supervised`, `pad_is_eos_unsupervised`;
//! - `coverage`: `no_supervised_tokens`, `label_decode_mismatch`;
//! - `template`: `foreign_chat_template`, loading a data chat template from text or a file;
//! - `setup`: `packing_without_masks`, `vocab_mismatch`, `val_too_small`.
use std::path::Path;

use tuneguard_data::record::Example;
use tuneguard_data::tokenize::{ChatTokenizer, TokenizeOptions};
use tuneguard_model::chat::ChatTemplate;
use tuneguard_model::tokenizer::TextTokenizer;

use crate::error::Result;

mod coverage;
mod labels;
mod prepare;
mod setup;
mod template;
#[cfg(test)]
mod testutil;

pub use template::{chat_template_from_path, chat_template_from_str};

/// Stable lint ids (the `[id]` of the report; never renamed).
pub mod ids {
    pub const EOS_NOT_SUPERVISED: &str = "eos_not_supervised";
    pub const PAD_IS_EOS_UNSUPERVISED: &str = "pad_is_eos_unsupervised";
    pub const NO_SUPERVISED_TOKENS: &str = "no_supervised_tokens";
    pub const LABEL_DECODE_MISMATCH: &str = "label_decode_mismatch";
    pub const FOREIGN_CHAT_TEMPLATE: &str = "foreign_chat_template";
    pub const PACKING_WITHOUT_MASKS: &str = "packing_without_masks";
    pub const VOCAB_MISMATCH: &str = "vocab_mismatch";
    pub const VAL_TOO_SMALL: &str = "val_too_small";
    /// Every id, in report order within a severity.
    pub const ALL: [&str; 8] = [
        EOS_NOT_SUPERVISED,
        PAD_IS_EOS_UNSUPERVISED,
        NO_SUPERVISED_TOKENS,
        LABEL_DECODE_MISMATCH,
        FOREIGN_CHAT_TEMPLATE,
        PACKING_WITHOUT_MASKS,
        VOCAB_MISMATCH,
        VAL_TOO_SMALL,
    ];
}

/// [`Lint`] and [`Severity`] are plain data of `summary.json` (`lints`), defined in
/// tuneguard-records.
pub use tuneguard_records::{Lint, Severity};

/// Everything the lint looks at: the tokenizer, the model's facts, the data as loaded (before
/// templating) and the recipe's settings. Nothing here depends on the trainer.
#[derive(Debug, Clone, Copy)]
pub struct LintInput<'a> {
    /// The tokenizer the data is tokenized with.
    pub tokenizer: &'a TextTokenizer,
    /// Rows of the model's token embedding (`ModelConfig::vocab_size`).
    pub model_vocab_size: usize,
    /// The model's own chat template, if it has one.
    pub model_chat_template: Option<&'a ChatTemplate>,
    /// The template the data is rendered with; `None` means the model's own. Build one from a
    /// recipe's Jinja text or file with [`chat_template_from_str`] / [`chat_template_from_path`].
    pub data_chat_template: Option<&'a ChatTemplate>,
    /// The text closing each supervised reply; `None` means the tokenizer's eos text (as
    /// [`ChatTokenizer::new`]).
    pub end_of_turn: Option<&'a str>,
    /// Training examples, in the order training sees them.
    pub train: &'a [Example],
    /// 1-based source line of each training example (`LoadedData::lines`, reordered with the
    /// examples), to name rows in messages; `None` names them by 0-based index.
    pub train_lines: Option<&'a [usize]>,
    /// The training data file, named in messages.
    pub train_path: Option<&'a Path>,
    /// Held-out examples before tokenization.
    pub val: &'a [Example],
    /// The length policy training uses (`data.max_len`, `data.overflow`).
    pub tokenize: TokenizeOptions,
    /// Whether several examples share a row (`data.packing`).
    pub packing: bool,
    /// Whether packed rows get per-example (block-diagonal) attention. tuneguard's own
    /// packing always does; set false for settings that turn it off.
    pub packing_uses_masks: bool,
    /// The pad id the collator writes; usually `tokenizer.pad_id()`.
    pub pad_token_id: Option<u32>,
    /// Examples per micro-batch (`train.batch_size`).
    pub batch_size: usize,
}

/// Runs every lint; findings come errors first, then in [`ids::ALL`] order.
///
/// Training examples that cannot be rendered are left out of the findings (training drops them
/// as rows of their own, `template_error`).
///
/// # Errors
/// `Data` (`Tokenize`, naming the first example) when no training example can be rendered or
/// tokenized at all (a template that raises or renders a prefix inconsistently for every one,
/// or chat examples and no template; training would stop too), or `max_len` is 0;
/// `Data` (`InvalidOption`) when there is no end-of-turn text (no `end_of_turn` and no eos).
pub fn run_lints(input: &LintInput<'_>) -> Result<Vec<Lint>> {
    // Without any template, text examples still work; chat examples fail as in training.
    let fallback;
    let template = match input.data_chat_template.or(input.model_chat_template) {
        Some(t) => t,
        None => {
            fallback = template::no_template(input.tokenizer)?;
            &fallback
        }
    };
    let tok = match input.end_of_turn {
        Some(eot) => ChatTokenizer::with_end_of_turn(input.tokenizer, template, eot.to_string()),
        None => ChatTokenizer::new(input.tokenizer, template)?,
    }
    .allow_missing_end_of_turn();
    let data = prepare::prepare(&tok, input)?;
    if let (false, Some((index, reason))) = (input.train.is_empty(), data.train_failures.first()) {
        if data.train_failures.len() == input.train.len() {
            return Err(tuneguard_data::DataError::Tokenize { example: *index, reason: reason.clone() }.into());
        }
    }
    let ctx = prepare::Ctx::new(input, tok.end_of_turn());
    let mut out: Vec<Lint> = [
        labels::eos_not_supervised(&ctx, &data.train),
        labels::pad_is_eos_unsupervised(&ctx, &data.train),
        coverage::no_supervised_tokens(&ctx, &data.train),
        coverage::label_decode_mismatch(&ctx, &data.train)?,
        template::foreign_chat_template(input.model_chat_template, input.data_chat_template),
        setup::packing_without_masks(input, &data.train),
        setup::vocab_mismatch(input, &data),
        setup::val_too_small(input, &data),
    ]
    .into_iter()
    .flatten()
    .collect();
    out.sort_by_key(|l| l.severity);
    Ok(out)
}

/// One line per finding: `error[eos_not_supervised]: message — fix: ...`.
pub fn lint_report_text(lints: &[Lint]) -> String {
    lints.iter().map(|l| format!("{}[{}]: {} — fix: {}\n", l.severity.name(), l.id, l.message, l.fix)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_and_severity_order() {
        let lint = |id, severity| Lint { id, severity, message: "m".into(), fix: "f".into() };
        let lints = [lint(ids::VAL_TOO_SMALL, Severity::Warning), lint(ids::EOS_NOT_SUPERVISED, Severity::Error)];
        assert_eq!(
            lint_report_text(&lints),
            "warning[val_too_small]: m — fix: f\nerror[eos_not_supervised]: m — fix: f\n"
        );
        let mut sorted = lints.to_vec();
        sorted.sort_by_key(|l| l.severity);
        assert_eq!(sorted[0].id, ids::EOS_NOT_SUPERVISED);
        assert_eq!(lint_report_text(&[]), "");
        let json = serde_json::to_string(&lints[1]).unwrap_or_default();
        assert_eq!(json, r#"{"id":"eos_not_supervised","severity":"error","message":"m","fix":"f"}"#);
    }

    #[test]
    fn without_any_template_text_is_linted_and_chat_fails() {
        let Some(tok) = testutil::tokenizer() else { return };
        let text = [Example::Text("Some plain text to learn.".into())];
        let val = vec![text[0].clone(); 4];
        let input = LintInput { train: &text, val: &val, ..testutil::input(&tok) };
        assert_eq!(run_lints(&input).map_err(|e| e.to_string()), Ok(vec![]));
        let chat = [Example::Chat(vec![
            tuneguard_model::chat::ChatMessage::new("user", "Hi"),
            tuneguard_model::chat::ChatMessage::new("assistant", "Hello"),
        ])];
        let err = run_lints(&LintInput { train: &chat, ..input }).expect_err("no template");
        assert!(err.to_string().contains("the model has no chat template"), "{err}");
    }
}
