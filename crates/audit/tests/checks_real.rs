//! The row checks on a corpus built from real rows of ../shared/data: one bad row per check at a
//! known line, everything else clean.
//!
//! Clean rows: the first row of every Super-NaturalInstructions task (different tasks, different
//! definitions), except task128, whose definition is word for word task126's: when the corpus
//! was made the near-duplicate check compared whole examples, and there the shared definition
//! dominated (estimated Jaccard 0.90). Rows with the same instruction are now compared on their
//! input and answer; the corpus is kept as it was. Fresh rows for the bad fixtures come from the
//! Self-Instruct seed tasks.
//!
//! Then the whole SuperNI sample, clean by default, and planted near copies of its rows.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tuneguard_audit::checks::{self, Action, AuditConfig, AuditOptions, AuditReport, CheckId};
use tuneguard_model::testutil::shared_dir;

fn read_rows(rel: &str) -> Result<Vec<Value>> {
    let path = shared_dir().join("data").join(rel);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    text.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

/// First row per SuperNI task, without task128 (see the module docs).
fn clean_rows() -> Result<Vec<Value>> {
    let mut seen = BTreeSet::new();
    let rows = read_rows("instruction/superni_en_shared.jsonl")?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            let task = r["task"].as_str().unwrap_or_default().to_string();
            !task.starts_with("task128_") && seen.insert(task)
        })
        .collect())
}

/// Self-Instruct rows of 200–2000 characters (inside the length bounds of the corpus).
fn fresh_rows() -> Result<Vec<Value>> {
    let rows = read_rows("instruction/selfinstruct_seed_tasks.jsonl")?;
    let len = |r: &Value| -> usize {
        ["instruction", "context", "response"].iter().map(|k| r[k].as_str().map_or(0, str::len)).sum()
    };
    Ok(rows.into_iter().filter(|r| (200..2000).contains(&len(r))).collect())
}

/// A bad row planted at `line`, the check that must flag it, and the line it must name.
struct Planted {
    line: usize,
    check: CheckId,
    related: Option<usize>,
}

struct Corpus {
    path: PathBuf,
    lines: usize,
    planted: Vec<Planted>,
    /// Lines of the rows that must pass (clean ones and the PII ones).
    kept: BTreeSet<usize>,
}

fn set(row: &Value, key: &str, value: Value) -> Value {
    let mut r = row.clone();
    r[key] = value;
    r
}

fn text(row: &Value, key: &str) -> String {
    row[key].as_str().unwrap_or_default().to_string()
}

/// Writes the corpus: clean rows, with a bad row after every 20th.
fn build(dir: &Path) -> Result<Corpus> {
    let clean = clean_rows()?;
    let fresh = fresh_rows()?;
    ensure!(clean.len() == 264 && fresh.len() >= 8, "{} clean, {} fresh rows", clean.len(), fresh.len());
    let mut clean = clean;
    // PII planted in clean rows: they are warned, and kept.
    let pii = [
        (10, CheckId::PiiEmail, " Write to jane.doe@example.org for details."),
        (30, CheckId::PiiPhone, " Call +44 20 7946 0958."),
        (50, CheckId::PiiCard, " Card: 4111 1111 1111 1111."),
        (70, CheckId::PiiIban, " IBAN: DE89 3704 0044 0532 0130 00."),
    ];
    for (i, _, add) in pii {
        clean[i] = set(&clean[i], "response", json!(text(&clean[i], "response") + add));
    }
    // The longest context among clean rows 0..200 without PII, for the near duplicate (one word
    // changed); the near duplicate is placed after clean row 219, so its source comes first.
    let near_src = (0..200)
        .filter(|i| !pii.iter().any(|(j, _, _)| j == i))
        .max_by_key(|&i| text(&clean[i], "context").len())
        .unwrap_or(0);

    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut planted = Vec::new();
    let mut kept = BTreeSet::new();
    let mut line_of = vec![0; clean.len()];
    let mut bad = bad_rows(&clean, &fresh, near_src).into_iter();
    for (i, row) in clean.iter().enumerate() {
        lines.push(serde_json::to_vec(row)?);
        line_of[i] = lines.len();
        kept.insert(lines.len());
        if let Some((_, check, _)) = pii.iter().find(|(j, _, _)| *j == i) {
            planted.push(Planted { line: lines.len(), check: *check, related: None });
        }
        if i % 20 == 19 {
            if let Some((bytes, check, related)) = bad.next() {
                lines.push(bytes);
                planted.push(Planted { line: lines.len(), check, related: related.map(|j| line_of[j]) });
            }
        }
    }
    ensure!(bad.next().is_none(), "every bad row placed");
    let path = dir.join("corpus.jsonl");
    let mut bytes = lines.join(&b"\n"[..]);
    bytes.push(b'\n');
    std::fs::write(&path, bytes)?;
    Ok(Corpus { path, lines: lines.len(), planted, kept })
}

/// (raw line, check, index of the clean row it must name). A duplicate's source row must come
/// before the row (it is placed after clean row 19 at the earliest, so sources are < 19).
fn bad_rows(clean: &[Value], fresh: &[Value], near_src: usize) -> Vec<(Vec<u8>, CheckId, Option<usize>)> {
    let js = |v: &Value| serde_json::to_vec(v).unwrap_or_default();
    let mut broken = js(&fresh[0]);
    broken.truncate(broken.len() / 2);
    let mut bad_utf8 = js(&fresh[1]);
    let at = bad_utf8.len() - 5;
    bad_utf8.splice(at..at, [0xFF, 0xFE]);
    let mut missing = fresh[2].clone();
    missing.as_object_mut().map(|o| o.remove("response"));
    let resp = text(&fresh[4], "response");
    let huge = set(&fresh[4], "response", json!(resp.repeat(30_000 / resp.len().max(1) + 1)));
    let control = set(&fresh[5], "response", json!(text(&fresh[5], "response") + "\u{7} end"));
    // Case and whitespace changed: equal after normalization.
    let exact = set(
        &set(&clean[3], "response", json!(format!("  {}  ", text(&clean[3], "response").to_uppercase()))),
        "instruction",
        json!(text(&clean[3], "instruction").replace(' ', "  ")),
    );
    let conflict = set(&clean[5], "response", json!(text(&clean[6], "response") + " (other answer)"));
    let ctx = text(&clean[near_src], "context");
    let mut words: Vec<&str> = ctx.split(' ').collect();
    let mid = words.len() / 2;
    words[mid] = "zebra";
    let near = set(&clean[near_src], "context", json!(words.join(" ")));
    vec![
        (broken, CheckId::InvalidJson, None),
        (bad_utf8, CheckId::InvalidUtf8, None),
        (js(&missing), CheckId::MissingField, None),
        (js(&set(&fresh[3], "response", json!(" \n "))), CheckId::EmptyField, None),
        (js(&set(&fresh[6], "instruction", json!(42))), CheckId::WrongType, None),
        (b"[1, 2, 3]".to_vec(), CheckId::NotAnObject, None),
        (js(&huge), CheckId::LengthOutlier, None),
        (js(&control), CheckId::ControlChars, None),
        (js(&exact), CheckId::ExactDuplicate, Some(3)),
        (js(&conflict), CheckId::ConflictingAnswer, Some(5)),
        (js(&near), CheckId::NearDuplicate, Some(near_src)),
    ]
}

fn audit(path: &Path, cfg: &AuditConfig) -> Result<AuditReport> {
    let opts = AuditOptions { keep_clean: true, ..Default::default() };
    Ok(checks::audit_files(&[path.to_path_buf()], cfg, &opts)?)
}

#[test]
fn every_planted_row_is_flagged_at_its_line_and_clean_rows_pass() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let corpus = build(dir.path())?;
    let mut cfg = AuditConfig::default();
    cfg.actions.insert("length_outlier".into(), Action::Quarantine);
    let report = audit(&corpus.path, &cfg)?;

    let got: Vec<(usize, CheckId, Option<usize>)> =
        report.findings.iter().map(|f| (f.row.line, f.check, f.related().map(|r| r.line))).collect();
    let mut want: Vec<(usize, CheckId, Option<usize>)> =
        corpus.planted.iter().map(|p| (p.line, p.check, p.related)).collect();
    want.sort();
    assert_eq!(got, want, "findings (line, check, related line)");

    let removed: BTreeSet<usize> = corpus.planted.iter().filter(|p| !p.check.is_pii()).map(|p| p.line).collect();
    let pii_rows = corpus.planted.iter().filter(|p| p.check.is_pii()).count();
    assert_eq!(report.rows.read, corpus.lines);
    assert_eq!(report.rows.quarantined, removed.len());
    assert_eq!(report.rows.warned, pii_rows);
    assert_eq!(report.rows.clean, corpus.kept.len() - pii_rows);
    let passed: BTreeSet<usize> = report.clean.iter().map(|s| s.row.line).collect();
    assert_eq!(passed, corpus.kept, "exactly the clean and PII rows pass through");
    for p in &corpus.planted {
        assert_eq!(report.counts[&p.check].found, 1, "{}", p.check);
    }

    // quarantine.jsonl: every removed row, with file, line, check, reason and raw text.
    let q = dir.path().join("quarantine.jsonl");
    assert_eq!(checks::write_quarantine(&q, &report)?, removed.len());
    let source = std::fs::read(&corpus.path)?;
    let source_lines: Vec<&[u8]> = source.split(|&b| b == b'\n').collect();
    let mut seen = BTreeSet::new();
    for l in std::fs::read_to_string(&q)?.lines() {
        let v: Value = serde_json::from_str(l)?;
        let line = v["line"].as_u64().context("line")? as usize;
        let planted = corpus.planted.iter().find(|p| p.line == line).context("a planted row")?;
        assert_eq!(v["check"], planted.check.name(), "line {line}");
        assert_eq!(v["file"], corpus.path.display().to_string());
        assert!(!v["reason"].as_str().unwrap_or_default().is_empty());
        let raw = String::from_utf8_lossy(source_lines[line - 1]);
        let raw = raw.chars().take(2000).collect::<String>();
        assert!(v["raw"].as_str().is_some_and(|r| r.trim_end_matches('…') == raw.as_str()), "raw of line {line}");
        seen.insert(line);
    }
    assert_eq!(seen, removed);
    Ok(())
}

#[test]
fn defaults_warn_on_length_and_audit_json_counts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let corpus = build(dir.path())?;
    let report = audit(&corpus.path, &AuditConfig::default())?;
    let huge = corpus.planted.iter().find(|p| p.check == CheckId::LengthOutlier).context("huge row")?;
    assert!(report.clean.iter().any(|s| s.row.line == huge.line), "a length outlier only warns by default");
    assert!(report.failed().is_none());
    let out = dir.path().join("audit.json");
    checks::write_audit_json(&out, &report)?;
    let v: Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    assert_eq!(v["rows"]["read"], corpus.lines);
    assert_eq!(v["counts"]["length_outlier"]["action"], "warn");
    assert_eq!(v["counts"]["near_duplicate"]["found"], 1);
    assert_eq!(v["counts"]["bad_role"]["found"], 0);
    assert_eq!(v["findings"].as_array().map(Vec::len), Some(corpus.planted.len()));
    assert!(v["failed"].is_null());
    Ok(())
}

#[test]
fn fail_action_names_the_first_failing_row() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let corpus = build(dir.path())?;
    let mut cfg = AuditConfig::default();
    cfg.actions.insert("duplicates".into(), Action::Fail);
    let report = audit(&corpus.path, &cfg)?;
    let first = corpus.planted.iter().find(|p| p.check == CheckId::ExactDuplicate).context("exact")?;
    let msg = report.failed().context("a fail action fired")?;
    assert!(msg.starts_with(&format!("{}:{}: exact_duplicate: ", corpus.path.display(), first.line)), "{msg}");
    Ok(())
}

fn superni() -> PathBuf {
    shared_dir().join("data/instruction/superni_en_shared.jsonl")
}

#[test]
fn clean_superni_loses_at_most_half_a_percent_by_default() -> Result<()> {
    // Rows that share a task definition and differ in input or answer are not duplicates: whole
    // rows compared, 1,863 of these 12,800 rows (14.6 %) were near duplicates.
    let report = checks::audit_files(&[superni()], &AuditConfig::default(), &AuditOptions::default())?;
    let (read, lost, near) = (report.rows.read, report.rows.quarantined, report.counts[&CheckId::NearDuplicate].found);
    assert_eq!(read, 12_800);
    assert!(lost * 200 <= read, "{lost} of {read} rows quarantined");
    assert!(near * 200 <= read, "{near} of {read} rows are near duplicates");
    Ok(())
}

/// A copy of `row` with the middle word of `key` replaced.
fn one_word_changed(row: &Value, key: &str) -> Value {
    let t = text(row, key);
    let mut words: Vec<&str> = t.split(' ').collect();
    let mid = words.len() / 2;
    words[mid] = if words[mid] == "zebra" { "giraffe" } else { "zebra" };
    set(row, key, json!(words.join(" ")))
}

#[test]
fn planted_near_copies_of_superni_rows_are_still_caught() -> Result<()> {
    let rows = read_rows("instruction/superni_en_shared.jsonl")?;
    // The first row of each task whose input and answer hold 80 words or more (one changed word
    // is then well above the threshold, see the near-duplicate docs), from 20 tasks.
    let words =
        |r: &Value| text(r, "context").split_whitespace().count() + text(r, "response").split_whitespace().count();
    let mut tasks = BTreeSet::new();
    let sources: Vec<usize> =
        (0..rows.len()).filter(|&i| words(&rows[i]) >= 80 && tasks.insert(text(&rows[i], "task"))).take(20).collect();
    ensure!(sources.len() == 20, "{} source rows", sources.len());
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("superni_with_copies.jsonl");
    let mut out = std::fs::read_to_string(superni())?;
    // (line of the copy, line of its source, changed field)
    let mut planted = Vec::new();
    for &i in &sources {
        for key in ["context", "response"] {
            out += &serde_json::to_string(&one_word_changed(&rows[i], key))?;
            out.push('\n');
            planted.push((rows.len() + planted.len() + 1, i + 1, key));
        }
    }
    std::fs::write(&path, out)?;
    let find = |report: &AuditReport, line: usize| -> Option<(CheckId, usize)> {
        let f = report.findings.iter().find(|f| f.row.line == line && f.action.removes_row())?;
        Some((f.check, f.related()?.line))
    };
    // Defaults: a changed input is a near duplicate (of the rest after the shared instruction);
    // a changed answer to the same prompt is a conflicting answer.
    let report = audit(&path, &AuditConfig::default())?;
    for &(line, src, key) in &planted {
        let want = if key == "context" { CheckId::NearDuplicate } else { CheckId::ConflictingAnswer };
        assert_eq!(find(&report, line), Some((want, src)), "copy at line {line} of line {src}, {key} changed");
    }
    // Without the conflict check the changed answers are near duplicates too.
    let mut cfg = AuditConfig::default();
    cfg.actions.insert("conflicting_answer".into(), Action::Off);
    let report = audit(&path, &cfg)?;
    for &(line, src, key) in &planted {
        assert_eq!(find(&report, line), Some((CheckId::NearDuplicate, src)), "copy at {line} of {src}, {key} changed");
    }
    Ok(())
}

#[test]
fn audit_outputs_stay_a_pair_when_the_quarantine_cannot_be_written() -> Result<()> {
    // The new audit.json used to be written first and left beside the old quarantine.jsonl when
    // the quarantine failed (full disk; here its data file is gone when it is re-read).
    let dir = tempfile::tempdir()?;
    let corpus = build(dir.path())?;
    let out = dir.path().join("out");
    std::fs::create_dir(&out)?;
    let old = audit(&corpus.path, &AuditConfig::default())?;
    assert_eq!(checks::write_audit_outputs(&out, &old)?, old.rows.quarantined);
    let listing = |d: &Path| -> Result<Vec<(String, Vec<u8>)>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(d)? {
            let e = e?;
            v.push((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path())?));
        }
        v.sort();
        Ok(v)
    };
    let before = listing(&out)?;
    assert_eq!(before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["audit.json", "quarantine.jsonl"]);

    let mut cfg = AuditConfig::default();
    cfg.actions.insert("length_outlier".into(), Action::Quarantine);
    let new = audit(&corpus.path, &cfg)?;
    assert!(new.rows.quarantined > old.rows.quarantined);
    let moved = dir.path().join("moved.jsonl");
    std::fs::rename(&corpus.path, &moved)?;
    let err = checks::write_audit_outputs(&out, &new).err().context("the quarantine cannot be written")?;
    assert!(err.to_string().contains("corpus.jsonl"), "{err}");
    assert_eq!(listing(&out)?, before, "the old pair, untouched, and no temporary file");

    std::fs::rename(&moved, &corpus.path)?;
    assert_eq!(checks::write_audit_outputs(&out, &new)?, new.rows.quarantined);
    let v: Value = serde_json::from_slice(&std::fs::read(out.join("audit.json"))?)?;
    let q = std::fs::read_to_string(out.join("quarantine.jsonl"))?;
    assert_eq!(v["rows"]["quarantined"], q.lines().count(), "the new pair belongs together");
    Ok(())
}
