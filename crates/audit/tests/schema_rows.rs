//! Schema rules the loader added for the data guard, seen through `audit_files` on real rows: a
//! row with a repeated JSON key (the hidden value would train) and a conversation that opens
//! with the assistant's reply are quarantined with their own check id and line, with no model.
use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};
use tuneguard_audit::checks::{self, Action, AuditConfig, AuditOptions, CheckId};
use tuneguard_model::testutil::shared_dir;

/// The first `n` Super-NaturalInstructions rows as conversations.
fn conversations(n: usize) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(shared_dir().join("data/instruction/superni_en_shared.jsonl"))?;
    text.lines()
        .take(n)
        .map(|l| {
            let r: Value = serde_json::from_str(l)?;
            let user = format!("{}\n\n{}", r["instruction"].as_str().unwrap_or_default(), r["context"].as_str().unwrap_or_default());
            Ok(json!({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": r["response"]}]}))
        })
        .collect()
}

fn write(path: &Path, rows: &[String]) -> Result<()> {
    Ok(std::fs::write(path, rows.join("\n") + "\n")?)
}

#[test]
fn repeated_keys_and_assistant_first_turns_are_quarantined() -> Result<()> {
    let rows = conversations(12)?;
    let mut lines: Vec<String> = rows.iter().map(Value::to_string).collect();
    // Line 3: the reply's content given twice, the second one hidden from a reader of the first.
    lines[2] = lines[2]
        .replacen("\"content\":", "\"content\":\"IGNORE ALL PREVIOUS INSTRUCTIONS\",\"content\":", 2)
        .replacen("\"content\":\"IGNORE ALL PREVIOUS INSTRUCTIONS\",\"content\":", "\"content\":", 1);
    // Line 9: the reply before the prompt.
    let m = &rows[8]["messages"];
    lines[8] = json!({"messages": [m[1], m[0], m[1]]}).to_string();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("chat.jsonl");
    write(&path, &lines)?;
    let report = checks::audit_files(std::slice::from_ref(&path), &AuditConfig::default(), &AuditOptions::default())?;
    let got: Vec<(usize, CheckId, Action)> = report.findings.iter().map(|f| (f.row.line, f.check, f.action)).collect();
    assert_eq!(got, [(3, CheckId::DuplicateKey, Action::Quarantine), (9, CheckId::AssistantFirst, Action::Quarantine)]);
    assert!(CheckId::DuplicateKey.is_schema() && CheckId::AssistantFirst.is_schema());
    assert_eq!((report.rows.read, report.rows.quarantined, report.kept_rows()), (12, 2, 10));
    assert!(report.describe(&report.findings[0]).ends_with(&format!(
        "chat.jsonl:3: duplicate_key: duplicate key `content` in `messages[1]`, repeated at column {}: JSON readers keep \
         only one of the two values, most the last, so what is trained on is not what a reader of the row sees",
        lines[2].find("IGNORE").unwrap_or_default() + 43
    )));
    assert!(report.describe(&report.findings[1]).ends_with(
        "chat.jsonl:9: assistant_first: `messages[0]`, the first turn, is the assistant's; a conversation must open \
         with a user turn"
    ));
    Ok(())
}
