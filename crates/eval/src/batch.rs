//! Independent sequences (perplexity windows, multiple-choice requests) grouped into forward
//! passes of [`Llama::forward_batch`](tuneguard_model::llama::Llama::forward_batch): each group's
//! projections run on all its rows at once, so short sequences share each pass over the weights.
//! Groups depend only on the sequences' lengths, never on the thread count.
use std::ops::Range;

/// Rows (tokens) per forward pass. Measured on 2 cores with the default model: 300 SST-2 items
/// (about 40 tokens each) score 11 % faster in groups of up to 512 tokens than one per pass, and
/// no faster with 1024 to 4096; windows of 512 or 1024 tokens ran 3–8 % slower two or more to a
/// pass than alone, so a sequence of 512 tokens or more keeps a pass of its own.
pub const BATCH_TOKENS: usize = 512;

/// Consecutive groups of `sizes` (tokens per unit, in order) whose sums stay within `budget`; a
/// unit larger than the budget forms a group of its own.
pub fn groups(sizes: &[usize], budget: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut sum) = (0, 0);
    for (i, &n) in sizes.iter().enumerate() {
        if i > start && sum + n > budget {
            out.push(start..i);
            (start, sum) = (i, 0);
        }
        sum += n;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_fill_the_budget_in_order() {
        assert_eq!(groups(&[3, 3, 3, 5, 1], 6), vec![0..2, 2..3, 3..5]);
        assert_eq!(groups(&[9, 2], 6), vec![0..1, 1..2]);
        assert_eq!(groups(&[], 6), Vec::<Range<usize>>::new());
        assert_eq!(groups(&[6, 6], 6), vec![0..1, 1..2]);
    }
}
