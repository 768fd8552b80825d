use super::*;
use std::io::Write;

#[test]
fn val_count_table() {
    use ValSize::{Count, Fraction};
    let cases: &[(usize, ValSize, Result<usize, SplitError>)] = &[
        (100, Count(10), Ok(10)),
        (100, Fraction(0.1), Ok(10)),
        (10, Fraction(0.05), Ok(1)), // 0.5 rounds away from zero
        (10, Fraction(0.01), Ok(1)), // 0.1 rounds to 0, raised to the minimum of 1
        (3, Fraction(0.5), Ok(2)),   // 1.5 → 2
        (12_800, Fraction(0.05), Ok(640)),
        (2, Fraction(0.9), Err(SplitError::NoTrainingLeft { size: Fraction(0.9), val: 2, n: 2 })),
        (5, Count(5), Err(SplitError::NoTrainingLeft { size: Count(5), val: 5, n: 5 })),
        (0, Count(1), Err(SplitError::Empty)),
        (10, Count(0), Err(SplitError::ZeroCount)),
        (10, Fraction(0.0), Err(SplitError::BadFraction(0.0))),
        (10, Fraction(1.0), Err(SplitError::BadFraction(1.0))),
        (10, Fraction(-0.1), Err(SplitError::BadFraction(-0.1))),
    ];
    for (n, size, want) in cases {
        assert_eq!(val_count(*n, *size), *want, "n={n} size={size:?}");
    }
    assert!(matches!(val_count(10, Fraction(f64::NAN)), Err(SplitError::BadFraction(_))));
}

#[test]
fn errors_name_the_option() {
    for e in [
        SplitError::BadFraction(1.5),
        SplitError::ZeroCount,
        SplitError::NoTrainingLeft { size: ValSize::Count(5), val: 5, n: 5 },
    ] {
        assert!(e.to_string().contains("data.val_size"), "{e}");
    }
    assert_eq!(
        SplitError::NoTrainingLeft { size: ValSize::Fraction(0.9), val: 2, n: 2 }.to_string(),
        "data.val_size = 0.9: takes 2 of 2 examples, leaving no training data"
    );
}

#[test]
fn allocate_table() {
    // (stratum sizes, seats, expected allocation)
    type Case<'a> = (&'a [usize], usize, Option<Vec<usize>>);
    let cases: &[Case] = &[
        // Exact quotas 10·50/100 = 5, 3, 2.
        (&[50, 30, 20], 10, Some(vec![5, 3, 2])),
        // 4·7/15 = 1.867, 4·5/15 = 1.333, 4·3/15 = 0.8: floors 1,1,0; 2 seats left go to the
        // remainders .867 and .8.
        (&[7, 5, 3], 4, Some(vec![2, 1, 1])),
        // Quotas 0.5, 0.5, 4: the singletons are capped at 0, both spare seats go to the third.
        (&[1, 1, 8], 5, Some(vec![0, 0, 5])),
        // Equal remainders: label order decides.
        (&[3, 3, 3], 2, Some(vec![1, 1, 0])),
        (&[800; 16], 640, Some(vec![40; 16])),
        // Caps hold 1 seat (2 − 1), 2 are asked.
        (&[1, 2, 1], 2, None),
    ];
    for (sizes, k, want) in cases {
        assert_eq!(allocate(sizes, *k), *want, "sizes {sizes:?} k {k}");
    }
}

fn check_partition(n: usize, train: &[usize], val: &[usize]) {
    assert!(train.windows(2).all(|w| w[0] < w[1]) && val.windows(2).all(|w| w[0] < w[1]));
    let mut all: Vec<usize> = train.iter().chain(val).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
}

#[test]
fn split_is_a_seeded_partition() -> Result<(), SplitError> {
    for (n, size, k) in [(100, ValSize::Count(7), 7), (1000, ValSize::Fraction(0.2), 200), (2, ValSize::Count(1), 1)] {
        let (train, val) = split_indices(n, size, 11, None)?;
        assert_eq!(val.len(), k);
        check_partition(n, &train, &val);
        assert_eq!(split_indices(n, size, 11, None)?, (train, val.clone()));
        if n >= 100 {
            assert_ne!(split_indices(n, size, 12, None)?.1, val, "another seed, another split");
        }
    }
    Ok(())
}

/// Interleaved labels: 50 "a", 30 "b", 20 missing.
fn interleaved_labels() -> Vec<Option<String>> {
    (0..100)
        .map(|i| match i % 10 {
            0..=4 => Some("a".to_string()),
            5..=7 => Some("b".to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn stratified_split_proportions() -> Result<(), SplitError> {
    let labels = interleaved_labels();
    let (train, val) = split_indices(100, ValSize::Fraction(0.1), 3, Some(&labels))?;
    check_partition(100, &train, &val);
    let count = |l: Option<&str>| val.iter().filter(|&&i| labels[i].as_deref() == l).count();
    assert_eq!((count(Some("a")), count(Some("b")), count(None)), (5, 3, 2));
    // A stratum of one stays in train.
    let labels = vec![Some("x".to_string()), Some("y".to_string()), None, None, None];
    let (_, val) = split_indices(5, ValSize::Count(2), 0, Some(&labels))?;
    assert_eq!(val.iter().filter(|&&i| i < 2).count(), 0, "{val:?}");
    assert_eq!(
        split_indices(3, ValSize::Count(1), 0, Some(&labels[..3])),
        Err(SplitError::StrataTooSmall { size: ValSize::Count(1), val: 1, max: 0 })
    );
    assert_eq!(
        split_indices(5, ValSize::Count(1), 0, Some(&labels[..3])),
        Err(SplitError::StrataLength { labels: 3, n: 5 })
    );
    Ok(())
}

#[test]
fn read_field_values_jsonl_and_csv() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("d.jsonl");
    let lines = [
        "\u{FEFF}{\"cat\": \"a\", \"x\": 1}",
        "",
        "{\"cat\": 7}",
        "{\"cat\": true}",
        "{\"cat\": null}",
        "{\"other\": \"b\"}",
        "not json",
        "{\"cat\": \"  \"}",
        "{\"cat\": [1, 2]}\r",
    ];
    std::fs::File::create(&jsonl)?.write_all(lines.join("\n").as_bytes())?;
    let got = read_field_values(&jsonl, "cat")?;
    let want: HashMap<usize, String> =
        [(1, "a"), (3, "7"), (4, "true"), (9, "[1,2]")].into_iter().map(|(l, v)| (l, v.to_string())).collect();
    assert_eq!(got, want);

    // A quoted cell spanning two lines: the next record starts on line 4.
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "instruction, cat ,response\nq1,a,r1\nq2,\"b\nc\",r2\nq3,,r3\nq4,d,r4\n")?;
    let got = read_field_values(&csv, "cat")?;
    let want: HashMap<usize, String> =
        [(2, "a"), (3, "b\nc"), (6, "d")].into_iter().map(|(l, v)| (l, v.to_string())).collect();
    assert_eq!(got, want);
    // Same numbering as the loader.
    let loaded = crate::load_file(&csv, &crate::LoadOptions::default())?;
    assert_eq!(loaded.lines, vec![2, 3, 5, 6]);

    assert!(matches!(read_field_values(&csv, "nope"), Err(DataError::InvalidRecord { line: 1, .. })));
    assert!(matches!(read_field_values(&dir.path().join("d.txt"), "cat"), Err(DataError::InvalidOption { .. })));
    assert!(matches!(read_field_values(&dir.path().join("none.jsonl"), "cat"), Err(DataError::Io { .. })));
    Ok(())
}

/// The members drawn for a seed are pinned: a change of generator (or of its stream) would
/// silently move examples between train and validation of an existing recipe.
#[test]
fn the_drawn_members_are_pinned() -> Result<(), SplitError> {
    let labels = interleaved_labels();
    assert_eq!(split_indices(40, ValSize::Count(6), 11, None)?.1, [2, 8, 11, 17, 18, 38]);
    assert_eq!(
        split_indices(100, ValSize::Fraction(0.1), 3, Some(&labels))?.1,
        [5, 10, 15, 21, 29, 53, 64, 66, 73, 98]
    );
    Ok(())
}
