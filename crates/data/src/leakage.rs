//! Train/validation leakage: validation examples that repeat a training example exactly (after
//! [`normalize_text`]) or nearly (word-shingle Jaccard ≥ a threshold). A leaked validation example
//! measures memorisation, not generalisation, so validation loss looks better than it is.
//!
//! Near duplicates are found as in Lee et al., "Deduplicating Training Data Makes Language Models
//! Better" (ACL 2022): MinHash + LSH candidates ([`crate::minhash`]), then each candidate is
//! confirmed with the exact shingle Jaccard, so the estimate's noise never decides alone.
//!
//! Rows made of a task part and an example part ([`crate::parts`]: an instruction followed by an
//! input, a system prompt followed by turns) are compared on the example part: a
//! Super-NaturalInstructions validation row that shares only its task definition with training
//! rows, or the definition of a sibling task that differs in a sentence (ATOMIC's relations),
//! is a new example, not a leak, while the same input and answer under a reworded or another
//! task's instruction is one. Rows whose instruction is the question itself (no input) are
//! compared on the rest only when the instructions are equal or alike (shingle Jaccard ≥ the
//! threshold), and whole otherwise. On a 10 % split of the shared SuperNI file, 273 validation
//! rows match a training row whole and 5 by these rules.
use std::collections::HashMap;
use std::sync::OnceLock;

use rayon::prelude::*;

use crate::minhash::{jaccard, LshIndex, MinHasher};
use crate::normalize::normalize_text;
use crate::parts::{split_shared, SharedKind};
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
    /// The part both rows share when the Jaccard is of the rest after it; `None`: of the whole rows.
    pub shared: Option<SharedKind>,
}

/// The text compared for an example: every message's content joined with "\n" (chat), or the text.
pub fn example_text(e: &Example) -> String {
    match e {
        Example::Chat(messages) => messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"),
        Example::Text(t) => t.clone(),
    }
}

/// Examples and, per example, the byte length of the instruction at the start of its user turn
/// ([`crate::LoadedData::instruction_lens`]); shorter than `examples` (e.g. empty): the rest
/// have none.
#[derive(Debug, Clone, Copy)]
pub struct LeakRows<'a> {
    pub examples: &'a [Example],
    pub instruction_lens: &'a [Option<usize>],
}

/// Examples alone (a slice, a `Vec`, an array): no instruction lengths known.
impl<'a, T: AsRef<[Example]> + ?Sized> From<&'a T> for LeakRows<'a> {
    fn from(examples: &'a T) -> Self {
        LeakRows { examples: examples.as_ref(), instruction_lens: &[] }
    }
}

/// At most one [`Leak`] per validation example, sorted by `val_index`. An exact match (whole
/// rows) wins over a near one; among exact matches the lowest train index is reported, among
/// near ones the highest Jaccard (then the lowest index). Training examples past index
/// `u32::MAX` are only checked for exact matches.
pub fn find_leaks<'a>(
    train: impl Into<LeakRows<'a>>,
    val: impl Into<LeakRows<'a>>,
    opts: &LeakageOptions,
) -> Vec<Leak> {
    let (train, val) = (train.into(), val.into());
    let train_rows: Vec<Normalized> = normalized(train);
    let val_rows: Vec<Normalized> = normalized(val);

    let mut exact: HashMap<&str, usize> = HashMap::with_capacity(train_rows.len());
    for (i, t) in train_rows.iter().enumerate() {
        exact.entry(t.whole.as_str()).or_insert(i);
    }
    let hasher = MinHasher::new(opts.num_perm, opts.shingle_words, opts.seed);
    let search = NearSearch::new(&hasher, &train_rows, opts.near_threshold);

    val_rows
        .par_iter()
        .enumerate()
        .filter_map(|(val_index, v)| {
            if let Some(&train_index) = exact.get(v.whole.as_str()) {
                return Some(Leak { val_index, train_index, kind: LeakKind::Exact, jaccard: 1.0, shared: None });
            }
            search.best(v, opts.near_threshold).map(|(train_index, jaccard, shared)| Leak {
                val_index,
                train_index,
                kind: LeakKind::Near,
                jaccard,
                shared,
            })
        })
        .collect()
}

/// A row's normalized whole text and, when it has a shared part, that part and the rest.
struct Normalized {
    whole: String,
    parts: Option<Parts>,
}

struct Parts {
    kind: SharedKind,
    shared: String,
    rest: String,
    /// Whether the rest holds more than the answer: an input after the instruction, or the
    /// turns after a system prompt.
    has_input: bool,
}

fn normalized(rows: LeakRows<'_>) -> Vec<Normalized> {
    rows.examples
        .par_iter()
        .enumerate()
        .map(|(i, e)| Normalized {
            whole: normalize_text(&example_text(e)),
            parts: split_shared(e, rows.instruction_lens.get(i).copied().flatten()).map(|p| Parts {
                kind: p.kind,
                shared: normalize_text(p.shared),
                rest: normalize_text(&p.rest.join("\n")),
                has_input: p.kind == SharedKind::SystemPrompt || p.rest.first().is_some_and(|h| !h.trim().is_empty()),
            }),
        })
        .collect()
}

/// The LSH is tuned for `near_threshold − LSH_MARGIN`: tuned for the threshold itself
/// (datasketch's rule) a pair exactly at it is a candidate only 40% of the time (0.8/128:
/// (9, 13) bands/rows, 1 − (1 − 0.8¹³)⁹ ≈ 0.40). At 0.55 → (21, 6) that is 0.998 at 0.8, and 0.28
/// at Jaccard 0.5; the extra candidates are removed by the exact check.
const LSH_MARGIN: f64 = 0.25;

/// The training rows in an LSH index of whole rows. A pair judged by its rest is always a
/// candidate: with the shared parts equal or alike (intersection I_s of union U_s shingles,
/// I_s/U_s ≥ t) and the rests alike (I_r/U_r ≥ t), the whole rows are alike too,
/// (I_s + I_r)/(U_s + U_r) ≥ t (shingles that span the two parts aside).
struct NearSearch<'a> {
    hasher: &'a MinHasher,
    train: &'a [Normalized],
    whole: LshIndex,
    /// Shingles of a training row's whole text, shared part and rest, computed when it is
    /// first a candidate, then reused: within a task family the same rows are candidates of
    /// many validation rows.
    shingles: Vec<[OnceLock<Vec<u64>>; 3]>,
}

impl<'a> NearSearch<'a> {
    fn new(hasher: &'a MinHasher, train: &'a [Normalized], threshold: f64) -> Self {
        let limit = train.len().min(u32::MAX as usize);
        let sigs: Vec<_> = train[..limit].par_iter().map(|t| hasher.signature(&t.whole)).collect();
        let mut whole = LshIndex::new(hasher.num_perm(), (threshold - LSH_MARGIN).max(0.05));
        for (id, sig) in (0u32..).zip(&sigs) {
            whole.insert(id, sig);
        }
        let shingles = (0..train.len()).map(|_| Default::default()).collect();
        NearSearch { hasher, train, whole, shingles }
    }

    /// Shingles of training row `i`: part 0 the whole row, 1 the shared part, 2 the rest.
    fn train_shingles(&self, i: usize, part: usize) -> &[u64] {
        self.shingles[i][part].get_or_init(|| {
            let t = &self.train[i];
            let text = match (part, &t.parts) {
                (1, Some(p)) => &p.shared,
                (2, Some(p)) => &p.rest,
                _ => &t.whole,
            };
            self.hasher.shingles(text)
        })
    }

    /// The training row with the highest exact Jaccard ≥ `threshold` (ties: lowest index),
    /// each pair judged by the rest or whole as [`by_rest`] says.
    fn best(&self, v: &Normalized, threshold: f64) -> Option<(usize, f64, Option<SharedKind>)> {
        let candidates = self.whole.candidates(&self.hasher.signature(&v.whole));
        if candidates.is_empty() {
            return None;
        }
        let v_whole = self.hasher.shingles(&v.whole);
        let v_rest = v.parts.as_ref().map(|p| self.hasher.shingles(&p.rest));
        let v_shared = OnceLock::new();
        let mut best: Option<(usize, f64, Option<SharedKind>)> = None;
        for id in candidates {
            let i = id as usize;
            let alike = |vp: &Parts| {
                let v_sh = v_shared.get_or_init(|| self.hasher.shingles(&vp.shared));
                jaccard(v_sh, self.train_shingles(i, 1)) >= threshold
            };
            let (j, shared) = match (&v.parts, &v_rest, &self.train[i].parts) {
                (Some(vp), Some(v_rest), Some(tp)) if by_rest(vp, tp, alike) => {
                    (jaccard(v_rest, self.train_shingles(i, 2)), Some(vp.kind))
                }
                _ => (jaccard(&v_whole, self.train_shingles(i, 0)), None),
            };
            if j >= threshold && best.is_none_or(|(_, bj, _)| j > bj) {
                best = Some((i, j, shared));
            }
        }
        best
    }
}

/// Whether a pair is judged by the rest after the shared part: the parts are of one kind, and
/// both rows hold an input besides the answer (then the instruction is the task, and the
/// input and answer are the example), or the shared parts are equal or `alike` (templated
/// variants of one task). Other pairs (e.g. instructions that are the question itself, with no
/// input) are judged whole.
fn by_rest(v: &Parts, t: &Parts, alike: impl FnOnce(&Parts) -> bool) -> bool {
    v.kind == t.kind && ((v.has_input && t.has_input) || v.shared == t.shared || alike(v))
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
    fn rows_sharing_a_system_prompt_are_compared_on_the_rest() {
        let chat = |sys: &[String], user: &[String]| {
            Example::Chat(vec![
                ChatMessage::new("system", sys.join(" ")),
                ChatMessage::new("user", user.join(" ")),
                ChatMessage::new("assistant", "yes"),
            ])
        };
        let (sys, question) = (words("sys", 300), words("q", 30));
        let train = vec![chat(&sys, &question)];
        let mut one_off = question.clone();
        one_off[15] = "changed".into(); // the rest, 31 words: 3 of 29 shingles differ, 26/32
        let mut sys_off = sys.clone();
        sys_off[100] = "changed".into();
        // Another question under the same system prompt (whole rows alike: 298/360), the same
        // question with one word changed, the same question under a reworded prompt, and
        // another question under a prompt of other words.
        let val = vec![
            chat(&sys, &words("other", 30)),
            chat(&sys, &one_off),
            chat(&sys_off, &question),
            chat(&words("prompt", 300), &words("other", 30)),
        ];
        let got: Vec<_> = find_leaks(&train, &val, &LeakageOptions::default())
            .into_iter()
            .map(|l| (l.val_index, l.train_index, l.shared))
            .collect();
        // The reworded prompt is alike (297/303), so that copy is judged by its rest: equal.
        assert_eq!(got, vec![(1, 0, Some(SharedKind::SystemPrompt)), (2, 0, Some(SharedKind::SystemPrompt))]);
    }

    #[test]
    fn no_leaks_between_unrelated_sets() {
        let train: Vec<_> = (0..20).map(|i| text(&words(&format!("t{i}_"), 30))).collect();
        let val: Vec<_> = (0..20).map(|i| text(&words(&format!("v{i}_"), 30))).collect();
        assert!(find_leaks(&train, &val, &LeakageOptions::default()).is_empty());
        assert!(find_leaks(&[], &val, &LeakageOptions::default()).is_empty());
    }
}
