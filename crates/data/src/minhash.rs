//! MinHash signatures over word shingles and an LSH banding index for near-duplicate search.
//!
//! - MinHash: A. Broder, "On the resemblance and containment of documents" (1997): for a random
//!   permutation π of the shingle universe, P[min π(A) = min π(B)] = Jaccard(A, B), so the share of
//!   equal signature positions estimates the Jaccard similarity.
//! - Permutations are approximated, as in datasketch's `MinHash`, by a hash family applied to one
//!   64-bit hash per shingle: here multiply-add-shift, h_i(x) = ((a_i·x + b_i) mod 2^64) >> 32 with
//!   random odd a_i (M. Dietzfelbinger et al., "A reliable randomized algorithm for the
//!   closest-pair problem", 1997), which costs one multiply per permutation and vectorizes.
//! - Banding: J. Leskovec, A. Rajaraman, J. Ullman, "Mining of Massive Datasets", ch. 3.4: split
//!   the signature into b bands of r rows; two texts are candidates when any band is equal, with
//!   probability 1 − (1 − s^r)^b at Jaccard s. (b, r) is chosen as datasketch
//!   `MinHashLSH._optimal_param` does: minimise the equally weighted false-positive area below the
//!   threshold plus the false-negative area above it.
//!
//! Written here rather than taken from a crate: `gaoya` (last release 2023) stores every signature
//! in its index and returns hash sets; `probminhash` targets weighted Jaccard with float sketches
//! and a large dependency tree; `datasketch-minhash-lsh` 0.0.1 calls itself a partial
//! reimplementation "at your own risk". The algorithm is small and this index keeps only band
//! hashes and ids.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Computes shingle hashes and MinHash signatures with `num_perm` seeded hash permutations.
#[derive(Debug, Clone)]
pub struct MinHasher {
    shingle_words: usize,
    seed: u64,
    a: Vec<u64>,
    b: Vec<u64>,
}

/// A MinHash signature: per permutation, the minimum 32-bit hash over the text's shingles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature(pub Vec<u32>);

impl MinHasher {
    /// `num_perm` hash functions (at least 1), shingles of `shingle_words` consecutive words (at
    /// least 1; texts with fewer words are one shingle), seeded: equal seeds give equal signatures.
    pub fn new(num_perm: usize, shingle_words: usize, seed: u64) -> Self {
        let mut draws = crate::splitmix64_stream(seed);
        let (mut a, mut b) = (Vec::with_capacity(num_perm), Vec::with_capacity(num_perm));
        for _ in 0..num_perm.max(1) {
            a.extend(draws.next().map(|x| x | 1));
            b.extend(draws.next());
        }
        MinHasher { shingle_words: shingle_words.max(1), seed, a, b }
    }

    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    /// Signature of an already-normalized text (see [`crate::normalize_text`]).
    pub fn signature(&self, normalized: &str) -> Signature {
        let mut sig = vec![u32::MAX; self.a.len()];
        self.for_each_shingle(normalized, |h| {
            for ((s, &a), &b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let v = (a.wrapping_mul(h).wrapping_add(b) >> 32) as u32;
                *s = (*s).min(v);
            }
        });
        Signature(sig)
    }

    /// The shingle hashes of a normalized text, sorted and deduplicated, for exact [`jaccard`].
    pub fn shingles(&self, normalized: &str) -> Vec<u64> {
        let mut out = Vec::new();
        self.for_each_shingle(normalized, |h| out.push(h));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Calls `f` with the 64-bit hash of every shingle (with repeats). Each word is hashed once
    /// (XXH3); a shingle hash combines its words' hashes in order.
    fn for_each_shingle(&self, text: &str, mut f: impl FnMut(u64)) {
        let words: Vec<u64> = text.split_whitespace().map(|w| xxh3_64_with_seed(w.as_bytes(), self.seed)).collect();
        let k = self.shingle_words;
        if words.len() < k {
            f(combine(self.seed, &words));
        } else {
            words.windows(k).for_each(|w| f(combine(self.seed, w)));
        }
    }
}

impl Signature {
    /// Share of positions where both signatures agree (Broder's estimator). Signatures of
    /// different lengths are compared over the shorter one; two empty signatures give 1.0.
    pub fn estimated_jaccard(&self, other: &Signature) -> f64 {
        let n = self.0.len().min(other.0.len());
        if n == 0 {
            return if self.0.len() == other.0.len() { 1.0 } else { 0.0 };
        }
        let equal = self.0.iter().zip(&other.0).filter(|(x, y)| x == y).count();
        equal as f64 / n as f64
    }
}

/// Exact Jaccard |A∩B| / |A∪B| of two sorted, deduplicated shingle sets (see
/// [`MinHasher::shingles`]); two empty sets give 1.0.
pub fn jaccard(a_sorted: &[u64], b_sorted: &[u64]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a_sorted.len() && j < b_sorted.len() {
        match a_sorted[i].cmp(&b_sorted[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a_sorted.len() + b_sorted.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// LSH banding index over MinHash signatures. Holds only band hashes and ids, never texts or
/// signatures: per band a map from band hash to the head of a linked list of ids in `entries`
/// (about 26 bytes per band and signature; at most 2³² − 1 entries, e.g. 200 M signatures at 21
/// bands).
#[derive(Debug, Clone)]
pub struct LshIndex {
    bands: usize,
    rows: usize,
    tables: Vec<HashMap<u64, u32, BuildHasherDefault<PreHashed>>>,
    /// (id, index of the next entry with the same band hash, or `NONE`).
    entries: Vec<(u32, u32)>,
    len: usize,
}

const NONE: u32 = u32::MAX;

impl LshIndex {
    /// Bands/rows from [`optimal_bands_rows`] for `num_perm` and Jaccard `threshold` (clamped to
    /// [0, 1]). Signatures inserted or queried must come from a [`MinHasher`] with this `num_perm`.
    pub fn new(num_perm: usize, threshold: f64) -> Self {
        let (bands, rows) = optimal_bands_rows(num_perm, threshold);
        LshIndex { bands, rows, tables: vec![HashMap::default(); bands], entries: Vec::new(), len: 0 }
    }

    pub fn bands_rows(&self) -> (usize, usize) {
        (self.bands, self.rows)
    }

    /// Adds `id` under each band of `sig`. Bands a short signature does not fully cover are skipped.
    pub fn insert(&mut self, id: u32, sig: &Signature) {
        for (band, table) in self.tables.iter_mut().enumerate() {
            let Some(key) = band_hash(sig, band, self.rows) else { break };
            debug_assert!(self.entries.len() < NONE as usize, "LshIndex entry limit reached");
            let next = self.entries.len() as u32;
            let head = table.entry(key).or_insert(NONE);
            self.entries.push((id, *head));
            *head = next;
        }
        self.len += 1;
    }

    /// Ids sharing at least one band with `sig` (deduplicated, ascending).
    pub fn candidates(&self, sig: &Signature) -> Vec<u32> {
        let mut out = Vec::new();
        for (band, table) in self.tables.iter().enumerate() {
            let Some(key) = band_hash(sig, band, self.rows) else { break };
            let mut at = table.get(&key).copied().unwrap_or(NONE);
            while at != NONE {
                let (id, next) = self.entries[at as usize];
                out.push(id);
                at = next;
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Number of signatures inserted.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// (bands, rows) with bands·rows ≤ `num_perm` minimising 0.5·FP + 0.5·FN, where FP = ∫₀ᵗ P(s) ds,
/// FN = ∫ₜ¹ (1 − P(s)) ds and P(s) = 1 − (1 − s^r)^b (datasketch `MinHashLSH._optimal_param`
/// with its default weights; its scipy `quad` is replaced by composite Simpson, exact enough to
/// reproduce its choices). `threshold` is clamped to [0, 1], `num_perm` to at least 1.
pub fn optimal_bands_rows(num_perm: usize, threshold: f64) -> (usize, usize) {
    let t = if threshold.is_nan() { 0.5 } else { threshold.clamp(0.0, 1.0) };
    let num_perm = num_perm.max(1);
    let mut best = (f64::INFINITY, (1, num_perm));
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let p = |s: f64| 1.0 - (1.0 - s.powi(r as i32)).powi(b as i32);
            let fp = simpson(p, 0.0, t);
            let fne = simpson(|s| 1.0 - p(s), t, 1.0);
            let err = 0.5 * fp + 0.5 * fne;
            if err < best.0 {
                best = (err, (b, r));
            }
        }
    }
    best.1
}

/// Composite Simpson rule with 1000 intervals (integrands here are smooth polynomials).
fn simpson(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    const N: usize = 1000;
    let h = (hi - lo) / N as f64;
    let mut sum = f(lo) + f(hi);
    for i in 1..N {
        sum += if i % 2 == 1 { 4.0 } else { 2.0 } * f(lo + i as f64 * h);
    }
    sum * h / 3.0
}

fn band_hash(sig: &Signature, band: usize, rows: usize) -> Option<u64> {
    let values = sig.0.get(band * rows..(band + 1) * rows)?;
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for pair in values.chunks(2) {
        let v = pair[0] as u64 | (pair.get(1).copied().unwrap_or(0) as u64) << 32;
        h = fmix64(h.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ v);
    }
    Some(h)
}

/// Order-dependent combination of word hashes into one shingle hash (bijective mixing steps).
fn combine(seed: u64, words: &[u64]) -> u64 {
    let mut h = seed ^ words.len() as u64;
    for &w in words {
        h = fmix64(h.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ w);
    }
    h
}

/// MurmurHash3's 64-bit finalizer (A. Appleby): a bijection with full avalanche.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// Identity hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
#[path = "minhash_tests.rs"]
mod tests;
