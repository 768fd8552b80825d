//! Train/validation leakage: validation examples that repeat a training example exactly (after
//! [`normalize_text`]) or nearly (word-shingle Jaccard ≥ a threshold). A leaked validation example
//! measures memorisation, not generalisation, so validation loss looks better than it is.
//!
//! Near duplicates are found as in Lee et al., "Deduplicating Training Data Makes Language Models
//! Better" (ACL 2022): MinHash + LSH candidates ([`crate::minhash`]), then each candidate is
//! confirmed with the exact shingle Jaccard, so the estimate's noise never decides alone.
use std::collections::HashMap;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::minhash::{jaccard, LshIndex, MinHasher};
use crate::normalize::normalize_text;
use crate::record::Example;

/// Settings of [`find_leaks`].
#[derive(Debug, Clone, PartialEq)]
pub struct LeakageOptions {
    /// Exact shingle Jaccard at or above which a pair is a near duplicate (default 0.8, the
    /// threshold Lee et al. 2022 use for near-duplicate removal).
    pub near_threshold: f64,
    /// MinHash permutations (default 128: estimate standard error ≤ 0.045, see [`MinHasher`]).
    pub num_perm: usize,
    /// Words per shingle (default 3). Instructions are short (tens of words): with 5-word
    /// shingles one substituted word in a 40-word text removes 5 of 36 shingles (Jaccard
    /// 31/41 ≈ 0.76, missed at 0.8); with 3 it removes 3 of 38 (35/41 ≈ 0.85, found). Single
    /// words ignore word order, so unrelated texts on the same topic would look alike.
    pub shingle_words: usize,
    /// Seed of the MinHash permutations.
    pub seed: u64,
}

impl Default for LeakageOptions {
    fn default() -> Self {
        LeakageOptions { near_threshold: 0.8, num_perm: 128, shingle_words: 3, seed: 0 }
    }
}

/// How a validation example repeats a training example.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakKind {
    /// Equal after [`normalize_text`].
    Exact,
    /// Exact shingle Jaccard ≥ [`LeakageOptions::near_threshold`].
    Near,
}

/// One leaked validation example (indices into the slices given to [`find_leaks`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Leak {
    pub val_index: usize,
    pub train_index: usize,
    pub kind: LeakKind,
    /// Exact shingle Jaccard (1.0 for [`LeakKind::Exact`]).
    pub jaccard: f64,
}

/// The text compared for an example: every message's content joined with "\n" (chat), or the text.
pub fn example_text(e: &Example) -> String {
    match e {
        Example::Chat(messages) => messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
        Example::Text(t) => t.clone(),
    }
}

/// At most one [`Leak`] per validation example, sorted by `val_index`. An exact match wins over
/// a near one; among exact matches the lowest train index is reported, among near ones the
/// highest Jaccard (then the lowest index). Training examples past index `u32::MAX` are only
/// checked for exact matches.
pub fn find_leaks(train: &[Example], val: &[Example], opts: &LeakageOptions) -> Vec<Leak> {
    let train_norm: Vec<String> = train.par_iter().map(|e| normalize_text(&example_text(e))).collect();
    let val_norm: Vec<String> = val.par_iter().map(|e| normalize_text(&example_text(e))).collect();

    let mut exact: HashMap<&str, usize> = HashMap::with_capacity(train_norm.len());
    for (i, t) in train_norm.iter().enumerate() {
        exact.entry(t.as_str()).or_insert(i);
    }
    let hasher = MinHasher::new(opts.num_perm, opts.shingle_words, opts.seed);
    let index = build_index(&hasher, &train_norm, opts.near_threshold);
    // Shingles of a training row are computed when it is first a candidate, then reused: within
    // a task family (e.g. Super-NaturalInstructions rows sharing a definition) the same rows are
    // candidates of many validation rows.
    let train_shingles: Vec<OnceLock<Vec<u64>>> = (0..train_norm.len()).map(|_| OnceLock::new()).collect();
    let near = NearSearch { hasher: &hasher, index: &index, train_norm: &train_norm, train_shingles: &train_shingles };

    val_norm
        .par_iter()
        .enumerate()
        .filter_map(|(val_index, v)| {
            if let Some(&train_index) = exact.get(v.as_str()) {
                return Some(Leak { val_index, train_index, kind: LeakKind::Exact, jaccard: 1.0 });
            }
            near.best(v, opts.near_threshold).map(|(train_index, jaccard)| Leak {
                val_index,
                train_index,
                kind: LeakKind::Near,
                jaccard,
            })
        })
        .collect()
}

/// The LSH is tuned for `near_threshold − LSH_MARGIN`: tuned for the threshold itself
/// (datasketch's rule) a pair exactly at it is a candidate only 40% of the time (0.8/128:
/// (9, 13) bands/rows, 1 − (1 − 0.8¹³)⁹ ≈ 0.40). At 0.55 → (21, 6) that is 0.998 at 0.8, and 0.28
/// at Jaccard 0.5; the extra candidates are removed by the exact check.
const LSH_MARGIN: f64 = 0.25;

fn build_index(hasher: &MinHasher, train_norm: &[String], threshold: f64) -> LshIndex {
    let limit = train_norm.len().min(u32::MAX as usize);
    let sigs: Vec<_> = train_norm[..limit].par_iter().map(|t| hasher.signature(t)).collect();
    let mut index = LshIndex::new(hasher.num_perm(), (threshold - LSH_MARGIN).max(0.05));
    for (id, sig) in (0u32..).zip(&sigs) {
        index.insert(id, sig);
    }
    index
}

struct NearSearch<'a> {
    hasher: &'a MinHasher,
    index: &'a LshIndex,
    train_norm: &'a [String],
    train_shingles: &'a [OnceLock<Vec<u64>>],
}

impl NearSearch<'_> {
    /// The candidate with the highest exact Jaccard ≥ `threshold` (ties: lowest index).
    fn best(&self, v: &str, threshold: f64) -> Option<(usize, f64)> {
        let candidates = self.index.candidates(&self.hasher.signature(v));
        if candidates.is_empty() {
            return None;
        }
        let v_sh = self.hasher.shingles(v);
        let mut best: Option<(usize, f64)> = None;
        for id in candidates {
            let i = id as usize;
            let t_sh = self.train_shingles[i].get_or_init(|| self.hasher.shingles(&self.train_norm[i]));
            let j = jaccard(&v_sh, t_sh);
            if j >= threshold && best.is_none_or(|(_, bj)| j > bj) {
                best = Some((i, j));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuneguard_model::chat::ChatMessage;

    fn words(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn text(w: &[String]) -> Example {
        Example::Text(w.join(" "))
    }

    #[test]
    fn example_text_joins_messages() {
        let chat = Example::Chat(vec![ChatMessage::new("user", "Hi there"), ChatMessage::new("assistant", "Hello")]);
        assert_eq!(example_text(&chat), "Hi there\nHello");
        assert_eq!(example_text(&Example::Text("plain".into())), "plain");
    }

    #[test]
    fn threshold_boundary() {
        // 20 words → 18 three-word shingles. Appending k new words adds k shingles:
        // Jaccard 18/(18+k): k=4 → 18/22 ≈ 0.818 (reported), k=5 → 18/23 ≈ 0.783 (not).
        let base = words("w", 20);
        let train = vec![text(&base)];
        let plus = |k: usize| text(&[base.clone(), words("x", k)].concat());
        let leaks = find_leaks(&train, &[plus(4), plus(5)], &LeakageOptions::default());
        assert_eq!(leaks.len(), 1, "{leaks:?}");
        assert_eq!((leaks[0].val_index, leaks[0].kind), (0, LeakKind::Near));
        assert!((leaks[0].jaccard - 18.0 / 22.0).abs() < 1e-12);
    }

    #[test]
    fn exact_wins_and_best_near_is_chosen() {
        let base = words("w", 30);
        let mut one_off = base.clone();
        one_off[15] = "changed".into(); // 28 shingles, 3 differ: 25/31
        let mut two_off = base.clone();
        two_off[5] = "changed".into();
        two_off[20] = "other".into(); // 6 differ: 22/34
        let train = vec![text(&two_off), text(&one_off), text(&base), text(&base)];
        let val = vec![Example::Text(format!("  {}\t", base.join(" ").to_uppercase())), text(&base[..29])];
        let leaks = find_leaks(&train, &val, &LeakageOptions::default());
        let got: Vec<_> = leaks.iter().map(|l| (l.val_index, l.train_index, l.kind)).collect();
        // val 0: exact copy of train 2 and 3 → lowest, 2. val 1 (last word dropped, 27 of 28
        // shingles): Jaccard with base 27/28, one_off 24/31, two_off 21/34 → train 2 (Near).
        assert_eq!(got, vec![(0, 2, LeakKind::Exact), (1, 2, LeakKind::Near)]);
        assert!((leaks[1].jaccard - 27.0 / 28.0).abs() < 1e-12);
    }

    #[test]
    fn no_leaks_between_unrelated_sets() {
        let train: Vec<_> = (0..20).map(|i| text(&words(&format!("t{i}_"), 30))).collect();
        let val: Vec<_> = (0..20).map(|i| text(&words(&format!("v{i}_"), 30))).collect();
        assert!(find_leaks(&train, &val, &LeakageOptions::default()).is_empty());
        assert!(find_leaks(&[], &val, &LeakageOptions::default()).is_empty());
    }
}
