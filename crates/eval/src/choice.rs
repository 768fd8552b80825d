//! Multiple-choice (and classification) tasks scored by log-likelihood, with
//! lm-evaluation-harness `loglikelihood` semantics (`lm_eval/models/huggingface.py`,
//! `lm_eval/api/metrics.py`):
//!
//! - each choice is the continuation `delimiter + choice` of the prompt (`target_delimiter`,
//!   `" "` by default); the continuation's tokens are the tokens of `prompt + continuation`
//!   after the prompt's own tokens (trailing whitespace of the prompt moves into the
//!   continuation first), no special tokens; an empty prompt is preceded by the EOS token;
//! - a choice's score is the summed log-probability of its tokens, each predicted from the
//!   prompt and the continuation's earlier tokens;
//! - `accuracy` (lm-eval `acc`) takes the highest score; `acc_norm` divides each score by the
//!   choice's length in characters first.
//!
//! The prompt goes through the model once per item and each choice continues from a copy of
//! its KV cache, with logits only for the rows that score a token. Items run in parallel and
//! are collected in order. Per-class precision/recall/F1 and the confusion matrix use the
//! choice index as the class.
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;
use tuneguard_metrics::bootstrap::{Bootstrap, Interval};
use tuneguard_metrics::classification::{accuracy, averaged, confusion_matrix, per_class, Average, ZeroDivision};
use tuneguard_model::llama::Llama;
use tuneguard_model::ops::log_sum_exp;
use tuneguard_model::tokenizer::TextTokenizer;

use crate::rows::{field, item_id, kind, read_rows, row_error, Row, Template};
use crate::{EvalError, Result};

/// Where each row's choices come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Choices {
    /// The same choices for every row (a classification: SST-2's `["negative", "positive"]`).
    Fixed(Vec<String>),
    /// A row field holding a list of strings.
    Field(String),
}

/// How the rows of a file become items.
pub struct ChoiceSpec {
    /// lm-eval `doc_to_text`.
    pub prompt: Template,
    pub choices: Choices,
    /// The field of the right choice: its 0-based index, or its text.
    pub label_field: String,
    /// lm-eval `target_delimiter`, put between the prompt and each choice.
    pub delimiter: String,
    /// A field naming the row in the per-item output (none: the line number).
    pub id_field: Option<String>,
}

/// One question.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub line: usize,
    pub id: String,
    pub prompt: String,
    pub choices: Vec<String>,
    pub target: usize,
}

/// The items of `path` as `spec` reads them.
///
/// # Errors
/// `Io`, `Empty`; `Row` (file:line) for a row without the fields the spec names, fewer than
/// two choices, a choice that is not a string, or a label that is not one of the choices.
pub fn read_items(path: &Path, spec: &ChoiceSpec) -> Result<Vec<Item>> {
    if let Choices::Fixed(c) = &spec.choices {
        if c.len() < 2 {
            return Err(EvalError::Setting {
                flag: "choices",
                reason: format!("needs at least two choices, got {}", c.len()),
            });
        }
    }
    read_rows(path)?.iter().map(|row| item(path, spec, row)).collect()
}

fn item(path: &Path, spec: &ChoiceSpec, row: &Row) -> Result<Item> {
    let choices = match &spec.choices {
        Choices::Fixed(c) => c.clone(),
        Choices::Field(name) => match field(path, row, name)? {
            Value::Array(a) if a.len() >= 2 => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| row_error(path, row, format!("`{name}` holds a value that is not a string")))?,
            Value::Array(a) => {
                return Err(row_error(
                    path,
                    row,
                    format!("`{name}` has {} choice(s); at least two are needed", a.len()),
                ))
            }
            other => return Err(row_error(path, row, format!("`{name}` is {}, not a list of choices", kind(other)))),
        },
    };
    let target = match field(path, row, &spec.label_field)? {
        Value::Number(n) => n.as_u64().map(|i| i as usize).filter(|&i| i < choices.len()).ok_or_else(|| {
            row_error(path, row, format!("`{}` is {n}, not a choice index below {}", spec.label_field, choices.len()))
        })?,
        Value::String(s) => choices.iter().position(|c| c == s).ok_or_else(|| {
            row_error(path, row, format!("`{}` is {s:?}, not one of the choices {choices:?}", spec.label_field))
        })?,
        other => {
            return Err(row_error(
                path,
                row,
                format!("`{}` is {}, not a choice index or text", spec.label_field, kind(other)),
            ))
        }
    };
    let id = item_id(path, row, spec.id_field.as_deref())?;
    Ok(Item { line: row.line, id, prompt: spec.prompt.render(path, row)?, choices, target })
}

/// One item's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemScore {
    pub id: String,
    pub target: usize,
    /// Summed log-probability of each choice's tokens, nats.
    pub loglikelihood: Vec<f64>,
    /// Tokens in each choice's continuation.
    pub tokens: Vec<usize>,
    /// Whether each choice is the greedy continuation (lm-eval `is_greedy`).
    pub is_greedy: Vec<bool>,
    /// argmax of `loglikelihood`.
    pub pred: usize,
    /// argmax of `loglikelihood` / characters of the choice.
    pub pred_norm: usize,
}

/// The prompt's tokens and each choice's continuation tokens, as lm-eval splits them.
///
/// # Errors
/// `Model` from the tokenizer.
pub fn encode(
    tokenizer: &TextTokenizer,
    prompt: &str,
    delimiter: &str,
    choices: &[String],
) -> Result<(Vec<u32>, Vec<Vec<u32>>)> {
    let trimmed = prompt.trim_end();
    let moved = &prompt[trimmed.len()..];
    let ctx = tokenizer.encode(trimmed, false)?;
    let mut conts = Vec::with_capacity(choices.len());
    for c in choices {
        let cont = format!("{moved}{delimiter}{c}");
        let whole = tokenizer.encode(&format!("{trimmed}{cont}"), false)?;
        conts.push(whole.get(ctx.len()..).unwrap_or_default().to_vec());
    }
    Ok((ctx, conts))
}

/// One item ready for the model: its prompt's tokens and each choice's continuation tokens.
struct Encoded {
    ctx: Vec<u32>,
    conts: Vec<Vec<u32>>,
}

impl Encoded {
    /// The sequences to run and the first position whose logits each needs, as
    /// lm-evaluation-harness requests them: one (prompt + continuation without its last token)
    /// per choice, scored from the prompt's last position. When every continuation is one token,
    /// the prompt alone serves all choices.
    fn requests(&self) -> Vec<(Vec<u32>, usize)> {
        let from = self.ctx.len() - 1;
        if self.conts.iter().all(|c| c.len() == 1) {
            return vec![(self.ctx.clone(), from)];
        }
        self.conts.iter().map(|c| ([&self.ctx[..], &c[..c.len() - 1]].concat(), from)).collect()
    }
}

/// Encodes one item and checks that it can be scored.
fn prepare(model: &Llama, tokenizer: &TextTokenizer, path: &Path, item: &Item, delimiter: &str) -> Result<Encoded> {
    let bad = |reason: String| EvalError::Row { path: PathBuf::from(path), line: item.line, reason };
    let (mut ctx, conts) = encode(tokenizer, &item.prompt, delimiter, &item.choices)?;
    if ctx.is_empty() {
        ctx.push(
            tokenizer
                .eos_id()
                .ok_or_else(|| bad("the prompt is empty and the tokenizer has no EOS token to start from".into()))?,
        );
    }
    let context = model.config.max_position_embeddings;
    for (c, cont) in item.choices.iter().zip(&conts) {
        if cont.is_empty() {
            return Err(bad(format!("choice {c:?} adds no token to the prompt")));
        }
        if ctx.len() + cont.len() - 1 > context {
            return Err(bad(format!(
                "{} tokens exceed the model's context length ({context} tokens)",
                ctx.len() + cont.len() - 1
            )));
        }
    }
    Ok(Encoded { ctx, conts })
}

/// An item's scores from the logits of its [`Encoded::requests`].
fn score(item: &Item, e: &Encoded, logits: &[Vec<f32>], v: usize) -> ItemScore {
    let mut lls = Vec::with_capacity(e.conts.len());
    let mut greedy = Vec::with_capacity(e.conts.len());
    for (ci, cont) in e.conts.iter().enumerate() {
        // Row i predicts cont[i]; a shared prompt-only request has the one row every choice needs.
        let rows = logits.get(ci).unwrap_or(&logits[0]);
        let mut ll = 0.0;
        let mut is_greedy = true;
        for (row, &tok) in rows.chunks(v).zip(cont) {
            ll += row[tok as usize] as f64 - log_sum_exp(row);
            is_greedy &= tuneguard_model::generate::argmax(row) == tok;
        }
        lls.push(ll);
        greedy.push(is_greedy);
    }
    let norm: Vec<f64> = lls.iter().zip(&item.choices).map(|(l, c)| l / c.chars().count().max(1) as f64).collect();
    ItemScore {
        id: item.id.clone(),
        target: item.target,
        tokens: e.conts.iter().map(Vec::len).collect(),
        pred: argmax(&lls),
        pred_norm: argmax(&norm),
        loglikelihood: lls,
        is_greedy: greedy,
    }
}

/// The scores of `items`, in order; their requests run in batched forward passes
/// ([`crate::batch`]), the passes in parallel. `on_item` is called once per item scored.
///
/// # Errors
/// `Row` (the first in file order, before any forward pass) when a choice has no token of its
/// own or an item does not fit the model's context; `Model` from the forward pass.
pub fn score_items(
    model: &Llama,
    tokenizer: &TextTokenizer,
    path: &Path,
    items: &[Item],
    delimiter: &str,
    on_item: &(dyn Fn() + Sync),
) -> Result<Vec<ItemScore>> {
    let encoded: Vec<Encoded> =
        items.iter().map(|it| prepare(model, tokenizer, path, it, delimiter)).collect::<Result<_>>()?;
    let requests: Vec<Vec<(Vec<u32>, usize)>> = encoded.iter().map(Encoded::requests).collect();
    let sizes: Vec<usize> = requests.iter().map(|r| r.iter().map(|(s, _)| s.len()).sum()).collect();
    let v = model.config.vocab_size;
    let scored: Vec<Result<Vec<ItemScore>>> = crate::batch::groups(&sizes, crate::batch::BATCH_TOKENS)
        .into_par_iter()
        .map(|g| {
            let asks: Vec<(&[u32], usize)> =
                requests[g.clone()].iter().flatten().map(|(s, from)| (s.as_slice(), *from)).collect();
            let mut logits = model.forward_batch(&asks)?.into_iter();
            let mut out = Vec::with_capacity(g.len());
            for i in g {
                let mine: Vec<Vec<f32>> = logits.by_ref().take(requests[i].len()).collect();
                out.push(score(&items[i], &encoded[i], &mine, v));
                on_item();
            }
            Ok(out)
        })
        .collect();
    Ok(scored.into_iter().collect::<Result<Vec<_>>>()?.concat())
}

/// The scores of one item (see [`score_items`]).
///
/// # Errors
/// As [`score_items`].
pub fn score_item(
    model: &Llama,
    tokenizer: &TextTokenizer,
    path: &Path,
    item: &Item,
    delimiter: &str,
) -> Result<ItemScore> {
    let mut s = score_items(model, tokenizer, path, std::slice::from_ref(item), delimiter, &|| ())?;
    Ok(s.remove(0))
}

/// The first index of the largest value (numpy's `argmax`).
fn argmax(xs: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

/// A multiple-choice task's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChoiceReport {
    pub items: usize,
    pub accuracy: f64,
    pub acc_norm: f64,
    /// Macro-averaged F1 over the classes (choice indices).
    pub f1: f64,
    pub accuracy_interval: Option<Interval>,
    pub acc_norm_interval: Option<Interval>,
    pub f1_interval: Option<Interval>,
    /// Class names: the fixed choices, or `choice 0`, `choice 1`...
    pub classes: Vec<String>,
    pub precision_per_class: Vec<f64>,
    pub recall_per_class: Vec<f64>,
    pub f1_per_class: Vec<f64>,
    pub support: Vec<usize>,
    /// `confusion[i][j]`: items of class i predicted as class j.
    pub confusion: Vec<Vec<usize>>,
    pub per_item: Vec<ItemScore>,
}

/// Scores every item; `on_item` is called once per item done (for a progress bar).
///
/// # Errors
/// As [`score_item`]; `Setting` for bootstrap settings out of range.
pub fn evaluate(
    model: &Llama,
    tokenizer: &TextTokenizer,
    path: &Path,
    items: &[Item],
    spec: &ChoiceSpec,
    bootstrap: Option<Bootstrap>,
    on_item: &(dyn Fn() + Sync),
) -> Result<ChoiceReport> {
    let scores = score_items(model, tokenizer, path, items, &spec.delimiter, on_item)?;
    summarize(scores, &spec.choices, bootstrap)
}

/// The report of scored items.
///
/// # Errors
/// `Empty` (as a `Setting`) without items; `Setting` for bootstrap settings out of range.
pub fn summarize(scores: Vec<ItemScore>, choices: &Choices, bootstrap: Option<Bootstrap>) -> Result<ChoiceReport> {
    let metric = |e: tuneguard_metrics::MetricsError| EvalError::Setting { flag: "the items", reason: e.to_string() };
    let n_classes = scores.iter().map(|s| s.loglikelihood.len()).max().unwrap_or(0);
    let classes: Vec<usize> = (0..n_classes).collect();
    let y: Vec<usize> = scores.iter().map(|s| s.target).collect();
    let pred: Vec<usize> = scores.iter().map(|s| s.pred).collect();
    let pred_norm: Vec<usize> = scores.iter().map(|s| s.pred_norm).collect();
    let pc = per_class(&y, &pred, Some(&classes), 1.0, ZeroDivision::Zero).map_err(metric)?;
    let macro_f1 = |y: &[usize], p: &[usize]| {
        averaged(y, p, Some(&classes), &Average::Macro, 1.0, ZeroDivision::Zero).map(|s| s.f_score)
    };
    let interval = |stat: &dyn Fn(&[usize]) -> f64| -> Result<Option<Interval>> {
        bootstrap
            .map(|b| b.interval(scores.len(), stat))
            .transpose()
            .map_err(|e| EvalError::Setting { flag: "--bootstrap", reason: e.to_string() })
    };
    let pick = |idx: &[usize], v: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let acc_on = |v: &[usize], idx: &[usize]| accuracy(&pick(idx, &y), &pick(idx, v)).unwrap_or(f64::NAN);
    let report = ChoiceReport {
        items: scores.len(),
        accuracy: accuracy(&y, &pred).map_err(metric)?,
        acc_norm: accuracy(&y, &pred_norm).map_err(metric)?,
        f1: macro_f1(&y, &pred).map_err(metric)?,
        accuracy_interval: interval(&|idx: &[usize]| acc_on(&pred, idx))?,
        acc_norm_interval: interval(&|idx: &[usize]| acc_on(&pred_norm, idx))?,
        f1_interval: interval(&|idx: &[usize]| macro_f1(&pick(idx, &y), &pick(idx, &pred)).unwrap_or(f64::NAN))?,
        classes: match choices {
            Choices::Fixed(c) => c.clone(),
            Choices::Field(_) => classes.iter().map(|i| format!("choice {i}")).collect(),
        },
        precision_per_class: pc.precision,
        recall_per_class: pc.recall,
        f1_per_class: pc.f_score,
        support: pc.support,
        confusion: confusion_matrix(&y, &pred, Some(&classes)).map_err(metric)?.1,
        per_item: scores,
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(target: usize, ll: [f64; 2], choices: [&str; 2]) -> ItemScore {
        let norm = [ll[0] / choices[0].len() as f64, ll[1] / choices[1].len() as f64];
        ItemScore {
            id: String::new(),
            target,
            loglikelihood: ll.to_vec(),
            tokens: vec![1, 1],
            is_greedy: vec![false, false],
            pred: argmax(&ll),
            pred_norm: argmax(&norm),
        }
    }

    #[test]
    fn acc_and_acc_norm_by_hand() -> Result<()> {
        // Choices "no" (2 chars) and "maybe" (5 chars): ll −2 vs −3 picks "no"; per character
        // −1 vs −0.6 picks "maybe".
        let c = ["no", "maybe"];
        let scores = vec![score(1, [-2.0, -3.0], c), score(0, [-1.0, -4.0], c), score(1, [-5.0, -1.0], c)];
        assert_eq!((scores[0].pred, scores[0].pred_norm), (0, 1));
        let r = summarize(scores, &Choices::Fixed(c.map(String::from).to_vec()), None)?;
        assert!((r.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.acc_norm, 1.0); // per character, every item is right
        assert_eq!(r.confusion, [[1, 0], [1, 1]]);
        // class 0: tp 1, fp 1 → precision 0.5, recall 1; class 1: precision 1, recall 0.5.
        assert_eq!(r.precision_per_class, [0.5, 1.0]);
        assert_eq!(r.recall_per_class, [1.0, 0.5]);
        assert!((r.f1 - 2.0 / 3.0).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn ties_take_the_first_choice() {
        assert_eq!(argmax(&[-1.0, -1.0, -2.0]), 0);
        assert_eq!(argmax(&[-3.0, -1.0, -1.0]), 1);
    }
}
