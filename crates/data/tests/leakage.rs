//! Train/validation leakage on real data: the Self-Instruct seed tasks split in two, with exact
//! and near copies of training rows planted in validation.
use tuneguard_data::{
    example_text, find_leaks, jaccard, load_file, normalize_text, split_indices, Example, LeakKind, LeakRows,
    LeakageOptions, LoadOptions, MinHasher, ValSize,
};
use tuneguard_model::chat::ChatMessage;

fn seed_tasks() -> anyhow::Result<Vec<Example>> {
    let path = tuneguard_model::testutil::shared_dir().join("data/instruction/selfinstruct_seed_tasks.jsonl");
    Ok(load_file(&path, &LoadOptions::default())?.examples)
}

/// Applies `f` to every message content (or the text).
fn map_text(e: &Example, f: impl Fn(&str) -> String) -> Example {
    match e {
        Example::Chat(m) => Example::Chat(m.iter().map(|m| ChatMessage::new(m.role.clone(), f(&m.content))).collect()),
        Example::Text(t) => Example::Text(f(t)),
    }
}

/// Applies `f` to the words of the last message (the response).
fn edit_response(e: &Example, f: impl Fn(&mut Vec<String>)) -> anyhow::Result<Example> {
    let Example::Chat(m) = e else { anyhow::bail!("expected a chat example") };
    let mut m = m.clone();
    let last = m.last_mut().ok_or_else(|| anyhow::anyhow!("no messages"))?;
    let mut words: Vec<String> = last.content.split_whitespace().map(str::to_string).collect();
    f(&mut words);
    last.content = words.join(" ");
    Ok(Example::Chat(m))
}

fn exact_jaccard(a: &Example, b: &Example, opts: &LeakageOptions) -> f64 {
    let h = MinHasher::new(opts.num_perm, opts.shingle_words, opts.seed);
    let sh = |e: &Example| h.shingles(&normalize_text(&example_text(e)));
    jaccard(&sh(a), &sh(b))
}

#[test]
fn planted_leaks_are_found_and_nothing_else() -> anyhow::Result<()> {
    let all = seed_tasks()?;
    assert_eq!(all.len(), 175);
    let (train_idx, val_idx) = split_indices(all.len(), ValSize::Count(35), 17, None)?;
    let train: Vec<Example> = train_idx.iter().map(|&i| all[i].clone()).collect();
    let mut val: Vec<Example> = val_idx.iter().map(|&i| all[i].clone()).collect();
    let opts = LeakageOptions::default();

    // The real split is clean: no seed task repeats another.
    assert_eq!(find_leaks(&train, &val, &opts), vec![]);

    // Long training rows (≥ 60 words), so a few edited words keep the Jaccard well above 0.8.
    let long: Vec<usize> =
        (0..train.len()).filter(|&i| example_text(&train[i]).split_whitespace().count() >= 60).collect();
    assert!(long.len() >= 6, "only {} long rows", long.len());
    let nfkc = |s: &str| s.replace(' ', "\u{00A0}").replace("fi", "\u{FB01}").replace('a', "\u{FF41}");
    let exact: Vec<(usize, Example)> = vec![
        (long[0], map_text(&train[long[0]], |s| s.to_uppercase())),
        (long[1], map_text(&train[long[1]], |s| format!("  {}\n", s.replace(' ', " \t\n ")))),
        (long[2], map_text(&train[long[2]], nfkc)),
    ];
    let near: Vec<(usize, Example)> = vec![
        // One word replaced in the middle.
        (
            long[3],
            edit_response(&train[long[3]], |w| {
                let k = w.len() / 2;
                w[k] = "banana".into()
            })?,
        ),
        // A short sentence appended.
        (long[4], edit_response(&train[long[4]], |w| w.extend(["I", "hope", "this", "helps."].map(String::from)))?),
        // Two words dropped, and the copy upper-cased too.
        (
            long[5],
            map_text(
                &edit_response(&train[long[5]], |w| {
                    w.remove(3);
                    w.remove(10);
                })?,
                |s| s.to_uppercase(),
            ),
        ),
    ];
    let mut want = Vec::new();
    for (kind, planted) in [(LeakKind::Exact, exact), (LeakKind::Near, near)] {
        for (train_index, e) in planted {
            let j = exact_jaccard(&train[train_index], &e, &opts);
            match kind {
                LeakKind::Exact => assert_eq!(j, 1.0),
                LeakKind::Near => assert!((0.85..1.0).contains(&j), "planted near copy has Jaccard {j}"),
            }
            want.push((val.len(), train_index, kind));
            val.push(e);
        }
    }
    let got: Vec<_> =
        find_leaks(&train, &val, &opts).into_iter().map(|l| (l.val_index, l.train_index, l.kind)).collect();
    assert_eq!(got, want);
    Ok(())
}

#[test]
fn whole_set_against_itself_is_all_exact() -> anyhow::Result<()> {
    let all = seed_tasks()?;
    let leaks = find_leaks(&all, &all, &LeakageOptions::default());
    assert_eq!(leaks.len(), all.len());
    assert!(leaks.iter().enumerate().all(|(i, l)| l.val_index == i && l.train_index == i && l.kind == LeakKind::Exact));
    Ok(())
}

/// Throughput: `cargo test -p tuneguard-data --release --test leakage -- --ignored --nocapture`.
#[test]
#[ignore]
fn leakage_bench_superni() -> anyhow::Result<()> {
    let path = tuneguard_model::testutil::shared_dir().join("data/instruction/superni_en_shared.jsonl");
    let data = load_file(&path, &LoadOptions::default())?;
    let all = &data.examples;
    let (train_idx, val_idx) = split_indices(all.len(), ValSize::Fraction(0.5), 1, None)?;
    let pick = |idx: &[usize]| -> (Vec<Example>, Vec<Option<usize>>) {
        idx.iter().map(|&i| (all[i].clone(), data.instruction_lens[i])).unzip()
    };
    let ((train, train_lens), (val, val_lens)) = (pick(&train_idx), pick(&val_idx));
    let start = std::time::Instant::now();
    let leaks = find_leaks(
        LeakRows { examples: &train, instruction_lens: &train_lens },
        LeakRows { examples: &val, instruction_lens: &val_lens },
        &LeakageOptions::default(),
    );
    let secs = start.elapsed().as_secs_f64();
    let words: usize = all.iter().map(|e| example_text(e).split_whitespace().count()).sum();
    eprintln!(
        "{} rows ({} words/row) in {secs:.2}s = {:.0} rows/s on {} threads; {} leaks ({} exact)",
        all.len(),
        words / all.len(),
        all.len() as f64 / secs,
        rayon::current_num_threads(),
        leaks.len(),
        leaks.iter().filter(|l| l.kind == LeakKind::Exact).count()
    );
    Ok(())
}

/// Super-NaturalInstructions repeats each task's definition over many rows that differ in input
/// and answer. A validation row that shares only the definition with training rows is a new
/// example of the task: rows that share the instruction are compared on input and answer, the
/// others whole. Planted copies of training rows are still found, by the rest or by the whole row.
#[test]
fn rows_sharing_only_an_instruction_are_not_leaks() -> anyhow::Result<()> {
    let path = tuneguard_model::testutil::shared_dir().join("data/instruction/superni_en_shared.jsonl");
    let data = load_file(&path, &LoadOptions::default())?;
    let (n, opts) = (data.examples.len(), LeakageOptions::default());
    let (train_idx, val_idx) = split_indices(n, ValSize::Fraction(0.1), 17, None)?;
    let pick = |idx: &[usize]| -> (Vec<Example>, Vec<Option<usize>>) {
        idx.iter().map(|&i| (data.examples[i].clone(), data.instruction_lens[i])).unzip()
    };
    let ((train, train_lens), (mut val, mut val_lens)) = (pick(&train_idx), pick(&val_idx));
    let leaks = |val: &[Example], val_lens: &[Option<usize>]| {
        find_leaks(
            LeakRows { examples: &train, instruction_lens: &train_lens },
            LeakRows { examples: val, instruction_lens: val_lens },
            &opts,
        )
    };
    let whole = find_leaks(&train, &val, &opts).len();
    let clean = leaks(&val, &val_lens);
    eprintln!("{} validation rows: {whole} leaks compared whole, {} by parts", val.len(), clean.len());
    assert!(whole > 10 * clean.len().max(1), "whole rows: {whole}, by parts: {}", clean.len());
    // What is left is the same input seen in training, often under another task drawn from the
    // same source (a passage, a tweet): the raw `context` fields share most of their words.
    let raw: Vec<serde_json::Value> =
        std::fs::read_to_string(&path)?.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let context_words = |i: usize| -> std::collections::HashSet<String> {
        let row = &raw[data.lines[i] - 1];
        row["context"].as_str().unwrap_or_default().split_whitespace().map(str::to_lowercase).collect()
    };
    for l in &clean {
        let (a, b) = (context_words(val_idx[l.val_index]), context_words(train_idx[l.train_index]));
        let j = a.intersection(&b).count() as f64 / a.union(&b).count().max(1) as f64;
        assert!(j >= 0.6, "{l:?}: the inputs share {j:.2} of their words");
    }

    // Plant copies of training rows with a long input: one word of the input changed, and one
    // word of the instruction changed.
    let long: Vec<usize> = (0..train.len())
        .filter(|&i| {
            let (Some(k), Example::Chat(m)) = (train_lens[i], &train[i]) else { return false };
            m[0].content[k..].split_whitespace().count() >= 80
        })
        .take(2)
        .collect();
    assert_eq!(long.len(), 2);
    let change_word = |s: &str, from: usize| -> String {
        let mut w: Vec<&str> = s.split(' ').collect();
        let at = from + (w.len() - from) / 2;
        w[at] = "banana";
        w.join(" ")
    };
    let mut want = Vec::new();
    for (t, in_instruction) in [(long[0], false), (long[1], true)] {
        let (Example::Chat(m), Some(k)) = (&train[t], train_lens[t]) else { unreachable!() };
        let mut m = m.clone();
        let (ins, rest) = m[0].content.split_at(k);
        let (ins, rest) = if in_instruction {
            (change_word(ins, 0), rest.to_string())
        } else {
            (ins.to_string(), change_word(rest, 0))
        };
        // Either way the instructions are alike, so the copy is judged by its input and answer.
        want.push((val.len(), t, Some(tuneguard_data::SharedKind::Instruction)));
        val_lens.push(Some(ins.len()));
        m[0].content = ins + &rest;
        val.push(Example::Chat(m));
    }
    let got: Vec<_> = leaks(&val, &val_lens)
        .into_iter()
        .filter(|l| l.val_index >= val_idx.len())
        .map(|l| (l.val_index, l.train_index, l.shared))
        .collect();
    assert_eq!(got, want);
    Ok(())
}
