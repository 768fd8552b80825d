//! General-domain data for forgetting prevention: the `[replay]` rows mixed into training, and
//! the examples EWC's Fisher is estimated on. A file is read like the training data (record
//! shape given or detected). A text row is tokenized without special tokens, as perplexity is,
//! and cut into consecutive examples of `data.max_len` tokens, each supervised on every token
//! (a chunk shorter than 16 tokens at the end of a row is left out); a chat row is rendered with
//! the chat template and supervised on the assistant turns, cut to `data.max_len`. Rows the
//! loader rejects or tokenization leaves out join `rejected.jsonl` with file and line; these
//! rows never reach validation.
use std::path::Path;

use tuneguard_data::format::DataFormat;
use tuneguard_data::load::{load_file, LoadOptions};
use tuneguard_data::tokenize::{ChatTokenizer, Overflow, TokenizeOptions, TokenizedExample};
use tuneguard_data::{Example, RejectKind, Rejected};
use tuneguard_model::tokenizer::TextTokenizer;
use tuneguard_records::GeneralData;

use crate::{Progress, Result, RunError};

/// The shortest chunk of a text row that is kept, in tokens.
const MIN_CHUNK: usize = 16;

/// A general-domain file, tokenized.
pub struct GeneralExamples {
    pub examples: Vec<TokenizedExample>,
    pub summary: GeneralData,
    /// Rows rejected or dropped, for `rejected.jsonl`.
    pub rejected: Vec<Rejected>,
}

/// Reads and tokenizes `path` (at most `limit` examples when given, in file order) for `key`
/// (`replay.data`, `ewc.data`), cut to `max_len` tokens. An empty result is not an error here:
/// the caller writes the rejected rows first.
///
/// # Errors
/// `Prevention` naming `key` for an unreadable file, an unknown extension or shape.
#[allow(clippy::too_many_arguments)]
pub fn read(
    key: &'static str,
    path: &Path,
    format: Option<&DataFormat>,
    text_tok: &TextTokenizer,
    tok: &ChatTokenizer<'_>,
    max_len: usize,
    limit: Option<usize>,
    progress: &mut dyn Progress,
) -> Result<GeneralExamples> {
    let named = |e: &dyn std::fmt::Display| RunError::Prevention { key, reason: e.to_string() };
    let opts = LoadOptions { format: format.cloned(), file_kind: None, max_reject_fraction: None, keep_empty: true };
    let data = load_file(path, &opts).map_err(|e| named(&e))?;
    let mut rejected = data.rejected.clone();
    // Text rows become chunks of max_len tokens; chat rows go through the chat template.
    let mut chunks = Vec::new();
    let (mut chat, mut chat_lines) = (Vec::new(), Vec::new());
    let mut too_short = Vec::new();
    for (e, &line) in data.examples.iter().zip(&data.lines) {
        match e {
            Example::Text(text) => {
                let ids = text_tok.encode(text, false).map_err(|e| named(&e))?;
                let min = MIN_CHUNK.min(max_len);
                if ids.len() < min {
                    too_short.push((line, ids.len()));
                    continue;
                }
                for c in ids.chunks(max_len).filter(|c| c.len() >= min) {
                    chunks.push(TokenizedExample {
                        input_ids: c.to_vec(),
                        labels: c.iter().map(|&i| i64::from(i)).collect(),
                    });
                }
            }
            Example::Chat(_) => {
                chat.push(e.clone());
                chat_lines.push(line);
            }
        }
    }
    // Long rows are cut before tokenizing, as training rows are.
    if let Some(max) = tok.max_example_bytes(max_len) {
        for e in &mut chat {
            if let Some(short) = e.cut_to(max) {
                *e = short;
            }
        }
    }
    let mut t =
        tok.tokenize_each(&chat, TokenizeOptions { max_len, overflow: Overflow::Truncate }).map_err(|e| named(&e))?;
    let mut examples = chunks;
    examples.append(&mut t.examples);
    if let Some(n) = limit {
        examples.truncate(n);
    }
    let tokens = examples.iter().map(|e| e.len()).sum();
    let mut left_out: Vec<(usize, RejectKind, String)> =
        t.dropped.iter().map(|d| (chat_lines[d.index], d.kind, format!("{key}: {}", d.reason))).collect();
    left_out.extend(too_short.iter().map(|&(line, n)| {
        let reason =
            format!("{key}: {n} tokens, fewer than the {} a general-domain example needs", MIN_CHUNK.min(max_len));
        (line, RejectKind::TooShort, reason)
    }));
    left_out.sort_by_key(|r| r.0);
    if !left_out.is_empty() {
        let lines: Vec<usize> = left_out.iter().map(|r| r.0).collect();
        let raw = tuneguard_data::raw_rows(path, &lines).map_err(|e| named(&e))?;
        rejected.extend(left_out.into_iter().map(|(line, kind, reason)| Rejected {
            path: path.to_path_buf(),
            line,
            kind,
            reason,
            raw: raw.get(&line).cloned().unwrap_or_default(),
        }));
    }
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let summary = GeneralData {
        path: shown.display().to_string(),
        rows_read: data.stats.rows,
        rejected: data.rejected.len(),
        examples: examples.len(),
        truncated: t.stats.truncated,
        dropped: t.dropped.len() + too_short.len(),
        tokens,
        ratio: None,
        used: 0,
        fisher: None,
    };
    if !examples.is_empty() {
        progress.message(&format!(
            "{key}: {} examples from {} ({} tokens; {} rows rejected, {} cut to max_len {max_len}, {} dropped)",
            summary.examples,
            path.display(),
            summary.tokens,
            summary.rejected,
            summary.truncated,
            summary.dropped
        ));
    }
    Ok(GeneralExamples { examples, summary, rejected })
}

impl GeneralExamples {
    /// `Prevention` naming `key` when no example is left (after the rejects are written).
    pub fn check(&self, key: &'static str) -> Result<()> {
        if !self.examples.is_empty() {
            return Ok(());
        }
        let s = &self.summary;
        Err(RunError::Prevention {
            key,
            reason: format!(
                "{}: no example is left to use ({} rows read, {} rejected, {} dropped; see rejected.jsonl)",
                s.path, s.rows_read, s.rejected, s.dropped
            ),
        })
    }
}
