//! Collation of tokenized examples into rectangular batches: right padding, or packing several
//! examples per row.
//!
//! # Shapes
//! Every array of a [`Batch`] is (b, t) row-major: b rows of t tokens.
//!
//! # Attention in packed rows
//! A packed row holds several examples, told apart by `segment_ids` (1, 2, … per row; 0 =
//! padding), with `position_ids` restarting at 0 for each example. Consumers must use a
//! block-diagonal causal mask: query i may attend key j only when `j <= i` and both positions
//! have the same non-zero segment id ([`Batch::may_attend`]). Plain causal attention over a
//! packed row would let examples see each other.
//!
//! # Labels
//! Labels are unshifted (transformers' convention: the loss pairs logits at k-1 with label k).
//! Collation sets the label of each example's first token to [`IGNORE_INDEX`]: no position of
//! the same example predicts it, and in a packed row the position before it belongs to the
//! previous example.
use crate::error::{DataError, Result};
use crate::tokenize::{TokenizedExample, IGNORE_INDEX};

/// A rectangular training batch; all vectors are (b, t) row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Token ids; padding is the pad id.
    pub input_ids: Vec<u32>,
    /// Target ids or [`IGNORE_INDEX`] (prompt, padding, first token of each example).
    pub labels: Vec<i64>,
    /// Position of each token within its example (0-based; 0 on padding).
    pub position_ids: Vec<u32>,
    /// Which example of the row a token belongs to: 1, 2, …; 0 = padding.
    pub segment_ids: Vec<u32>,
    /// b, rows.
    pub batch: usize,
    /// t, tokens per row.
    pub seq: usize,
}

impl Batch {
    /// Whether query position `query` of `row` may attend key position `key` (block-diagonal
    /// causal mask). Out-of-range positions give `false`.
    pub fn may_attend(&self, row: usize, query: usize, key: usize) -> bool {
        if row >= self.batch || query >= self.seq || key > query {
            return false;
        }
        let s = &self.segment_ids[row * self.seq..(row + 1) * self.seq];
        s[query] != 0 && s[query] == s[key]
    }

    /// Non-padding tokens.
    pub fn num_tokens(&self) -> usize {
        self.segment_ids.iter().filter(|&&s| s != 0).count()
    }
}

/// Supervised positions of a batch (labels ≠ [`IGNORE_INDEX`]): the loss's denominator.
pub fn num_supervised(batch: &Batch) -> usize {
    batch.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
}

/// Builder for one batch whose rows are filled example by example.
struct RowWriter {
    batch: Batch,
}

impl RowWriter {
    fn new(rows: usize, seq: usize, pad_id: u32) -> Self {
        let n = rows * seq;
        RowWriter {
            batch: Batch {
                input_ids: vec![pad_id; n],
                labels: vec![IGNORE_INDEX; n],
                position_ids: vec![0; n],
                segment_ids: vec![0; n],
                batch: rows,
                seq,
            },
        }
    }

    /// Writes `ex` into `row` at column `at` as segment `segment`.
    fn put(&mut self, row: usize, at: usize, segment: u32, ex: &TokenizedExample) {
        let base = row * self.batch.seq + at;
        let b = &mut self.batch;
        for (k, (&id, &label)) in ex.input_ids.iter().zip(&ex.labels).enumerate() {
            b.input_ids[base + k] = id;
            b.labels[base + k] = if k == 0 { IGNORE_INDEX } else { label };
            b.position_ids[base + k] = k as u32;
            b.segment_ids[base + k] = segment;
        }
    }
}

/// One example per row, right-padded to the longest with `pad_id` (labels [`IGNORE_INDEX`],
/// segment 0). Empty input gives an empty batch (b = t = 0).
pub fn collate_padded<'a>(examples: impl IntoIterator<Item = &'a TokenizedExample>, pad_id: u32) -> Batch {
    let examples: Vec<&TokenizedExample> = examples.into_iter().collect();
    let seq = examples.iter().map(|e| e.len()).max().unwrap_or(0);
    let mut w = RowWriter::new(examples.len(), seq, pad_id);
    for (row, ex) in examples.iter().enumerate() {
        w.put(row, 0, 1, ex);
    }
    w.batch
}

/// Plans packed rows: the indices of the examples in each row, whose lengths sum to at most
/// `max_len` tokens. First fit in input order (each example goes into the first row with room,
/// else a new row), so the plan is deterministic. Empty examples are left out.
///
/// # Errors
/// `InvalidOption` when `max_len` is 0 or an example is longer than `max_len` (truncate or drop
/// those when tokenizing, with the same `max_len`).
pub fn plan_packing(examples: &[TokenizedExample], max_len: usize) -> Result<Vec<Vec<usize>>> {
    if max_len == 0 {
        return Err(DataError::InvalidOption { field: "max_len".into(), reason: "must be at least 1 token".into() });
    }
    let mut rows: Vec<Vec<usize>> = Vec::new();
    let mut used: Vec<usize> = Vec::new();
    for (i, ex) in examples.iter().enumerate() {
        let n = ex.len();
        if n == 0 {
            continue;
        }
        if n > max_len {
            return Err(DataError::InvalidOption {
                field: "max_len".into(),
                reason: format!(
                    "example {i} has {n} tokens, more than max_len {max_len}; tokenize with the same max_len"
                ),
            });
        }
        match used.iter().position(|&u| u + n <= max_len) {
            Some(r) => {
                rows[r].push(i);
                used[r] += n;
            }
            None => {
                rows.push(vec![i]);
                used.push(n);
            }
        }
    }
    Ok(rows)
}

/// Collates packed `rows` (from [`plan_packing`]) of `examples` into one batch, padded to the
/// longest row. Segment ids count 1, 2, … within each row; position ids restart at 0 for each
/// example.
///
/// # Errors
/// `InvalidOption` when a row names an example index out of range.
pub fn collate_packed(examples: &[TokenizedExample], rows: &[Vec<usize>], pad_id: u32) -> Result<Batch> {
    let mut seq = 0;
    for row in rows {
        let mut n = 0;
        for &i in row {
            let ex = examples.get(i).ok_or_else(|| DataError::InvalidOption {
                field: "rows".into(),
                reason: format!("example index {i} out of range ({} examples)", examples.len()),
            })?;
            n += ex.len();
        }
        seq = seq.max(n);
    }
    let mut w = RowWriter::new(rows.len(), seq, pad_id);
    for (r, row) in rows.iter().enumerate() {
        let mut at = 0;
        for (k, &i) in row.iter().enumerate() {
            let ex = &examples[i];
            w.put(r, at, k as u32 + 1, ex);
            at += ex.len();
        }
    }
    Ok(w.batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32], supervised_from: usize) -> TokenizedExample {
        let labels = ids
            .iter()
            .enumerate()
            .map(|(k, &i)| if k >= supervised_from { i64::from(i) } else { IGNORE_INDEX })
            .collect();
        TokenizedExample { input_ids: ids.to_vec(), labels }
    }

    #[test]
    fn padded_rows() {
        let a = ex(&[10, 11, 12], 1);
        let b = ex(&[20, 21, 22, 23, 24], 3);
        let batch = collate_padded([&a, &b], 2);
        assert_eq!((batch.batch, batch.seq), (2, 5));
        assert_eq!(batch.input_ids, [10, 11, 12, 2, 2, 20, 21, 22, 23, 24]);
        assert_eq!(batch.labels, [-100, 11, 12, -100, -100, -100, -100, -100, 23, 24]);
        assert_eq!(batch.position_ids, [0, 1, 2, 0, 0, 0, 1, 2, 3, 4]);
        assert_eq!(batch.segment_ids, [1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(num_supervised(&batch), 4);
        assert_eq!(batch.num_tokens(), 8);
        assert!(batch.may_attend(0, 2, 0));
        assert!(!batch.may_attend(0, 0, 2), "not causal");
        assert!(!batch.may_attend(0, 3, 0), "padding attends nothing");
    }

    #[test]
    fn empty_input_gives_empty_batch() {
        let batch = collate_padded(&[], 0);
        assert_eq!((batch.batch, batch.seq, batch.input_ids.len()), (0, 0, 0));
        assert_eq!(plan_packing(&[], 8).ok(), Some(vec![]));
    }

    #[test]
    fn first_fit_plan_and_masks() -> Result<()> {
        let exs = vec![ex(&[1, 2, 3, 4, 5], 1), ex(&[6, 7, 8, 9], 1), ex(&[10, 11, 12], 1), ex(&[13], 0)];
        let plan = plan_packing(&exs, 8)?;
        assert_eq!(plan, vec![vec![0, 2], vec![1, 3]]);
        let batch = collate_packed(&exs, &plan, 0)?;
        assert_eq!((batch.batch, batch.seq), (2, 8));
        assert_eq!(&batch.position_ids[..8], &[0, 1, 2, 3, 4, 0, 1, 2]);
        assert_eq!(&batch.segment_ids[..8], &[1, 1, 1, 1, 1, 2, 2, 2]);
        assert_eq!(&batch.segment_ids[8..], &[1, 1, 1, 1, 2, 0, 0, 0]);
        // The first token of the second example is never a target.
        assert_eq!(batch.labels[5], IGNORE_INDEX);
        assert!(batch.may_attend(0, 4, 0));
        assert!(!batch.may_attend(0, 5, 4), "no attention across examples");
        assert!(batch.may_attend(0, 7, 5));
        Ok(())
    }

    #[test]
    fn too_long_and_bad_indices_are_errors() {
        let exs = vec![ex(&[1, 2, 3], 1)];
        assert!(matches!(plan_packing(&exs, 2), Err(DataError::InvalidOption { .. })));
        assert!(matches!(plan_packing(&exs, 0), Err(DataError::InvalidOption { .. })));
        assert!(matches!(collate_packed(&exs, &[vec![1]], 0), Err(DataError::InvalidOption { .. })));
    }
}
