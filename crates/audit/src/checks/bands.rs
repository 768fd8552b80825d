//! LSH banding over MinHash signatures (Leskovec, Rajaraman & Ullman, "Mining of Massive
//! Datasets" §3.4) with a cap on the ids kept per bucket, for streaming deduplication.
//!
//! Why not [`tuneguard_data::LshIndex`] as is: its buckets grow without bound, and in
//! instruction data many rows share a long task definition, so the buckets of the bands that
//! the definition decides hold every row of the task. The candidates per row then grow with
//! the rows seen and the whole pass with their square (benchmark corpus: 2.0 M candidates for
//! 50 k rows, 8.7 M for 100 k, 32.7 M for 200 k). Here a bucket keeps its first [`BUCKET_CAP`]
//! ids, so a row is compared with at most bands × cap earlier rows. A near duplicate is still
//! found through the bands its own content decides, whose buckets are small; it can be missed
//! only when every band it shares with its match is crowded. On the 1 M-row benchmark (2
//! threads, when whole rows were compared, see [`super::duplicates`]) the cap of 64 found 118,095 near duplicates in 36 s; uncapped: 119,982 (1.6 % more)
//! in 120 s; a cap of 16: 115,422 in 30 s. (bands, rows) are chosen as in
//! [`tuneguard_data::optimal_bands_rows`].
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tuneguard_data::minhash::fmix64;
use tuneguard_data::optimal_bands_rows;

/// Ids kept per bucket.
pub const BUCKET_CAP: u32 = 64;

const NONE: u32 = u32::MAX;

/// Banded index of signatures: per band, a map from the band's hash (32 bits: a collision only
/// adds a candidate, which the Jaccard check then rejects) to a list of at most
/// [`BUCKET_CAP`] ids.
#[derive(Debug, Clone)]
pub struct CappedLsh {
    rows: usize,
    /// Per band: band hash → (head entry, ids in the bucket).
    tables: Vec<HashMap<u32, (u32, u32), BuildHasherDefault<PreHashed>>>,
    /// (id, next entry of the same bucket or `NONE`).
    entries: Vec<(u32, u32)>,
}

impl CappedLsh {
    /// Bands and rows for `num_perm` permutations tuned for Jaccard `threshold`.
    pub fn new(num_perm: usize, threshold: f64) -> Self {
        let (bands, rows) = optimal_bands_rows(num_perm, threshold);
        CappedLsh { rows, tables: vec![HashMap::default(); bands], entries: Vec::new() }
    }

    pub fn bands_rows(&self) -> (usize, usize) {
        (self.tables.len(), self.rows)
    }

    /// Adds `id` to each band's bucket that has room; false (nothing added) once the entry
    /// list would outgrow u32 indices.
    pub fn insert(&mut self, id: u32, sig: &[u32]) -> bool {
        self.insert_in(0, id, sig)
    }

    /// [`Self::insert`] into the buckets of `group`: band keys are mixed with the group, so a
    /// group's rows are candidates of each other only (up to 32-bit key collisions, which the
    /// caller filters). Group 0 is [`Self::insert`]'s.
    pub fn insert_in(&mut self, group: u64, id: u32, sig: &[u32]) -> bool {
        if self.entries.len() + self.tables.len() >= NONE as usize {
            return false;
        }
        for (band, table) in self.tables.iter_mut().enumerate() {
            let Some(key) = band_key(sig, band, self.rows, group) else { break };
            let (head, len) = table.entry(key).or_insert((NONE, 0));
            if *len < BUCKET_CAP {
                let at = self.entries.len() as u32;
                self.entries.push((id, *head));
                *head = at;
                *len += 1;
            }
        }
        true
    }

    /// Ids sharing at least one band with `sig`, ascending, deduplicated.
    pub fn candidates(&self, sig: &[u32]) -> Vec<u32> {
        self.candidates_in(0, sig)
    }

    /// [`Self::candidates`] among the ids inserted into `group`.
    pub fn candidates_in(&self, group: u64, sig: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        for (band, table) in self.tables.iter().enumerate() {
            let Some(key) = band_key(sig, band, self.rows, group) else { break };
            let mut at = table.get(&key).map_or(NONE, |b| b.0);
            while let Some(&(id, next)) = self.entries.get(at as usize) {
                out.push(id);
                at = next;
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Entries held (ids × bands they were kept in), for memory estimates.
    pub fn entries(&self) -> usize {
        self.entries.len()
    }
}

/// 32-bit hash of band `band` of `sig` in `group`; `None` past the signature's end. Values are
/// folded with MurmurHash3's 64-bit finalizer (A. Appleby), with the band number and the group
/// mixed in so equal values in different bands or groups differ (group 0 adds nothing).
fn band_key(sig: &[u32], band: usize, rows: usize, group: u64) -> Option<u32> {
    let values = sig.get(band * rows..(band + 1) * rows)?;
    let mut h = 0x9E37_79B9_7F4A_7C15u64 ^ band as u64;
    if group != 0 {
        h = fmix64(h ^ group);
    }
    for &v in values {
        h = fmix64(h.wrapping_mul(0xff51_afd7_ed55_8ccd) ^ u64::from(v));
    }
    Some((h >> 32) as u32)
}

/// Identity hasher: the keys are already mixed.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        // Spread the 32-bit key over the word: hashbrown takes its control bits from the top.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_band_makes_a_candidate_and_buckets_are_capped() {
        let mut lsh = CappedLsh::new(16, 0.5);
        let (bands, rows) = lsh.bands_rows();
        assert!(bands * rows <= 16 && bands > 1, "{bands}x{rows}");
        let base: Vec<u32> = (0..16).collect();
        // Same first band, every other value different.
        let mut other: Vec<u32> = (100..116).collect();
        other[..rows].copy_from_slice(&base[..rows]);
        lsh.insert(7, &base);
        assert_eq!(lsh.candidates(&other), [7]);
        assert_eq!(lsh.candidates(&(200..216).collect::<Vec<_>>()), Vec::<u32>::new());
        // BUCKET_CAP + 5 more rows with the same signature: only the first BUCKET_CAP stay.
        for id in 8..8 + BUCKET_CAP + 5 {
            lsh.insert(id, &base);
        }
        let want: Vec<u32> = (7..7 + BUCKET_CAP).collect();
        assert_eq!(lsh.candidates(&base), want);
        assert_eq!(lsh.entries(), bands * BUCKET_CAP as usize);
    }

    #[test]
    fn groups_have_their_own_buckets() {
        let mut lsh = CappedLsh::new(16, 0.5);
        let sig: Vec<u32> = (0..16).collect();
        lsh.insert_in(42, 1, &sig);
        lsh.insert(2, &sig);
        assert_eq!(lsh.candidates_in(42, &sig), [1]);
        assert_eq!(lsh.candidates_in(43, &sig), Vec::<u32>::new());
        assert_eq!(lsh.candidates(&sig), [2]);
    }
}
