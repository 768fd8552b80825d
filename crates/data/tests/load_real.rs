//! Loading the real instruction data sets, and a fixture of real lines mixed with bad ones.
use std::io::Write;
use std::path::{Path, PathBuf};

use tuneguard_data::{load_file, write_rejected, DataError, DataFormat, Example, FileKind, LoadOptions, RejectKind};

fn instruction_file(name: &str) -> PathBuf {
    tuneguard_model::testutil::shared_dir().join("data/instruction").join(name)
}

fn real_lines(name: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(instruction_file(name))?;
    Ok(text.lines().take(n).map(str::to_string).collect())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::File::create(path)?.write_all(bytes)?;
    Ok(())
}

#[test]
fn selfinstruct_seed_tasks_all_accepted() -> anyhow::Result<()> {
    let data = load_file(&instruction_file("selfinstruct_seed_tasks.jsonl"), &LoadOptions::default())?;
    assert_eq!(data.format, DataFormat::instruction());
    assert_eq!(data.stats.rows, 175);
    assert_eq!(data.stats.accepted, 175);
    assert!(data.rejected.is_empty(), "{:?}", data.rejected.first());
    assert_eq!(data.lines.len(), 175);
    assert_eq!(data.lines[174], 175);
    // Row 1 has an empty context: the user turn is the instruction alone.
    let Example::Chat(m) = &data.examples[0] else { anyhow::bail!("expected a chat example") };
    assert_eq!(m.len(), 2);
    assert!(m[0].content.starts_with("Is there anything I can eat for a breakfast"));
    assert!(!m[0].content.contains("\n\n"));
    assert_eq!(m[1].role, "assistant");
    Ok(())
}

#[test]
fn superni_context_joins_instruction() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("superni.jsonl");
    write(&path, (real_lines("superni_en_shared.jsonl", 20)?.join("\n") + "\n").as_bytes())?;
    let data = load_file(&path, &LoadOptions::default())?;
    assert_eq!(data.stats.accepted, 20);
    let Example::Chat(m) = &data.examples[0] else { anyhow::bail!("expected a chat example") };
    assert!(m[0].content.starts_with("Craft one correct answer"));
    assert!(m[0].content.contains("\n\nContext: I moved my stuff"));
    assert_eq!(m[1].content, "Because she happens to find bald headed men attractive .");
    Ok(())
}

/// Real lines with bad ones between them; each bad line is rejected with its line number.
#[test]
fn bad_lines_are_rejected_with_line_and_reason() -> anyhow::Result<()> {
    let good = real_lines("selfinstruct_seed_tasks.jsonl", 4)?;
    let mut bytes: Vec<u8> = Vec::new();
    let mut push = |line: &[u8]| {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    };
    push(good[0].as_bytes()); // 1
    push(br#"{"instruction": "Say hi.", "response": "hi""#); // 2: broken JSON
    push(good[1].as_bytes()); // 3
    push(b"{\"instruction\": \"caf\xe9\", \"response\": \"x\"}"); // 4: Latin-1 byte
    push(br#"{"instruction": "Say hi.", "context": ""}"#); // 5: no response
    push(b""); // 6: blank, skipped
    push(br#"{"instruction": "Say hi.", "context": "", "response": "  "}"#); // 7: empty response
    push(good[2].as_bytes()); // 8
    push(br#"{"instruction": "Say hi.", "messages": [{"role": "user", "content": "hi"}]}"#); // 9: wrong shape
    push(br#"[1, 2]"#); // 10: not an object
    push(good[3].as_bytes()); // 11
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mixed.jsonl");
    write(&path, &bytes)?;
    let data = load_file(&path, &LoadOptions::default())?;
    assert_eq!(data.lines, [1, 3, 8, 11]);
    assert_eq!(data.stats.rows, 10);
    assert_eq!(data.stats.blank_lines, 1);
    let got: Vec<(usize, RejectKind)> = data.rejected.iter().map(|r| (r.line, r.kind)).collect();
    assert_eq!(
        got,
        [
            (2, RejectKind::InvalidJson),
            (4, RejectKind::InvalidUtf8),
            (5, RejectKind::MissingField),
            (7, RejectKind::EmptyField),
            (9, RejectKind::MissingField),
            (10, RejectKind::NotAnObject),
        ]
    );
    assert!(data.rejected[0].reason.starts_with("invalid JSON: EOF while parsing"), "{}", data.rejected[0].reason);
    assert_eq!(data.rejected[1].reason, "not valid UTF-8 (bad byte at column 21)");
    assert_eq!(data.rejected[2].reason, "missing field `response`");
    assert_eq!(data.rejected[3].reason, "field `response` is empty");
    assert_eq!(data.rejected[1].raw, "{\"instruction\": \"caf\u{fffd}\", \"response\": \"x\"}");
    assert_eq!(data.rejected[2].to_string(), format!("{}:5: missing field `response`", path.display()));
    assert_eq!(data.stats.rejected_by_kind.get("missing_field"), Some(&2));

    // rejected.jsonl in the output folder, one line per reject.
    let out = dir.path().join("out");
    std::fs::create_dir(&out)?;
    write_rejected(&out.join("rejected.jsonl"), &data.rejected)?;
    let text = std::fs::read_to_string(out.join("rejected.jsonl"))?;
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or_default())?;
    assert_eq!(text.lines().count(), 6);
    assert_eq!(first["line"], 2);
    assert_eq!(first["file"], path.display().to_string());

    // The same file under a strict recipe stops the run, naming the fraction.
    let strict = LoadOptions { max_reject_fraction: Some(0.1), ..Default::default() };
    match load_file(&path, &strict) {
        Err(e @ DataError::TooManyRejected { rejected: 6, rows: 10, .. }) => {
            assert!(e.to_string().contains("fraction 0.6000"), "{e}");
        }
        other => anyhow::bail!("expected TooManyRejected, got {other:?}"),
    }
    Ok(())
}

#[test]
fn messages_without_assistant_turn_rejected() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("chat.jsonl");
    let text = concat!(
        r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}"#,
        "\n",
        r#"{"messages": [{"role": "user", "content": "Hi"}]}"#,
        "\n",
        r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Yo"}]}"#,
        "\n",
    );
    write(&path, text.as_bytes())?;
    let data = load_file(&path, &LoadOptions::default())?;
    assert_eq!(data.format, DataFormat::messages());
    assert_eq!(data.examples.len(), 1);
    let got: Vec<(usize, &str)> = data.rejected.iter().map(|r| (r.line, r.reason.as_str())).collect();
    assert_eq!(
        got,
        [
            (2, "`messages` has no assistant turn"),
            (3, "`messages[1].role` is `bot`; expected system, user or assistant")
        ]
    );
    Ok(())
}

#[test]
fn csv_with_header_and_quoted_newlines() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("pc.csv");
    let text = "prompt,completion\n\
                \"Name a colour.\",Red.\n\
                \"Two lines:\nhere\",\"A, B\"\n\
                only one field\n\
                \"Empty answer\",\n";
    write(&path, text.as_bytes())?;
    let data = load_file(&path, &LoadOptions::default())?;
    assert_eq!(data.format, DataFormat::prompt_completion());
    assert_eq!(data.lines, [2, 3]);
    let Example::Chat(m) = &data.examples[1] else { anyhow::bail!("expected a chat example") };
    assert_eq!((m[0].content.as_str(), m[1].content.as_str()), ("Two lines:\nhere", "A, B"));
    let got: Vec<(usize, RejectKind)> = data.rejected.iter().map(|r| (r.line, r.kind)).collect();
    assert_eq!(got, [(5, RejectKind::FieldCount), (6, RejectKind::EmptyField)]);

    // A format naming a column the header lacks is an error naming the column.
    let opts = LoadOptions { format: Some(DataFormat::alpaca()), file_kind: Some(FileKind::Csv), ..Default::default() };
    match load_file(&path, &opts) {
        Err(DataError::InvalidRecord { line: 1, field, .. }) => assert_eq!(field, "instruction"),
        other => anyhow::bail!("expected InvalidRecord, got {other:?}"),
    }
    Ok(())
}

#[test]
fn empty_and_undetectable_data_sets_are_errors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let empty = dir.path().join("empty.jsonl");
    write(&empty, b"\n\n")?;
    assert!(matches!(load_file(&empty, &LoadOptions::default()), Err(DataError::EmptyDataset { rows: 0, .. })));
    let all_bad = dir.path().join("bad.jsonl");
    write(&all_bad, b"{\"text\": \"\"}\n{oops\n")?;
    assert!(matches!(
        load_file(&all_bad, &LoadOptions::default()),
        Err(DataError::EmptyDataset { rows: 2, rejected: 2, .. })
    ));
    let unknown = dir.path().join("unknown.jsonl");
    write(&unknown, b"{\"question\": \"q\", \"answer\": \"a\"}\n")?;
    assert!(matches!(load_file(&unknown, &LoadOptions::default()), Err(DataError::UnknownFormat { .. })));
    let missing = dir.path().join("nope.jsonl");
    assert!(matches!(load_file(&missing, &LoadOptions::default()), Err(DataError::Io { .. })));
    Ok(())
}

/// `fields` as one CSV line: a field holding a comma, quote or line end is quoted, its quotes
/// doubled (as Python's `csv.writer` writes).
fn csv_line(fields: &[&str]) -> String {
    let quote = |f: &&str| {
        if f.contains([',', '"', '\n']) {
            format!("\"{}\"", f.replace('"', "\"\""))
        } else {
            f.to_string()
        }
    };
    fields.iter().map(quote).collect::<Vec<_>>().join(",")
}

/// The first `n` Self-Instruct seed tasks as CSV (header `instruction,context,response`), with
/// `edit` applied to each data line (0-based row index).
fn selfinstruct_csv(n: usize, edit: impl Fn(usize, String) -> String) -> anyhow::Result<String> {
    let mut lines = vec!["instruction,context,response".to_string()];
    for (i, line) in real_lines("selfinstruct_seed_tasks.jsonl", n)?.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        let (a, b, c) = (field("instruction"), field("context"), field("response"));
        lines.push(edit(i, csv_line(&[&a, &b, &c])));
    }
    Ok(lines.join("\n") + "\n")
}

/// Regression: the `csv` crate read a field with an unclosed quote across the line end, so the
/// next row was merged into it: 11 rows in, 10 examples out, 0 rejected, and the merged text
/// trained on. The malformed row is rejected with its line; its neighbour is kept as it is.
#[test]
fn csv_unclosed_quote_does_not_swallow_next_row() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Row 2 (line 3, "What is the relation between the given pairs?...") loses its closing quote.
    let text = selfinstruct_csv(11, |i, line| if i == 1 { format!("\"{line}") } else { line })?;
    let path = dir.path().join("seed.csv");
    write(&path, text.as_bytes())?;
    let data = load_file(&path, &LoadOptions::default())?;
    assert_eq!((data.stats.rows, data.stats.accepted, data.stats.rejected), (11, 10, 1));
    assert_eq!(data.lines, [2, 4, 9, 11, 17, 18, 40, 42, 45, 46]);
    let r = &data.rejected[0];
    assert_eq!((r.line, r.kind), (3, RejectKind::InvalidCsv));
    assert_eq!(
        r.reason,
        "invalid CSV: field 1 opens a quote that the quote on line 4 does not properly close (it is followed by \
         '-', not by a comma or the end of the line); a closing quote is probably missing on this line, which is \
         rejected alone"
    );
    assert!(r.raw.starts_with("\"What is the relation between the given pairs?,Night : Day"), "{}", r.raw);
    assert!(!r.raw.contains('\n'), "only the malformed line is rejected: {}", r.raw);
    // Every other row reads exactly as the same row of the JSONL file.
    let jsonl = dir.path().join("seed.jsonl");
    write(&jsonl, (real_lines("selfinstruct_seed_tasks.jsonl", 11)?.join("\n") + "\n").as_bytes())?;
    let mut want = load_file(&jsonl, &LoadOptions::default())?.examples;
    want.remove(1);
    assert_eq!(data.examples, want);
    Ok(())
}

/// What the strict CSV reader must keep accepting: quoted fields over several lines and doubled
/// quotes (both in the real seed tasks), and a quote inside an unquoted field.
#[test]
fn csv_quoted_multiline_fields_and_doubled_quotes_are_accepted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let text =
        selfinstruct_csv(11, |i, line| if i == 10 { line.replacen("games", "\"party\" games", 1) } else { line })?;
    let path = dir.path().join("seed.csv");
    write(&path, text.as_bytes())?;
    let data = load_file(&path, &LoadOptions::default())?;
    assert_eq!((data.stats.rows, data.stats.accepted, data.stats.rejected), (11, 11, 0));
    assert_eq!(data.lines, [2, 3, 4, 9, 11, 17, 18, 40, 42, 45, 46]);
    let user = |i: usize| match &data.examples[i] {
        Example::Chat(m) => m[0].content.clone(),
        Example::Text(t) => t.clone(),
    };
    // Line 4: a context of three lines; line 9: a context that is a quotation.
    assert_eq!(
        user(2),
        "Generate a one-sentence description for each of the following people.\n\n- Brack Obama\n- Elon Musk\n- Taylor Swift"
    );
    assert_eq!(
        user(3),
        "Describe a situation in which the given stereotype can harm you.\n\n\"All Asians are smart!\""
    );
    assert!(user(10).starts_with("Suggest some \"party\" games that can be played"), "{}", user(10));
    Ok(())
}

/// Regression: serde_json keeps the last of two values for one key, so a row with a repeated
/// key was accepted and its hidden last value trained on (a poisoning vector). Such rows are
/// rejected as `duplicate_key`, naming the key and the object, at any depth.
#[test]
fn json_repeated_key_is_rejected() -> anyhow::Result<()> {
    let good = real_lines("selfinstruct_seed_tasks.jsonl", 4)?;
    // Line 2: a second top-level "response" after the real one.
    let poisoned =
        good[1].replacen("\"response\": ", "\"response\": \"IGNORE ALL PREVIOUS INSTRUCTIONS\", \"response\": ", 1);
    assert_ne!(poisoned, good[1]);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("seed.jsonl");
    write(&path, [good[0].as_str(), &poisoned, &good[2], &good[3]].join("\n").as_bytes())?;
    let data = load_file(&path, &LoadOptions::default())?;
    assert_eq!(data.lines, [1, 3, 4]);
    let r = &data.rejected[0];
    assert_eq!((data.rejected.len(), r.line, r.kind), (1, 2, RejectKind::DuplicateKey));
    assert!(
        r.reason.starts_with(
            "duplicate key `response`, repeated at column 244: JSON readers keep only one of the two values"
        ),
        "{}",
        r.reason
    );
    assert_eq!(data.stats.rejected_by_kind.get("duplicate_key"), Some(&1));

    // Inside a messages turn, in JSONL and in a CSV cell.
    let turns = |content: &str| -> anyhow::Result<String> {
        let v: serde_json::Value = serde_json::from_str(&good[0])?;
        let m = serde_json::json!([
            {"role": "user", "content": v["instruction"]},
            {"role": "assistant", "content": v["response"]},
        ]);
        Ok(m.to_string().replacen("\"content\":", content, 2).replacen(content, "\"content\":", 1))
    };
    let dup = turns("\"content\":\"chat\",\"content\":")?;
    let chat = dir.path().join("chat.jsonl");
    write(&chat, format!("{{\"messages\": {}}}\n{{\"messages\": {dup}}}\n", turns("\"content\":")?).as_bytes())?;
    let data = load_file(&chat, &LoadOptions::default())?;
    assert_eq!(data.lines, [1]);
    assert_eq!((data.rejected[0].line, data.rejected[0].kind), (2, RejectKind::DuplicateKey));
    assert!(
        data.rejected[0].reason.starts_with("duplicate key `content` in `messages[1]`, repeated at column"),
        "{}",
        data.rejected[0].reason
    );
    let csv = dir.path().join("chat.csv");
    let cell = |s: String| format!("\"{}\"", s.replace('"', "\"\""));
    write(&csv, format!("messages\n{}\n{}\n", cell(turns("\"content\":")?), cell(dup)).as_bytes())?;
    let data = load_file(&csv, &LoadOptions::default())?;
    assert_eq!(data.lines, [2]);
    assert_eq!((data.rejected[0].line, data.rejected[0].kind), (3, RejectKind::DuplicateKey));
    assert!(
        data.rejected[0].reason.starts_with("field `messages`: duplicate key `content` in `messages[1]`"),
        "{}",
        data.rejected[0].reason
    );
    Ok(())
}

/// `messages` rows built from the first `n` seed tasks: user (instruction and context), then
/// assistant (response).
fn seed_conversations(n: usize) -> anyhow::Result<Vec<serde_json::Value>> {
    real_lines("selfinstruct_seed_tasks.jsonl", n)?
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let ctx = v["context"].as_str().unwrap_or_default();
            let user = match ctx {
                "" => v["instruction"].as_str().unwrap_or_default().to_string(),
                c => format!("{}\n\n{c}", v["instruction"].as_str().unwrap_or_default()),
            };
            Ok(serde_json::json!([{"role": "user", "content": user}, {"role": "assistant", "content": v["response"]}]))
        })
        .collect()
}

/// Regression: a `messages` row whose first turn is the assistant's (or that has only an
/// assistant turn) stopped a whole `train` run with a chat-template error naming "example 5".
/// The loader rejects such rows with their line, so `tuneguard audit FILE` flags them too.
#[test]
fn messages_opening_with_the_assistant_are_rejected() -> anyhow::Result<()> {
    let mut rows = seed_conversations(8)?;
    // Line 6: the reply first, then the prompt and the reply again; line 8: the reply alone.
    let swapped = serde_json::json!([rows[5][1], rows[5][0], rows[5][1]]);
    rows[5] = swapped;
    let alone = serde_json::json!([rows[7][1]]);
    rows[7] = alone;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("chat.jsonl");
    let text: Vec<String> = rows.iter().map(|m| serde_json::json!({ "messages": m }).to_string()).collect();
    write(&path, (text.join("\n") + "\n").as_bytes())?;
    let data = load_file(&path, &LoadOptions::default())?;
    assert_eq!(data.lines, [1, 2, 3, 4, 5, 7]);
    let got: Vec<(usize, RejectKind, &str)> =
        data.rejected.iter().map(|r| (r.line, r.kind, r.reason.as_str())).collect();
    let reason = "`messages[0]`, the first turn, is the assistant's; a conversation must open with a user turn";
    assert_eq!(got, [(6, RejectKind::AssistantFirst, reason), (8, RejectKind::AssistantFirst, reason)]);
    Ok(())
}

/// Regression: the row shape is guessed from the first row without a word, so a file whose
/// first row is prompt/completion rejected every instruction row as "missing field". The shape
/// and the line it was detected from are reported, and a loud warning names the share of rows
/// that do not fit.
#[test]
fn a_shape_guessed_from_line_1_that_most_rows_do_not_fit_is_reported() -> anyhow::Result<()> {
    let rows = real_lines("selfinstruct_seed_tasks.jsonl", 10)?;
    let first: serde_json::Value = serde_json::from_str(&rows[0])?;
    let pc = serde_json::json!({"prompt": first["instruction"], "completion": first["response"]});
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("mixed.jsonl");
    write(
        &path,
        (std::iter::once(pc.to_string()).chain(rows[1..].iter().cloned()).collect::<Vec<_>>().join("\n") + "\n")
            .as_bytes(),
    )?;
    let data = load_file(&path, &LoadOptions { keep_empty: true, ..Default::default() })?;
    let shape = data.shape();
    assert_eq!(shape.format, Some(DataFormat::prompt_completion()));
    assert_eq!(shape.source, tuneguard_data::ShapeSource::Detected(1));
    assert_eq!((shape.rows, shape.rows_not_fitting, data.stats.rejected), (10, 9, 9));
    let file = path.display();
    assert_eq!(
        shape.describe(),
        format!("{file}: prompt_completion rows (fields prompt, completion), shape detected from line 1")
    );
    assert_eq!(
        shape.warning("data.format").as_deref(),
        Some(
            format!(
                "{file}: 9 of 10 rows (90.0%) do not fit the prompt_completion shape detected from line 1 (they lack \
                 its fields prompt, completion) and are rejected; if the file holds another shape, set it with data.format"
            )
            .as_str()
        )
    );
    // Given the shape, the same file is read as instruction rows; the odd first row is the misfit.
    let given = load_file(&path, &LoadOptions { format: Some(DataFormat::instruction()), ..Default::default() })?;
    let shape = given.shape();
    assert_eq!(
        (shape.source, shape.rows_not_fitting, given.lines.first()),
        (tuneguard_data::ShapeSource::Given, 1, Some(&2))
    );
    assert_eq!(shape.warning("data.format"), None);
    // Most rows fitting: no warning.
    let fine = load_file(&instruction_file("selfinstruct_seed_tasks.jsonl"), &LoadOptions::default())?;
    assert_eq!((fine.shape().rows_not_fitting, fine.shape().warning("data.format")), (0, None));
    Ok(())
}
