use super::*;

/// `n` distinct words `{prefix}0 .. {prefix}{n-1}` joined by spaces.
fn words(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

fn text(parts: &[Vec<String>]) -> String {
    parts.concat().join(" ")
}

/// Pairs with hand-computed exact Jaccard: (shingle_words, a, b, expected).
fn pairs() -> Vec<(usize, String, String, f64)> {
    let w20 = words("w", 0..20);
    let mut w20_mid = w20.clone();
    w20_mid[10] = "changed".into();
    vec![
        // 8 shared + 2 own words each: 8 / 12.
        (1, text(&[words("w", 0..10)]), text(&[words("w", 0..8), words("x", 0..2)]), 8.0 / 12.0),
        // b = a + 5 extra words: 20 / 25.
        (1, w20.join(" "), text(&[w20.clone(), words("x", 0..5)]), 0.8),
        // 5 shared, 5 own each: 5 / 15.
        (1, text(&[words("w", 0..10)]), text(&[words("w", 0..5), words("x", 0..5)]), 1.0 / 3.0),
        // 3-word shingles, 20 words → 18 shingles; word 10 changed touches the 3 shingles starting
        // at 8, 9, 10: 15 shared, union 18 + 3 = 21.
        (3, w20.join(" "), w20_mid.join(" "), 15.0 / 21.0),
        // 3-word shingles, disjoint vocabularies: 0.
        (3, text(&[words("w", 0..30)]), text(&[words("x", 0..30)]), 0.0),
        // Identical: 1.
        (3, text(&[words("w", 0..30)]), text(&[words("w", 0..30)]), 1.0),
    ]
}

#[test]
fn exact_and_estimated_jaccard_match_hand_values() {
    for (k, a, b, want) in pairs() {
        let mh = MinHasher::new(256, k, 7);
        let exact = jaccard(&mh.shingles(&a), &mh.shingles(&b));
        assert!((exact - want).abs() < 1e-12, "k={k} exact {exact} want {want}\n{a}\n{b}");
        let est = mh.signature(&a).estimated_jaccard(&mh.signature(&b));
        assert!((est - want).abs() <= 0.1, "k={k} estimate {est} want {want}");
    }
}

#[test]
fn identical_and_disjoint_signatures() {
    let mh = MinHasher::new(128, 3, 1);
    let a = text(&[words("w", 0..50)]);
    assert_eq!(mh.signature(&a).estimated_jaccard(&mh.signature(&a)), 1.0);
    let est = mh.signature(&a).estimated_jaccard(&mh.signature(&text(&[words("x", 0..50)])));
    assert!(est <= 0.03, "disjoint estimate {est}");
}

#[test]
fn shingles_table() {
    let mh = MinHasher::new(4, 3, 0);
    // (text, distinct shingles): n words → n − 2 shingles; fewer than 3 → 1; "abc bca cab abc" → 3.
    let cases = [("", 1), ("one", 1), ("one two", 1), ("a b c", 1), ("a b c d", 2), ("a b c a b c", 3)];
    for (t, n) in cases {
        assert_eq!(mh.shingles(t).len(), n, "{t:?}");
    }
    // Word order matters inside a shingle; whitespace layout does not.
    assert_ne!(mh.shingles("a b c"), mh.shingles("c b a"));
    assert_eq!(mh.shingles("a  b\tc"), mh.shingles("a b c"));
    // Seeds give independent signatures; equal seeds equal ones.
    assert_eq!(MinHasher::new(8, 3, 5).signature("a b c d"), MinHasher::new(8, 3, 5).signature("a b c d"));
    assert_ne!(MinHasher::new(8, 3, 5).signature("a b c d"), MinHasher::new(8, 3, 6).signature("a b c d"));
    assert_eq!(MinHasher::new(0, 0, 0).num_perm(), 1);
}

#[test]
fn exact_jaccard_table() {
    let cases: &[(&[u64], &[u64], f64)] =
        &[(&[], &[], 1.0), (&[1], &[], 0.0), (&[1, 2, 3], &[2, 3, 4], 0.5), (&[1, 5, 9], &[1, 5, 9], 1.0)];
    for (a, b, want) in cases {
        assert_eq!(jaccard(a, b), *want, "{a:?} {b:?}");
    }
}

#[test]
fn bands_rows_match_datasketch_optimal_param() {
    // Reference values: datasketch MinHashLSH._optimal_param(threshold, num_perm, 0.5, 0.5), i.e.
    // argmin over b·r ≤ num_perm of 0.5·∫₀ᵗ 1−(1−s^r)^b ds + 0.5·∫ₜ¹ (1−s^r)^b ds, recomputed
    // independently (Python, Simpson with 4000 intervals). For 0.8/128 the minimum error is
    // 0.029297 at (9, 13); the runner-up (9, 14) has 0.029386.
    let cases =
        [(0.8, 128, (9, 13)), (0.8, 64, (5, 11)), (0.5, 128, (25, 5)), (0.7, 128, (14, 9)), (0.8, 256, (17, 15))];
    for (t, n, want) in cases {
        assert_eq!(optimal_bands_rows(n, t), want, "threshold {t} num_perm {n}");
        assert_eq!(LshIndex::new(n, t).bands_rows(), want);
    }
}

#[test]
fn lsh_finds_near_pair_not_unrelated() {
    let mh = MinHasher::new(128, 3, 42);
    let mut index = LshIndex::new(128, 0.8);
    let base = words("w", 0..100);
    for i in 0..50u32 {
        let other = text(&[words(&format!("d{i}_"), 0..100)]);
        index.insert(i, &mh.signature(&other));
    }
    index.insert(100, &mh.signature(&base.join(" ")));
    assert_eq!(index.len(), 51);
    // One word changed: 98 shingles, 3 differ → Jaccard 95/101 ≈ 0.94.
    let mut near = base.clone();
    near[50] = "changed".into();
    let near = near.join(" ");
    assert!(jaccard(&mh.shingles(&near), &mh.shingles(&base.join(" "))) > 0.9);
    assert_eq!(index.candidates(&mh.signature(&near)), vec![100]);
    // An unrelated text matches nothing; a stored one finds itself.
    assert!(index.candidates(&mh.signature(&text(&[words("zz", 0..100)]))).is_empty());
    assert_eq!(index.candidates(&mh.signature(&text(&[words("d7_", 0..100)]))), vec![7]);
}

#[test]
fn lsh_candidates_sorted_dedup() {
    let mh = MinHasher::new(64, 3, 3);
    let mut index = LshIndex::new(64, 0.8);
    let sig = mh.signature("the same text for all of them");
    for id in [9, 2, 5, 2] {
        index.insert(id, &sig);
    }
    assert_eq!(index.candidates(&sig), vec![2, 5, 9]);
    // A signature too short for any band finds nothing instead of panicking.
    assert!(index.candidates(&Signature(vec![1, 2])).is_empty());
}

/// Micro-benchmark: `cargo test -p tuneguard-data --release minhash_bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn minhash_bench() {
    let texts: Vec<String> = (0..20_000).map(|i| text(&[words(&format!("t{}_", i % 997), 0..100)])).collect();
    for num_perm in [64, 128] {
        let mh = MinHasher::new(num_perm, 3, 0);
        let start = std::time::Instant::now();
        let mut acc = 0u64;
        for t in &texts {
            acc = acc.wrapping_add(mh.signature(t).0[0] as u64);
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "num_perm {num_perm}: {:.0} signatures/s (100-word texts, 1 thread) [{acc}]",
            texts.len() as f64 / secs
        );
    }
    let start = std::time::Instant::now();
    let (b, r) = optimal_bands_rows(128, 0.8);
    eprintln!("optimal_bands_rows(128, 0.8) = ({b}, {r}) in {:?}", start.elapsed());
}
