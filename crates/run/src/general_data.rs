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
use tuneguard_data::{Example, Rejected};
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

/// Reads and tokenizes `path` (at most `limit` examples when given, in file order) for `what`
/// (`replay.data`, `ewc.data`), cut to `max_len` tokens.
///
/// # Errors
/// `Data` for an unreadable file or an unknown shape; `Forgetting` naming `what` when no
/// example is left.
#[allow(clippy::too_many_arguments)]
pub fn read(
    what: &str,
    path: &Path,
    format: Option<&DataFormat>,
    text_tok: &TextTokenizer,
    tok: &ChatTokenizer<'_>,
    max_len: usize,
    limit: Option<usize>,
    progress: &mut dyn Progress,
) -> Result<GeneralExamples> {
    let opts = LoadOptions { format: format.cloned(), file_kind: None, max_reject_fraction: None, keep_empty: true };
    let mut data = load_file(path, &opts)?;
    // Text rows become chunks of max_len tokens; chat rows go through the chat template.
    let mut chunks = Vec::new();
    let (mut chat, mut chat_lines) = (Vec::new(), Vec::new());
    for (e, &line) in data.examples.iter().zip(&data.lines) {
        match e {
            Example::Text(text) => {
                let ids = text_tok.encode(text, false)?;
                for c in ids.chunks(max_len).filter(|c| c.len() >= MIN_CHUNK.min(max_len)) {
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
    data.lines = chat_lines;
    // Long rows are cut before tokenizing, as training rows are.
    if let Some(max) = tok.max_example_bytes(max_len) {
        for e in &mut chat {
            if let Some(short) = e.cut_to(max) {
                *e = short;
            }
        }
    }
    let mut t = tok.tokenize_each(&chat, TokenizeOptions { max_len, overflow: Overflow::Truncate })?;
    let mut examples = chunks;
    examples.append(&mut t.examples);
    if let Some(n) = limit {
        examples.truncate(n);
    }
    let tokens = examples.iter().map(|e| e.len()).sum();
    let mut rejected = data.rejected.clone();
    if !t.dropped.is_empty() {
        let lines: Vec<usize> = t.dropped.iter().map(|d| data.lines[d.index]).collect();
        let raw = tuneguard_data::raw_rows(path, &lines)?;
        rejected.extend(t.dropped.iter().map(|d| {
            let line = data.lines[d.index];
            Rejected {
                path: path.to_path_buf(),
                line,
                kind: d.kind,
                reason: format!("{what}: {}", d.reason),
                raw: raw.get(&line).cloned().unwrap_or_default(),
            }
        }));
    }
    if examples.is_empty() {
        return Err(RunError::Forgetting(format!(
            "{what} {}: no example is left to use ({} rows read, {} rejected, {} dropped at tokenization)",
            path.display(),
            data.stats.rows,
            data.rejected.len(),
            t.dropped.len()
        )));
    }
    let summary = GeneralData {
        path: path.display().to_string(),
        rows_read: data.stats.rows,
        rejected: data.rejected.len(),
        examples: examples.len(),
        truncated: t.stats.truncated,
        dropped: t.dropped.len(),
        tokens,
        ratio: None,
        used: 0,
    };
    progress.message(&format!(
        "{what}: {} examples from {} ({} tokens; {} rows rejected, {} cut to max_len {max_len}, {} dropped)",
        summary.examples,
        path.display(),
        summary.tokens,
        summary.rejected,
        summary.truncated,
        summary.dropped
    ));
    Ok(GeneralExamples { examples, summary, rejected })
}
