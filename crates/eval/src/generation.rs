//! Generation tasks: a greedy answer to each row's prompt, scored against the row's
//! reference answers with SQuAD exact match and token F1 (`squad/evaluate-v2.0.py`: the best
//! over references) and ROUGE-L F-measure (`rouge-score`, best over references), each the
//! mean over items with a percentile-bootstrap interval.
//!
//! The prompt is a user message rendered with the model's chat template (the way an
//! instruction-tuned model is asked), or raw text with `chat = false`. Decoding is greedy and
//! stops at an end-of-turn token or `max_new_tokens`. Items run in parallel, collected in order.
use std::ops::ControlFlow;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;
use tuneguard_metrics::bootstrap::{Bootstrap, Interval};
use tuneguard_metrics::text::{exact_match, rouge_l, token_f1};
use tuneguard_model::chat::ChatMessage;
use tuneguard_model::generate::{generate, GenerateOptions, StopReason};
use tuneguard_model::LoadedModel;

use crate::rows::{field, item_id, kind, read_rows, row_error, Row, Template};
use crate::{EvalError, Result};

/// How the rows of a file become prompts and references.
pub struct GenerationSpec {
    pub prompt: Template,
    /// The field of the reference answer: a string or a list of strings.
    pub reference_field: String,
    /// Render the prompt with the chat template as a user message.
    pub chat: bool,
    /// System message for chat prompts (none: whatever the template adds).
    pub system: Option<String>,
    pub max_new_tokens: usize,
    pub id_field: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenItem {
    pub line: usize,
    pub id: String,
    /// The prompt as the row gives it (before the chat template).
    pub prompt: String,
    pub references: Vec<String>,
}

/// The items of `path`.
///
/// # Errors
/// `Io`, `Empty`; `Row` (file:line) for a row without the prompt's fields or a reference.
pub fn read_items(path: &Path, spec: &GenerationSpec) -> Result<Vec<GenItem>> {
    if spec.max_new_tokens == 0 {
        return Err(EvalError::Setting { flag: "--max-new-tokens", reason: "must be at least 1".into() });
    }
    read_rows(path)?.iter().map(|row| item(path, spec, row)).collect()
}

fn item(path: &Path, spec: &GenerationSpec, row: &Row) -> Result<GenItem> {
    let name = &spec.reference_field;
    let references = match field(path, row, name)? {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| row_error(path, row, format!("`{name}` holds a value that is not a string")))?,
        other => return Err(row_error(path, row, format!("`{name}` is {}, not a reference answer", kind(other)))),
    };
    let id = item_id(path, row, spec.id_field.as_deref())?;
    Ok(GenItem { line: row.line, id, prompt: spec.prompt.render(path, row)?, references })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenScore {
    pub id: String,
    pub output: String,
    /// New tokens, the stop token left out.
    pub tokens: Vec<u32>,
    /// Whether an end-of-turn token ended the answer (else `max_new_tokens` did).
    pub stopped: bool,
    pub exact_match: f64,
    pub token_f1: f64,
    pub rouge_l: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationReport {
    pub items: usize,
    pub exact_match: f64,
    pub token_f1: f64,
    pub rouge_l: f64,
    pub exact_match_interval: Option<Interval>,
    pub token_f1_interval: Option<Interval>,
    pub rouge_l_interval: Option<Interval>,
    pub per_item: Vec<GenScore>,
}

/// The prompt tokens of an item.
///
/// # Errors
/// `Setting` for `chat` on a model without a chat template; `Model` from rendering.
pub fn prompt_tokens(m: &LoadedModel, spec: &GenerationSpec, item: &GenItem) -> Result<Vec<u32>> {
    if !spec.chat {
        return Ok(m.tokenizer.encode(&item.prompt, true)?);
    }
    let template = m.chat_template.as_ref().ok_or_else(|| EvalError::Setting {
        flag: "chat",
        reason: "the model has no chat template; set chat = false (--no-chat)".into(),
    })?;
    let mut messages = Vec::new();
    if let Some(s) = &spec.system {
        messages.push(ChatMessage::new("system", s.clone()));
    }
    messages.push(ChatMessage::new("user", item.prompt.clone()));
    // The template writes its own special tokens into the text.
    Ok(m.tokenizer.encode(&template.render(&messages, true)?, false)?)
}

/// Generates and scores every item; `on_item` is called once per item done.
///
/// # Errors
/// As [`prompt_tokens`]; `Model` from generation (e.g. a prompt filling the context);
/// `Setting` for bootstrap settings out of range.
pub fn evaluate(
    m: &LoadedModel,
    items: &[GenItem],
    spec: &GenerationSpec,
    bootstrap: Option<Bootstrap>,
    on_item: &(dyn Fn() + Sync),
) -> Result<GenerationReport> {
    let opts =
        GenerateOptions { max_new_tokens: spec.max_new_tokens, stop_tokens: m.stop_tokens(), ..Default::default() };
    let scores: Vec<Result<GenScore>> = items
        .par_iter()
        .map(|it| {
            let r = answer(m, spec, &opts, it);
            on_item();
            r
        })
        .collect();
    summarize(scores.into_iter().collect::<Result<_>>()?, bootstrap)
}

fn answer(m: &LoadedModel, spec: &GenerationSpec, opts: &GenerateOptions, it: &GenItem) -> Result<GenScore> {
    let ids = prompt_tokens(m, spec, it)?;
    let g = generate(&m.model, &ids, opts, |_| ControlFlow::Continue(()))?;
    let stopped = g.stop == StopReason::StopToken;
    let mut tokens = g.tokens;
    if stopped {
        tokens.pop();
    }
    let output = m.tokenizer.decode(&tokens, true)?;
    let refs: Vec<&str> = it.references.iter().map(String::as_str).collect();
    Ok(GenScore {
        id: it.id.clone(),
        exact_match: exact_match(&output, &refs),
        token_f1: token_f1(&output, &refs),
        rouge_l: rouge_l(&output, &refs),
        output,
        tokens,
        stopped,
    })
}

/// The report of scored items.
///
/// # Errors
/// `Setting` without items or for bootstrap settings out of range.
pub fn summarize(scores: Vec<GenScore>, bootstrap: Option<Bootstrap>) -> Result<GenerationReport> {
    if scores.is_empty() {
        return Err(EvalError::Setting { flag: "the items", reason: "no item to score".into() });
    }
    let mean =
        |f: fn(&GenScore) -> f64, idx: &[usize]| idx.iter().map(|&i| f(&scores[i])).sum::<f64>() / idx.len() as f64;
    let all: Vec<usize> = (0..scores.len()).collect();
    let interval = |f: fn(&GenScore) -> f64| -> Result<Option<Interval>> {
        bootstrap
            .map(|b| b.interval(scores.len(), |idx| mean(f, idx)))
            .transpose()
            .map_err(|e| EvalError::Setting { flag: "--bootstrap", reason: e.to_string() })
    };
    type Score = fn(&GenScore) -> f64;
    let (em, f1, rl): (Score, Score, Score) = (|s| s.exact_match, |s| s.token_f1, |s| s.rouge_l);
    Ok(GenerationReport {
        items: scores.len(),
        exact_match: mean(em, &all),
        token_f1: mean(f1, &all),
        rouge_l: mean(rl, &all),
        exact_match_interval: interval(em)?,
        token_f1_interval: interval(f1)?,
        rouge_l_interval: interval(rl)?,
        per_item: scores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(em: f64, f1: f64, rl: f64) -> GenScore {
        GenScore {
            id: String::new(),
            output: String::new(),
            tokens: vec![],
            stopped: true,
            exact_match: em,
            token_f1: f1,
            rouge_l: rl,
        }
    }

    #[test]
    fn means_over_items() -> Result<()> {
        let r = summarize(
            vec![s(1.0, 1.0, 1.0), s(0.0, 0.5, 0.25)],
            Some(Bootstrap { resamples: 200, level: 0.9, seed: 1 }),
        )?;
        assert_eq!((r.exact_match, r.token_f1, r.rouge_l), (0.5, 0.75, 0.625));
        let i = r.token_f1_interval.expect("interval");
        assert!(i.low >= 0.5 && i.high <= 1.0 && i.estimate == 0.75, "{i:?}");
        assert!(summarize(vec![], None).is_err());
        Ok(())
    }
}
