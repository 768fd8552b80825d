//! Tokenizing the data as training would, keeping what the length policy drops.
use std::path::Path;

use rayon::prelude::*;

use tuneguard_data::record::Example;
use tuneguard_data::tokenize::{ChatTokenizer, Overflow, TokenizeOptions, TokenizedExample};
use tuneguard_model::tokenizer::TextTokenizer;

use super::LintInput;
use crate::error::Result;

/// What the length policy did to one example (mirrors `ChatTokenizer::tokenize_all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Trained on as is.
    Kept,
    /// Trained on, cut to `max_len`.
    Truncated,
    /// Dropped: longer than `max_len` under `overflow = "drop"`.
    TooLong,
    /// Dropped: no supervised token left.
    NoSupervised,
    /// Dropped: the chat template (or tokenizer) fails on it; training leaves it out too.
    Unrenderable,
}

/// One example after templating and the length policy.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// 0-based index into the input examples.
    pub index: usize,
    /// Tokens after the policy (untruncated for `TooLong`).
    pub tokens: TokenizedExample,
    pub outcome: Outcome,
    /// Untruncated length, tokens.
    pub full_len: usize,
    /// Position of the first supervised token before truncation.
    pub first_supervised: Option<usize>,
    /// Assistant replies (chat) or the whole text (plain text).
    pub replies: Vec<String>,
    /// Whether the example is a conversation.
    pub chat: bool,
}

impl Item {
    /// Whether training uses the example.
    pub fn is_kept(&self) -> bool {
        matches!(self.outcome, Outcome::Kept | Outcome::Truncated)
    }
}

/// Tokenized train and validation examples.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub train: Vec<Item>,
    pub val: Vec<Item>,
    /// (index, reason) of each training example that could not be rendered or tokenized.
    pub train_failures: Vec<(usize, String)>,
}

/// What the label checks need besides the items.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub tokenizer: &'a TextTokenizer,
    /// Text closing each reply, and its id when it is a single token.
    pub eot_text: String,
    pub eot_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub pad_id: Option<u32>,
    pub opts: TokenizeOptions,
    pub lines: Option<&'a [usize]>,
    pub path: Option<&'a Path>,
}

impl<'a> Ctx<'a> {
    pub fn new(input: &LintInput<'a>, eot_text: &str) -> Self {
        Ctx {
            tokenizer: input.tokenizer,
            eot_text: eot_text.to_string(),
            eot_id: input.tokenizer.token_to_id(eot_text),
            eos_id: input.tokenizer.eos_id(),
            pad_id: input.pad_token_id,
            opts: input.tokenize,
            lines: input.train_lines,
            path: input.train_path,
        }
    }

    /// Names training example `index`: `file:line`, `line N`, or `example N` (0-based).
    pub fn row(&self, index: usize) -> String {
        match (self.lines.and_then(|l| l.get(index)), self.path) {
            (Some(line), Some(path)) => format!("{}:{line}", path.display()),
            (Some(line), None) => format!("line {line}"),
            (None, _) => format!("example {index}"),
        }
    }

    /// The id that must close a supervised span: end-of-turn for chat, eos for plain text.
    pub fn closing_id(&self, item: &Item) -> Option<u32> {
        if item.chat {
            self.eot_id
        } else {
            self.eos_id
        }
    }
}

/// Tokenizes train and validation examples; one that cannot be rendered or tokenized becomes an
/// [`Outcome::Unrenderable`] item (training leaves it out as a row of its own).
///
/// # Errors
/// `Data` when `max_len` is 0.
pub(crate) fn prepare(tok: &ChatTokenizer<'_>, input: &LintInput<'_>) -> Result<Prepared> {
    if input.tokenize.max_len == 0 {
        return Err(tuneguard_data::DataError::InvalidOption {
            field: "max_len".into(),
            reason: "must be at least 1 token".into(),
        }
        .into());
    }
    let (train, train_failures) = items(tok, input.train, input.tokenize);
    let (val, _) = items(tok, input.val, input.tokenize);
    Ok(Prepared { train, val, train_failures })
}

fn items(tok: &ChatTokenizer<'_>, examples: &[Example], opts: TokenizeOptions) -> (Vec<Item>, Vec<(usize, String)>) {
    // Rendering dominates (3 renders per reply); examples are independent. Over-long examples
    // are cut first, as training cuts them.
    let results: Vec<(Item, Option<String>)> = examples
        .par_iter()
        .enumerate()
        .map(|(index, ex)| match tok.tokenize_bounded(ex, opts.max_len) {
            Ok(full) => (item(index, ex, full, opts), None),
            Err(e) => {
                let reason = match e {
                    tuneguard_data::DataError::Tokenize { reason, .. } => reason,
                    other => other.to_string(),
                };
                let empty = TokenizedExample { input_ids: Vec::new(), labels: Vec::new() };
                (Item { outcome: Outcome::Unrenderable, ..item(index, ex, empty, opts) }, Some(reason))
            }
        })
        .collect();
    let mut items = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    for (it, failure) in results {
        if let Some(reason) = failure {
            failures.push((it.index, reason));
        }
        items.push(it);
    }
    (items, failures)
}

/// Applies the length policy exactly as `ChatTokenizer::tokenize_all` does.
pub(crate) fn item(index: usize, ex: &Example, full: TokenizedExample, opts: TokenizeOptions) -> Item {
    let full_len = full.len();
    let first_supervised = full.labels.iter().position(|&l| l != tuneguard_data::IGNORE_INDEX);
    let mut tokens = full;
    let outcome = if full_len > opts.max_len && opts.overflow == Overflow::Drop {
        Outcome::TooLong
    } else {
        tokens.input_ids.truncate(opts.max_len);
        tokens.labels.truncate(opts.max_len);
        if tokens.num_supervised() == 0 {
            Outcome::NoSupervised
        } else if full_len > opts.max_len {
            Outcome::Truncated
        } else {
            Outcome::Kept
        }
    };
    let (replies, chat) = match ex {
        Example::Chat(m) => (m.iter().filter(|m| m.role == "assistant").map(|m| m.content.clone()).collect(), true),
        Example::Text(t) => (vec![t.clone()], false),
    };
    Item { index, tokens, outcome, full_len, first_supervised, replies, chat }
}

/// Contiguous supervised runs `[start, end)` of a label vector.
pub(crate) fn supervised_runs(labels: &[i64]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (k, &l) in labels.iter().enumerate() {
        match (l != tuneguard_data::IGNORE_INDEX, start) {
            (true, None) => start = Some(k),
            (false, Some(s)) => {
                runs.push((s, k));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push((s, labels.len()));
    }
    runs
}

/// `part` as a percentage of `whole` with one decimal (`<0.1%` for a small non-zero share,
/// 0 when `whole` is 0).
pub(crate) fn percent(part: usize, whole: usize) -> String {
    let p = if whole == 0 { 0.0 } else { 100.0 * part as f64 / whole as f64 };
    if p > 0.0 && p < 0.05 {
        "<0.1%".to_string()
    } else {
        format!("{p:.1}%")
    }
}

/// At most `n` characters of `s`, quoted and escaped, with `…` when cut.
pub(crate) fn snippet(s: &str, n: usize) -> String {
    let mut cut: String = s.chars().take(n).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuneguard_data::IGNORE_INDEX as I;

    fn tokens(n: usize, supervised_from: usize) -> TokenizedExample {
        let labels = (0..n).map(|k| if k >= supervised_from { k as i64 } else { I }).collect();
        TokenizedExample { input_ids: (0..n as u32).collect(), labels }
    }

    #[test]
    fn length_policy_matches_tokenize_all() {
        let ex = Example::Text("t".into());
        let opts = |max_len, overflow| TokenizeOptions { max_len, overflow };
        // (length, first supervised, max_len, overflow) → outcome, kept length
        let cases = [
            (10, 4, 10, Overflow::Drop, Outcome::Kept, 10),
            (11, 4, 10, Overflow::Drop, Outcome::TooLong, 11),
            (11, 4, 10, Overflow::Truncate, Outcome::Truncated, 10),
            (11, 10, 10, Overflow::Truncate, Outcome::NoSupervised, 10),
            (11, 9, 10, Overflow::Truncate, Outcome::Truncated, 10),
            (5, 5, 10, Overflow::Drop, Outcome::NoSupervised, 5),
        ];
        for (n, from, max_len, overflow, want, len) in cases {
            let it = item(0, &ex, tokens(n, from), opts(max_len, overflow));
            assert_eq!((it.outcome, it.tokens.len()), (want, len), "{n} {from} {max_len} {overflow:?}");
            assert_eq!(it.full_len, n);
            assert_eq!(it.first_supervised, (from < n).then_some(from));
        }
    }

    #[test]
    fn runs_and_formatting() {
        assert_eq!(supervised_runs(&[I, 1, 2, I, I, 5, I, 7]), vec![(1, 3), (5, 6), (7, 8)]);
        assert_eq!(supervised_runs(&[I, I]), vec![]);
        assert_eq!(supervised_runs(&[0, 1]), vec![(0, 2)]);
        assert_eq!(percent(1, 8), "12.5%");
        assert_eq!(percent(1, 0), "0.0%");
        assert_eq!(percent(4, 12600), "<0.1%");
        assert_eq!(percent(1, 1000), "0.1%");
        assert_eq!(snippet("ab\ncd", 3), "\"ab\\n…\"");
        assert_eq!(snippet("ab", 3), "\"ab\"");
    }
}
