//! Streaming: the chunked, parallel audit sees every row exactly as the whole-file loader does,
//! gives the same findings with 1 or 2 threads, and compares rows across files.
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tuneguard_audit::checks::{self, AuditConfig, AuditOptions, AuditReport, CheckId, Finding};
use tuneguard_data::{load_file, Example, LoadOptions};
use tuneguard_model::testutil::shared_dir;

fn superni() -> PathBuf {
    shared_dir().join("data/instruction/superni_en_shared.jsonl")
}

/// All of SuperNI (13 MB: more than one 8 MiB chunk and many 1 MiB pieces) with a BOM on line
/// 1, and every 997th line replaced by a bad one (a mid-file BOM, broken JSON, a blank line...).
fn corpus(dir: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(superni())?;
    let mut out = Vec::new();
    out.extend_from_slice(b"\xEF\xBB\xBF");
    let bad: [&[u8]; 5] = [
        b"\xEF\xBB\xBF{\"text\": 1}",
        b"{\"instruction\": \"x\"",
        b"",
        b"caf\xE9",
        b"{\"instruction\": \"x\", \"response\": null}",
    ];
    for (i, line) in text.lines().enumerate() {
        if i % 997 == 500 {
            out.extend_from_slice(bad[(i / 997) % bad.len()]);
        } else {
            out.extend_from_slice(line.as_bytes());
        }
        out.push(b'\n');
    }
    let path = dir.join("superni_with_bad_rows.jsonl");
    std::fs::write(&path, out)?;
    Ok(path)
}

fn run(paths: &[PathBuf], threads: usize) -> Result<AuditReport> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let opts = AuditOptions { keep_clean: true, ..Default::default() };
    Ok(pool.install(|| checks::audit_files(paths, &AuditConfig::default(), &opts))?)
}

#[test]
fn streamed_rows_match_the_whole_file_loader_and_threads_do_not_matter() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = corpus(dir.path())?;
    let whole = load_file(&path, &LoadOptions { keep_empty: true, ..Default::default() })?;
    let one = run(std::slice::from_ref(&path), 1)?;
    let two = run(&[path], 2)?;

    let schema = |r: &AuditReport| -> Vec<(usize, String)> {
        r.findings.iter().filter(|f| f.check.is_schema()).map(|f| (f.row.line, r.reason(f))).collect()
    };
    let want: Vec<(usize, String)> = whole.rejected.iter().map(|r| (r.line, r.reason.clone())).collect();
    assert!(want.len() >= 10, "{} rejected", want.len());
    assert_eq!(schema(&one), want, "schema findings = the loader's rejected rows (line and reason)");
    assert_eq!(one.load, whole.stats, "same row, blank-line and reject counts");
    let kinds =
        |r: &AuditReport| r.findings.iter().filter(|f| f.check.is_schema()).map(|f| f.check.name()).collect::<Vec<_>>();
    assert_eq!(kinds(&one), whole.rejected.iter().map(|r| r.kind.name()).collect::<Vec<_>>());

    // Every accepted example is either kept (in order, same example) or flagged by a check.
    let flagged: std::collections::BTreeSet<usize> =
        one.findings.iter().filter(|f| f.action.removes_row()).map(|f| f.row.line).collect();
    let kept: Vec<(usize, &Example)> =
        whole.lines.iter().copied().zip(&whole.examples).filter(|(l, _)| !flagged.contains(l)).collect();
    let got: Vec<(usize, &Example)> = one.clean.iter().map(|s| (s.row.line, &s.example)).collect();
    assert_eq!(got, kept);

    let key = |f: &Finding| (f.row, f.check, f.related(), one.reason(f));
    assert_eq!(one.findings.iter().map(key).collect::<Vec<_>>(), two.findings.iter().map(key).collect::<Vec<_>>());
    assert_eq!(one.rows, two.rows);
    Ok(())
}

#[test]
fn duplicates_are_found_across_files_and_name_the_first_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let text = std::fs::read_to_string(superni())?;
    let lines: Vec<&str> = text.lines().take(40).collect();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    std::fs::write(&a, lines[..30].join("\n"))?;
    std::fs::write(&b, format!("{}\n{}\n", lines[35], lines[7]))?;
    let r = run(&[a.clone(), b.clone()], 2)?;
    let f = r.findings.iter().find(|f| f.check == CheckId::ExactDuplicate).context("cross-file duplicate")?;
    assert_eq!((r.files[f.row.file].as_path(), f.row.line), (b.as_path(), 2));
    let of = f.related().context("related")?;
    assert_eq!((r.files[of.file].as_path(), of.line), (a.as_path(), 8));
    Ok(())
}

#[test]
fn length_in_tokens_when_a_length_function_is_given() -> Result<()> {
    let words = |e: &Example| match e {
        Example::Chat(m) => m.iter().map(|m| m.content.split_whitespace().count()).sum(),
        Example::Text(t) => t.split_whitespace().count(),
    };
    let opts = AuditOptions { length_fn: Some(&words), ..Default::default() };
    let r = checks::audit_files(&[superni()], &AuditConfig::default(), &opts)?;
    let l = r.length.context("length stats")?;
    assert_eq!(l.unit, "tokens");
    assert!(l.median > 20.0 && l.median < 500.0, "median {} words", l.median);
    Ok(())
}
