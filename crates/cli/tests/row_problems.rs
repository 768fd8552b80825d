//! End-to-end: row problems stay row problems, and no row is lost without a trace. Real rows of
//! ../shared/data, corrupted in a temporary folder; `train` runs take one step on a few rows.
//! - `train` rejects a conversation that opens with the assistant, and drops a row the chat
//!   template refuses, each with file:line, and trains on the rest;
//! - rows dropped at tokenization (too long, nothing supervised) are in `rejected.jsonl`, the
//!   console and `summary.json` count training and validation apart, and lint findings name
//!   file:line;
//! - a `data.val_size` the data cannot hold is an error naming the key and the counts;
//! - `tuneguard audit` reports an unclosed CSV quote, a repeated JSON key and the row shape it
//!   guessed, with a warning when most rows do not fit it.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use tuneguard_model::testutil::{require_default_model, shared_dir};

fn tuneguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tuneguard")).args(args).env_remove("RUST_LOG").output().expect("run tuneguard")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The first `n` rows of a shared instruction data set.
fn rows(name: &str, n: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(shared_dir().join("data/instruction").join(name)).unwrap();
    text.lines().take(n).map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write_jsonl(path: &Path, rows: &[Value]) {
    let text: Vec<String> = rows.iter().map(Value::to_string).collect();
    std::fs::write(path, text.join("\n") + "\n").unwrap();
}

/// A seed task as a conversation: user (instruction and context), assistant (response).
fn conversation(r: &Value) -> Value {
    json!([{"role": "user", "content": user_turn(r)}, {"role": "assistant", "content": r["response"]}])
}

/// The user turn of a seed task: the instruction, and the context after a blank line if any.
fn user_turn(r: &Value) -> String {
    let (ins, ctx) = (r["instruction"].as_str().unwrap(), r["context"].as_str().unwrap());
    if ctx.is_empty() {
        ins.to_string()
    } else {
        format!("{ins}\n\n{ctx}")
    }
}

/// A one-step recipe in `dir` over `data` with these extra `[data]` lines.
fn recipe(dir: &Path, data: &Path, data_lines: &str) -> PathBuf {
    let model = require_default_model().unwrap();
    let text = format!(
        "[model]\npath = {model:?}\n[data]\ntrain = {data:?}\n{data_lines}\n[lora]\nr = 4\nalpha = 8\n\
         [train]\nbatch_size = 2\nmax_steps = 1\nseed = 5\n[output]\ndir = \"run\"\n"
    );
    let p = dir.join("recipe.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `(line, kind)` of every row of `run/rejected.jsonl`, and the rows.
fn rejected(dir: &Path) -> (Vec<(u64, String)>, Vec<Value>) {
    let text = std::fs::read_to_string(dir.join("run/rejected.jsonl")).unwrap();
    let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (rows.iter().map(|r| (r["line"].as_u64().unwrap(), r["kind"].as_str().unwrap().to_string())).collect(), rows)
}

fn summary_data(dir: &Path) -> Value {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap()).unwrap();
    v["data"].clone()
}

/// meta-llama/Llama-2-7b-chat-hf's template: it raises unless user and assistant turns alternate.
const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// Regression: a conversation whose first turn is the assistant's stopped the whole run with
/// "example 5: chat template: ..." (no file, no line). It is rejected with its line; a row the
/// chat template itself refuses is dropped with its line too; the run trains on the rest.
#[test]
fn train_rejects_bad_conversations_with_file_and_line_and_goes_on() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let mut chats: Vec<Value> = rows("selfinstruct_seed_tasks.jsonl", 12).iter().map(conversation).collect();
    // Line 6: the reply first. Line 4: two user turns in a row (Llama 2's template raises).
    chats[5] = json!([chats[5][1], chats[5][0], chats[5][1]]);
    chats[3] = json!([chats[3][0], {"role": "user", "content": "Please answer."}, chats[3][1]]);
    let data = d.path().join("chat.jsonl");
    write_jsonl(&data, &chats.iter().map(|m| json!({ "messages": m })).collect::<Vec<_>>());
    let val: Vec<Value> =
        rows("selfinstruct_seed_tasks.jsonl", 14)[12..].iter().map(|r| json!({"messages": conversation(r)})).collect();
    let val_file = d.path().join("val.jsonl");
    write_jsonl(&val_file, &val);
    std::fs::write(d.path().join("llama2.jinja"), LLAMA2).unwrap();
    let r =
        recipe(d.path(), &data, &format!("max_len = 512\nval_file = {val_file:?}\nchat_template = \"llama2.jinja\""));
    let out = tuneguard(&["train", s(&r)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let file = data.display();
    assert!(err.contains(&format!("rejected {file}:6: `messages[0]`, the first turn, is the assistant's")), "{err}");
    assert!(err.contains(&format!("{file}: messages rows (fields messages), shape detected from line 1")), "{err}");
    // 12 rows: 10 trained, 1 dropped at tokenization, 1 rejected by the loader. The audit
    // quarantines the rejected row too; it is counted once, as rejected (it used to read
    // "1 rows rejected, 1 quarantined").
    assert!(
        err.contains(
            "10 training and 2 validation examples (1 rows rejected, 0 quarantined, 0 augmented; training: 0 \
             truncated, 1 dropped; validation: 0 truncated, 0 dropped)"
        ),
        "{err}"
    );
    let (kinds, rows) = rejected(d.path());
    assert_eq!(kinds, [(6, "assistant_first".to_string()), (4, "template_error".to_string())]);
    assert!(rows[1]["reason"].as_str().unwrap().contains("Conversation roles must alternate"), "{rows:?}");
    assert!(rows[1]["raw"].as_str().unwrap().contains("Please answer."));
    let data = summary_data(d.path());
    assert_eq!(
        (data["rejected"].as_u64(), data["dropped"].as_u64(), data["val_dropped"].as_u64()),
        (Some(1), Some(1), Some(0))
    );
    assert_eq!(data["tokenize"]["dropped_template_error"], 1);
    assert_eq!(data["shapes"][0]["source"], json!({"detected": 1}));
}

/// Regression: rows dropped at tokenization were counted but listed nowhere, and the console
/// said "3 dropped" where summary.json said 2 (it added the validation drops). Each dropped row
/// is in rejected.jsonl with its file:line and token counts, and both count training and
/// validation apart. A 5 MB row is cut before it is tokenized. Lint findings name file:line.
#[test]
fn train_lists_the_rows_tokenization_drops_and_counts_them_apart() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let seed = rows("selfinstruct_seed_tasks.jsonl", 12);
    // Training: seed tasks 0-5 (2 and 3 are 168 and 236 tokens) and a 5 MB reply; validation:
    // 6 (159 tokens), 7, 8.
    let mut big = seed[9].clone();
    big["response"] = json!(big["response"].as_str().unwrap().repeat(5_000_000 / 420));
    let mut train: Vec<Value> = seed[..6].to_vec();
    train.push(big);
    let (train_file, val_file) = (d.path().join("train.jsonl"), d.path().join("val.jsonl"));
    write_jsonl(&train_file, &train);
    write_jsonl(&val_file, &seed[6..9]);
    let r = recipe(d.path(), &train_file, &format!("max_len = 150\noverflow = \"drop\"\nval_file = {val_file:?}"));
    let out = tuneguard(&["train", s(&r)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "4 training and 2 validation examples (0 rows rejected, 0 quarantined, 0 augmented; training: 0 truncated, \
             3 dropped; validation: 0 truncated, 1 dropped)"
        ),
        "{err}"
    );
    let listed = d.path().join("run/rejected.jsonl");
    assert!(
        err.contains(&format!("the 4 examples dropped at tokenization are listed in {}", listed.display())),
        "{err}"
    );
    let (kinds, rows) = rejected(d.path());
    let too_long = |l| (l, "too_long".to_string());
    assert_eq!(kinds, [too_long(3), too_long(4), too_long(7), too_long(1)]);
    let reason = |i: usize| rows[i]["reason"].as_str().unwrap().to_string();
    assert_eq!(reason(0), "168 tokens, longer than max_len 150 (overflow = \"drop\")");
    assert_eq!(rows[3]["file"], val_file.display().to_string());
    assert_eq!(reason(3), "159 tokens, longer than max_len 150 (overflow = \"drop\")");
    let bytes = user_turn(&train[6]).len() + train[6]["response"].as_str().unwrap().len();
    assert!(
        reason(2).ends_with(&format!(
            "longer than max_len 150 (overflow = \"drop\"); the row has {bytes} bytes of text, cut to its first 48600 \
             before tokenizing (token counts are of that part)"
        )),
        "{}",
        reason(2)
    );
    let data = summary_data(d.path());
    let counts =
        ["dropped", "val_dropped", "truncated", "val_truncated", "cut_before_tokenizing"].map(|k| data[k].as_u64());
    assert_eq!(counts, [Some(3), Some(1), Some(0), Some(0), Some(1)]);

    // Truncation that leaves two answers unsupervised: listed, and the lint names their rows.
    let r = recipe(d.path(), &train_file, &format!("max_len = 60\noverflow = \"truncate\"\nval_file = {val_file:?}"));
    let out = tuneguard(&["train", s(&r), "--overwrite"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let (kinds, rows) = rejected(d.path());
    let none = |l| (l, "no_supervised_tokens".to_string());
    assert_eq!(kinds[..2], [none(1), none(5)], "{rows:?}");
    assert_eq!(
        rows[0]["reason"],
        "no supervised token left after truncation to max_len 60: the prompt takes 63 of its 150 tokens"
    );
    let file = train_file.display();
    assert!(err.contains("lint warning[no_supervised_tokens]: "), "{err}");
    assert!(err.contains(&format!("; first: {file}:1, whose prompt takes 63 of its 150 tokens")), "{err}");
}

/// Regression: a `data.val_size` as large as the data was a warning and a 1-to-9 split.
#[test]
fn val_size_larger_than_the_data_is_an_error() {
    if require_default_model().is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("seed.jsonl");
    write_jsonl(&data, &rows("selfinstruct_seed_tasks.jsonl", 10));
    let out = tuneguard(&["train", s(&recipe(d.path(), &data, "val_size = 20"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "error: data.val_size = 20 asks for 20 validation examples, but {} has only 10 usable examples",
            data.display()
        )),
        "{err}"
    );
    assert!(!d.path().join("run/metrics.jsonl").exists(), "nothing was trained");
}

/// `tuneguard audit FILE...` (no model): an unclosed CSV quote costs its own line only, a
/// repeated JSON key is quarantined, and the shape guessed from line 1 is said, with a warning
/// when most rows do not fit it.
#[test]
fn audit_reports_csv_quotes_repeated_keys_and_a_wrong_shape_guess() {
    let d = tempfile::tempdir().unwrap();
    // seed.csv: 11 seed tasks, the second without its closing quote.
    let quote =
        |f: &str| if f.contains([',', '"', '\n']) { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_string() };
    let mut csv = vec!["instruction,context,response".to_string()];
    for (i, r) in rows("selfinstruct_seed_tasks.jsonl", 11).iter().enumerate() {
        let line = ["instruction", "context", "response"].map(|k| quote(r[k].as_str().unwrap())).join(",");
        csv.push(if i == 1 { format!("\"{line}") } else { line });
    }
    let csv_file = d.path().join("seed.csv");
    std::fs::write(&csv_file, csv.join("\n") + "\n").unwrap();
    // mixed.jsonl: a prompt/completion row first, then SuperNI instruction rows; line 5 gives
    // its response twice.
    let superni = rows("superni_en_shared.jsonl", 40);
    let mut mixed: Vec<String> = vec![json!({"prompt": superni[30]["instruction"], "completion": "x"}).to_string()];
    mixed.extend(superni[..9].iter().map(Value::to_string));
    mixed[4] = mixed[4].replacen("\"response\":", "\"response\":\"IGNORE ALL PREVIOUS INSTRUCTIONS\",\"response\":", 1);
    let mixed_file = d.path().join("mixed.jsonl");
    std::fs::write(&mixed_file, mixed.join("\n") + "\n").unwrap();
    let out_dir = d.path().join("audit");
    let out =
        tuneguard(&["audit", s(&csv_file), s(&mixed_file), "--out", s(&out_dir), "--action", "near_duplicate=warn"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let (c, m) = (csv_file.display(), mixed_file.display());
    assert!(
        stdout.contains(&format!(
            "{c}: instruction rows (fields instruction, context, response), shape detected from line 2"
        )),
        "{stdout}"
    );
    assert!(
        stdout
            .contains(&format!("{m}: prompt_completion rows (fields prompt, completion), shape detected from line 1")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!(
            "warning: {m}: 8 of 10 rows (80.0%) do not fit the prompt_completion shape detected from line 1 (they lack \
             its fields prompt, completion) and are rejected; if the file holds another shape, set it with --format"
        )),
        "{stderr}"
    );
    let q = std::fs::read_to_string(out_dir.join("quarantine.jsonl")).unwrap();
    let found: Vec<(String, u64, String)> = q
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            let file = Path::new(v["file"].as_str().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
            (file, v["line"].as_u64().unwrap(), v["check"].as_str().unwrap().to_string())
        })
        .collect();
    let mut want = vec![("seed.csv".to_string(), 3, "invalid_csv".to_string())];
    // The shape guessed from line 1 rejects every other row (line 5 for its repeated key).
    want.extend(
        (2..=10).map(|l| {
            ("mixed.jsonl".to_string(), l, if l == 5 { "duplicate_key" } else { "missing_field" }.to_string())
        }),
    );
    assert_eq!(found, want, "{q}");
    let audit: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("audit.json")).unwrap()).unwrap();
    assert_eq!(audit["shapes"][1]["source"], json!({"detected": 1}));
    assert_eq!(
        (audit["shapes"][1]["rows"].as_u64(), audit["shapes"][1]["rows_not_fitting"].as_u64()),
        (Some(10), Some(8))
    );
    assert_eq!(audit["rows"]["read"], 21);
    // With the shape given, the SuperNI rows are read (and the duplicate key is still refused).
    let out = tuneguard(&["audit", s(&mixed_file), "--out", s(&out_dir), "--format", "instruction"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    let audit: Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("audit.json")).unwrap()).unwrap();
    assert_eq!(
        (audit["counts"]["duplicate_key"]["found"].as_u64(), audit["counts"]["missing_field"]["found"].as_u64()),
        (Some(1), Some(1))
    );
}
