//! Exact duplicates, conflicting answers and near duplicates, each against the rows before.
//!
//! The compared text is [`example_text`] after [`normalize_text`] (NFKC, lowercase, whitespace
//! collapsed), as in the train/validation leakage check. The first occurrence is kept; later
//! rows are flagged and name it.
//! - exact: 128-bit XXH3 of the normalized text (collision chance ≈ n²/2¹²⁹, nil at any size);
//! - conflicting answer: chat rows whose normalized prompt (every message before the last
//!   assistant turn) equals an earlier row's while the last assistant turn differs;
//! - near: MinHash signatures over word shingles ([`tuneguard_data::minhash`], Broder 1997),
//!   LSH banding with capped buckets ([`super::bands`]), confirmed by the Jaccard estimated from
//!   the stored signatures — not the exact shingle Jaccard, which would need the earlier texts.
//!   Only signatures are stored, and only their low 16 bits (b-bit minwise hashing, P. Li &
//!   A. C. König, WWW 2010): two different 32-bit minima agree on 16 bits with probability
//!   2⁻¹⁶, which biases the estimate by at most (1 − J)·2⁻¹⁶ and halves the memory to
//!   2·num_perm bytes per kept row. The estimate's standard error is sqrt(J(1 − J)/num_perm)
//!   (0.032 at J = 0.85 with 128 permutations), so pairs within a few hundredths of the
//!   threshold may go either way.
//!
//! Whole examples are compared, so rows that share a long instruction and differ in a short
//! input (templated tasks) can be near duplicates: 1,863 of the 12,975 SuperNI + Self-Instruct
//! rows are at the default 0.85, mostly from tasks whose definition is most of the row. Set
//! `near_duplicate = "warn"` (or raise the threshold) for such data.
//!
//! The LSH bands are tuned for `threshold − LSH_MARGIN` so that pairs at the threshold are
//! nearly always candidates; among candidates at or above the threshold the earliest row is
//! named. Rows removed by any check are not indexed: a later copy of them is not a duplicate.
use std::collections::HashMap;

use tuneguard_data::leakage::example_text;
use tuneguard_data::{normalize_text, Example, MinHasher, Signature};
use xxhash_rust::xxh3::xxh3_128;

use super::bands::CappedLsh;
use super::report::RowRef;

/// See the module docs. At the default 0.85 and 128 permutations, datasketch's rule would give
/// (8, 16) bands/rows: a pair at exactly 0.85 a candidate 46 % of the time. Tuned for 0.65, the
/// bands are (16, 8): 1 − (1 − 0.85⁸)¹⁶ ≈ 0.994 at 0.85, 0.947 at 0.8, and 0.061 at 0.5.
pub const LSH_MARGIN: f64 = 0.2;

/// Keys of one row, computed in parallel before the sequential comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKeys {
    /// Hash of the normalized text.
    pub text: u128,
    /// Hashes of the normalized prompt and answer (chat rows with a prompt only).
    pub prompt_answer: Option<(u128, u128)>,
    /// MinHash signature (when near-duplicate detection is on); its low 16 bits are stored.
    pub sig: Option<Signature>,
}

/// How a row repeats an earlier one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DupVerdict {
    Exact(RowRef),
    Conflict(RowRef),
    /// The earlier row and the estimated Jaccard.
    Near(RowRef, f64),
}

/// The keys of `e`; `hasher` is `None` when near duplicates are not checked.
pub fn row_keys(e: &Example, hasher: Option<&MinHasher>) -> RowKeys {
    let text = normalize_text(&example_text(e));
    let prompt_answer = match e {
        Example::Chat(m) => m.iter().rposition(|m| m.role == "assistant").filter(|&i| i > 0).map(|i| {
            let prompt: Vec<String> = m[..i].iter().map(|m| format!("{}: {}", m.role, m.content)).collect();
            let prompt = normalize_text(&prompt.join("\n"));
            (xxh3_128(prompt.as_bytes()), xxh3_128(normalize_text(&m[i].content).as_bytes()))
        }),
        Example::Text(_) => None,
    };
    let sig = hasher.map(|h| h.signature(&text));
    RowKeys { text: xxh3_128(text.as_bytes()), prompt_answer, sig }
}

/// Share of positions where `sig` and a stored signature agree on their low 16 bits.
pub fn estimated_jaccard(sig: &[u32], stored: &[u16]) -> f64 {
    let n = sig.len().min(stored.len());
    if n == 0 {
        return 0.0;
    }
    sig.iter().zip(stored).filter(|(&x, &y)| x as u16 == y).count() as f64 / n as f64
}

/// Which duplicate checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DupChecks {
    pub exact: bool,
    pub conflict: bool,
    pub near: bool,
}

/// What the earlier rows left behind: hashes, and the signatures of the rows kept.
pub struct DupIndex {
    checks: DupChecks,
    threshold: f64,
    num_perm: usize,
    exact: HashMap<u128, RowRef>,
    prompts: HashMap<u128, (u128, RowRef)>,
    lsh: CappedLsh,
    /// Signature of LSH id i at `sigs[i·num_perm..]`.
    sigs: Vec<u16>,
    ids: Vec<RowRef>,
}

impl DupIndex {
    pub fn new(checks: DupChecks, num_perm: usize, threshold: f64) -> Self {
        DupIndex {
            checks,
            threshold,
            num_perm,
            exact: HashMap::new(),
            prompts: HashMap::new(),
            lsh: CappedLsh::new(num_perm, (threshold - LSH_MARGIN).max(0.05)),
            sigs: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// The first check that `keys` fails, in the order exact, conflict, near.
    pub fn check(&self, keys: &RowKeys) -> Option<DupVerdict> {
        if self.checks.exact {
            if let Some(&first) = self.exact.get(&keys.text) {
                return Some(DupVerdict::Exact(first));
            }
        }
        if let (true, Some((p, a))) = (self.checks.conflict, keys.prompt_answer) {
            match self.prompts.get(&p) {
                Some(&(answer, first)) if answer != a => return Some(DupVerdict::Conflict(first)),
                _ => {}
            }
        }
        let sig = keys.sig.as_ref().filter(|_| self.checks.near)?;
        self.lsh.candidates(&sig.0).into_iter().find_map(|id| {
            let at = id as usize * self.num_perm;
            let j = estimated_jaccard(&sig.0, self.sigs.get(at..at + self.num_perm)?);
            let of = *self.ids.get(id as usize)?;
            (j >= self.threshold).then_some(DupVerdict::Near(of, j))
        })
    }

    /// Records a kept row. An exact repeat adds nothing; the near-duplicate index takes rows
    /// while its ids and entries fit in u32 (billions of rows).
    pub fn insert(&mut self, row: RowRef, keys: &RowKeys) {
        if self.exact.contains_key(&keys.text) {
            return;
        }
        self.exact.insert(keys.text, row);
        if let Some((p, a)) = keys.prompt_answer {
            self.prompts.entry(p).or_insert((a, row));
        }
        if let (true, Some(sig), Ok(id)) = (self.checks.near, &keys.sig, u32::try_from(self.ids.len())) {
            if self.lsh.insert(id, &sig.0) {
                self.sigs.extend(sig.0.iter().map(|&v| v as u16));
                self.ids.push(row);
            }
        }
    }

    /// Rows in the near-duplicate index.
    pub fn near_len(&self) -> usize {
        self.ids.len()
    }
}
