//! SplitMix64 (G. Steele, D. Lea, C. Flood, "Fast splittable pseudorandom number generators",
//! OOPSLA 2014): the workspace's one implementation, for seeded hashes of counters (dropout
//! masks, NEFTune seeds in tuneguard-train) and for the MinHash permutations.

/// The generator's increment (the golden-ratio constant 2^64 / φ).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A well-mixed 64-bit hash of `z`: the SplitMix64 output for state `z` (the generator adds
/// `GAMMA` to its state, then mixes it).
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The SplitMix64 generator seeded with `seed`: `splitmix64(seed)`, `splitmix64(seed + GAMMA)`...
pub fn splitmix64_stream(seed: u64) -> impl Iterator<Item = u64> {
    std::iter::successors(Some(seed), |s| Some(s.wrapping_add(GAMMA))).map(splitmix64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_stream() {
        // The outputs of the reference implementation (splitmix64.c) seeded with 0.
        let first: Vec<u64> = splitmix64_stream(0).take(3).collect();
        assert_eq!(first, [0xe220_a839_7b1d_cdaf, 0x6e78_9e6a_a1b9_65f4, 0x06c4_5d18_8009_454f]);
        assert_eq!(splitmix64(0), first[0]);
    }
}
