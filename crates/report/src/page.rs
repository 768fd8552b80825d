//! The HTML page. maud escapes every interpolated string, so text from the run folder (config,
//! messages, metric names) cannot inject markup; only plotters' SVG goes in pre-escaped.
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::plot::{self, Field};
use crate::run::{num, RunData};

const CSS: &str = "body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#222}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .7em;text-align:left}\
th{background:#f4f4f4;font-weight:normal}td.num{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1em 0}svg{max-width:100%;height:auto}pre{background:#f7f7f7;padding:.8em;overflow-x:auto}\
.na{color:#888}.alarm{color:#b00}td{vertical-align:top}ul.examples{margin:0;padding-left:1.1em}\
code{overflow-wrap:anywhere}.quiet{color:#555}";

/// A JSON value as table text: integers plainly, floats to 4 decimals (scientific when tiny).
pub(crate) fn fmt_value(v: &Value) -> String {
    match v {
        Value::Null => "n/a".into(),
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x != 0.0 && x.abs() < 1e-3 {
                format!("{x:.3e}")
            } else {
                format!("{x:.4}")
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Numeric and boolean leaves of `v` as `(dotted key, text)`, sorted by key (serde_json's map order).
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, child, out);
            }
        }
        Value::Number(_) | Value::Bool(_) => out.push((prefix.to_string(), fmt_value(v))),
        _ => {}
    }
}

fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{seconds:.1} s"),
        60..=3599 => format!("{seconds:.1} s ({} min {} s)", s / 60, s % 60),
        _ => format!("{seconds:.1} s ({} h {} min)", s / 3600, (s % 3600) / 60),
    }
}

fn na() -> Markup {
    html! { span.na { "n/a" } }
}

fn kv_table(rows: &[(String, String)]) -> Markup {
    html! {
        table { @for (k, v) in rows { tr { th { (k) } td.num { (v) } } } }
    }
}

/// `args` as one shell line: arguments with spaces or shell characters in single quotes.
pub(crate) fn shell_join(args: &[Value]) -> String {
    let quote = |a: &str| {
        let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain {
            a.to_string()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    args.iter()
        .map(|a| quote(a.as_str().map_or_else(|| a.to_string(), str::to_string).as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where the run came from (the summary's `run` object, when present): start time, command
/// line, tool version and model.
fn run_info_rows(run: &RunData) -> Vec<(String, Option<String>)> {
    let Some(info) = run.run_info() else { return Vec::new() };
    let text = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_string);
    let command = info.get("command_line").and_then(Value::as_array).map(|a| shell_join(a));
    [
        ("started", text("started")),
        ("command line", command),
        ("tuneguard version", text("tool_version")),
        ("model", text("model_path")),
        ("model sha256", text("model_sha256")),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some())
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Steps, time, throughput, losses, best step and stop reason.
fn summary_rows(run: &RunData) -> Vec<(String, Option<String>)> {
    let s = &run.summary;
    let get = |k: &str| s.get(k).filter(|v| !v.is_null()).map(fmt_value);
    let steps = get("steps").or_else(|| run.train.last().map(|p| p.step.to_string())).map(|steps| {
        match run.total_steps().map(|t| t.to_string()) {
            Some(total) if total != steps => format!("{steps} of {total} planned"),
            _ => steps,
        }
    });
    let es = run.early_stopping();
    let metric = es.and_then(|e| e.get("metric")).and_then(Value::as_str).unwrap_or("val_loss");
    let best = run.best().map(|(step, v)| match v {
        Some(v) => format!("step {step}: {metric} {v:.4}"),
        None => format!("step {step}"),
    });
    let stop = es.and_then(|e| e.get("stop_reason")).and_then(Value::as_str).map(str::to_string).or_else(|| {
        let enabled = es.and_then(|e| e.get("enabled")).and_then(Value::as_bool);
        (enabled == Some(true) && run.stop_step().is_none()).then(|| "not stopped early (ran all steps)".to_string())
    });
    let mut rows = run_info_rows(run);
    rows.extend([
        ("steps".into(), steps),
        ("time".into(), num(s.get("seconds")).map(duration)),
        ("tokens/s".into(), num(s.get("tokens_per_s")).map(|v| format!("{v:.1}"))),
        ("trainable parameters".into(), get("trainable_parameters")),
        ("validation loss, base model".into(), get("val_loss_base")),
        ("validation loss, final".into(), get("val_loss_final")),
        ("training loss, final".into(), get("final_train_loss")),
        ("best step".into(), best),
        ("stop reason".into(), stop),
    ]);
    if let Some(from) = get("resumed_from_step") {
        rows.push(("resumed from step".into(), Some(from)));
    }
    rows
}

/// The counts of the summary's `data` object in the order the pipeline makes them, with labels.
const DATA_ROWS: [(&str, &str); 15] = [
    ("rows_read", "rows read"),
    ("rejected", "rejected by the loader (rejected.jsonl)"),
    ("quarantined", "quarantined by the audit (quarantine.jsonl)"),
    ("audit_warned", "kept with audit warnings"),
    ("train_examples", "training examples"),
    ("val_examples", "validation examples"),
    ("val_source", "validation examples from"),
    ("leaked_exact", "validation examples removed: exact copies of training examples"),
    ("leaked_near", "validation examples removed: near copies of training examples"),
    ("unused", "training examples left out (data.max_train_examples)"),
    ("truncated", "training examples truncated to max_len"),
    ("dropped", "training examples dropped (too long, or nothing supervised)"),
    ("val_dropped", "validation examples dropped"),
    ("augmented", "augmented copies added to training"),
    ("augmentation", "augmentation"),
];

/// Keys of the data summary shown elsewhere (lists, the tokenization table).
const DATA_ELSEWHERE: [&str; 4] = ["audit_findings", "leaks", "tokenize", "val_tokenize"];

/// The rows of the tokenization table: a key of `tokenize` / `val_tokenize` and its label.
const TOKENIZE_ROWS: [(&str, &str); 7] = [
    ("examples", "examples"),
    ("kept", "kept"),
    ("truncated", "truncated to max_len"),
    ("dropped_too_long", "dropped: too long"),
    ("dropped_no_supervised", "dropped: nothing supervised"),
    ("tokens", "tokens"),
    ("supervised_tokens", "supervised tokens"),
];

/// The data summary as (label, value): the known counts in pipeline order, then every other
/// numeric key (a count added later) under its dotted key. Older summaries kept the counts at
/// the top level; they are listed by key.
fn data_rows(summary: &Map<String, Value>) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let Some(data) = summary.get("data").and_then(Value::as_object) else {
        for key in ["train_examples", "val_examples", "rejected_rows", "tokenize", "val_tokenize"] {
            if let Some(v) = summary.get(key) {
                flatten(key, v, &mut rows);
            }
        }
        return rows;
    };
    for (key, label) in DATA_ROWS {
        match data.get(key) {
            Some(v @ (Value::Number(_) | Value::Bool(_) | Value::String(_))) => rows.push((label.into(), fmt_value(v))),
            _ => {}
        }
    }
    let mut rest = Vec::new();
    for (key, v) in data {
        if !DATA_ROWS.iter().any(|(k, _)| k == key) && !DATA_ELSEWHERE.contains(&key.as_str()) {
            flatten(key, v, &mut rest);
        }
    }
    rows.extend(rest);
    rows
}

/// The tokenization of the training and validation examples side by side (`tokenize` and
/// `val_tokenize` of the data summary), known rows first, then any other numeric key.
fn tokenize_table(summary: &Map<String, Value>) -> Option<Markup> {
    let data = summary.get("data")?;
    let (train, val) =
        (data.get("tokenize").and_then(Value::as_object), data.get("val_tokenize").and_then(Value::as_object));
    if train.is_none() && val.is_none() {
        return None;
    }
    let mut keys: Vec<(String, String)> = TOKENIZE_ROWS.iter().map(|(k, l)| (k.to_string(), l.to_string())).collect();
    let mut extra: Vec<&String> = train.iter().chain(val.iter()).flat_map(|o| o.keys()).collect();
    extra.sort();
    extra.dedup();
    keys.extend(
        extra.into_iter().filter(|k| !TOKENIZE_ROWS.iter().any(|(t, _)| t == *k)).map(|k| (k.clone(), k.clone())),
    );
    let cell =
        |o: Option<&Map<String, Value>>, k: &str| o.and_then(|o| o.get(k)).filter(|v| v.is_number()).map(fmt_value);
    let rows: Vec<(String, Option<String>, Option<String>)> = keys
        .into_iter()
        .map(|(k, label)| (label, cell(train, &k), cell(val, &k)))
        .filter(|(_, t, v)| t.is_some() || v.is_some())
        .collect();
    let value = |v: &Option<String>| html! { @if let Some(v) = v { (v) } @else { (na()) } };
    Some(html! {
        table {
            tr { th { "tokenization" } th { "training" } th { "validation" } }
            @for (label, t, v) in &rows { tr { th { (label) } td.num { (value(t)) } td.num { (value(v)) } } }
        }
    })
}

/// Alarm lines: the summary's `alarms`, else the evaluations flagged `overfitting_alarm`.
fn alarm_lines(run: &RunData) -> Vec<String> {
    if let Some(alarms) = run.summary.get("alarms").and_then(Value::as_array) {
        return alarms
            .iter()
            .map(|a| {
                let step = a.get("step").map(fmt_value).unwrap_or_else(|| "n/a".into());
                let kind = a.get("kind").and_then(Value::as_str).unwrap_or("alarm");
                let msg = a.get("message").and_then(Value::as_str).unwrap_or("");
                format!("step {step}, {kind}: {msg}")
            })
            .collect();
    }
    let flagged = run.evals.iter().filter(|e| e.raw.get("overfitting_alarm").and_then(Value::as_bool) == Some(true));
    flagged
        .map(|e| {
            let gap = e.raw.get("gap").map(fmt_value).unwrap_or_else(|| "n/a".into());
            format!("step {}, overfitting: validation minus training loss gap {gap}", e.step)
        })
        .collect()
}

const EVAL_COLUMNS: [&str; 8] = [
    "step",
    "val_loss",
    "val_perplexity",
    "val_token_accuracy",
    "train_loss_smoothed",
    "gap",
    "is_best",
    "overfitting_alarm",
];

fn evals_table(run: &RunData) -> Markup {
    let mut cols: Vec<String> = EVAL_COLUMNS
        .iter()
        .filter(|c| run.evals.iter().any(|e| e.raw.contains_key(**c)))
        .map(|c| c.to_string())
        .collect();
    let mut extra: Vec<String> =
        run.evals.iter().flat_map(|e| e.raw.keys()).filter(|k| *k != "kind").cloned().collect();
    extra.sort();
    extra.dedup();
    cols.extend(extra.into_iter().filter(|k| !EVAL_COLUMNS.contains(&k.as_str())));
    html! {
        table {
            tr { @for c in &cols { th { (c) } } }
            @for e in &run.evals {
                tr { @for c in &cols { td.num { (e.raw.get(c).map(fmt_value).unwrap_or_else(|| "n/a".into())) } } }
            }
        }
    }
}

fn chart_figure(chart: &plot::Chart) -> Result<Markup> {
    if !plot::has_points(chart) {
        return Ok(html! { p.na { "No " (chart.caption.to_lowercase()) " values were recorded." } });
    }
    let svg = plot::render(chart)?;
    Ok(html! { figure { (PreEscaped(svg)) } })
}

fn charts(run: &RunData) -> Result<Markup> {
    if !run.has_steps() {
        let why = if run.metrics_found { "metrics.jsonl is empty" } else { "metrics.jsonl not found" };
        return Ok(html! { p.na { "No steps were recorded (" (why) ")." } });
    }
    let loss = chart_figure(&plot::loss_chart(run))?;
    let lr = chart_figure(&plot::field_chart(run, "Learning rate", "learning rate", Field::Lr))?;
    let tps = chart_figure(&plot::field_chart(run, "Throughput", "tokens/s", Field::TokensPerS))?;
    Ok(html! { h2 { "Training curves" } (loss) (lr) (tps) })
}

/// Examples listed per check that fired.
const AUDIT_EXAMPLES: usize = 3;

/// The data audit (`audit.json`): the row totals, the checks that fired with their action and
/// first findings (file:line and reason), and the checks that found nothing in one line.
/// An older `audit.json` whose counts are plain numbers is shown as a table of them.
fn audit_section(audit: &Value) -> Markup {
    let Some(counts) = audit.get("counts").and_then(Value::as_object) else {
        return html! { pre { (serde_json::to_string_pretty(audit).unwrap_or_default()) } };
    };
    if !counts.values().all(Value::is_object) {
        let mut rows = Vec::new();
        flatten("", &Value::Object(counts.clone()), &mut rows);
        return kv_table(&rows);
    }
    let found = |c: &Value| c.get("found").and_then(Value::as_u64).unwrap_or(0);
    let (fired, quiet): (Vec<_>, Vec<_>) = counts.iter().partition(|(_, c)| found(c) > 0);
    let findings: Vec<&Value> =
        audit.get("findings").and_then(Value::as_array).map(|f| f.iter().collect()).unwrap_or_default();
    let example = |f: &Value| {
        let file = f.get("file").and_then(Value::as_str).unwrap_or("?");
        let line = f.get("line").map(fmt_value).unwrap_or_else(|| "?".into());
        let reason = f.get("reason").and_then(Value::as_str).unwrap_or("");
        (format!("{file}:{line}"), reason.to_string())
    };
    let rows = audit.get("rows");
    let count = |k: &str| rows.and_then(|r| r.get(k)).map(fmt_value).unwrap_or_else(|| "n/a".into());
    let totals = rows.map(|_| {
        format!(
            "{} rows audited: {} clean, {} kept with warnings, {} quarantined.",
            count("read"),
            count("clean"),
            count("warned"),
            count("quarantined")
        )
    });
    let length = audit.get("length").filter(|l| l.is_object()).map(|l| {
        let v = |k: &str| num(l.get(k)).map(|x| format!("{x:.0}")).unwrap_or_else(|| "n/a".into());
        let unit = l.get("unit").and_then(Value::as_str).unwrap_or("");
        let z = num(l.get("z")).map_or_else(|| "n/a".into(), |z| z.to_string());
        format!(
            "Lengths: median {} {unit}; outside {}–{} is an outlier (modified z > {z}).",
            v("median"),
            v("lower"),
            v("upper")
        )
    });
    let failed = audit.get("failed").and_then(Value::as_str);
    html! {
        @if let Some(t) = &totals { p { (t) } }
        @if let Some(f) = failed { p.alarm { "The audit failed: " (f) } }
        @if fired.is_empty() { p { "No check found anything." } } @else {
            table {
                tr { th { "check" } th { "rows" } th { "action" } th { "first findings" } }
                @for (id, c) in &fired {
                    @let listed: Vec<&&Value> = findings.iter().filter(|f| f.get("check").and_then(Value::as_str) == Some(id.as_str())).collect();
                    tr {
                        th { (id) }
                        td.num { (found(c)) }
                        td { (c.get("action").and_then(Value::as_str).unwrap_or("n/a")) }
                        td {
                            ul.examples {
                                @for f in listed.iter().take(AUDIT_EXAMPLES) {
                                    @let (at, reason) = example(f);
                                    li { code { (at) } ": " (reason) }
                                }
                                @if found(c) as usize > AUDIT_EXAMPLES.min(listed.len()) {
                                    li.quiet { "and " (found(c) as usize - AUDIT_EXAMPLES.min(listed.len())) " more (audit.json, quarantine.jsonl)" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !quiet.is_empty() {
            p.quiet { "No findings: " (quiet.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")) "." }
        }
        @if let Some(l) = &length { p.quiet { (l) } }
    }
}

/// The whole report page.
pub(crate) fn page(run: &RunData) -> Result<String> {
    let charts = charts(run)?;
    let data = data_rows(&run.summary);
    let mut finals = Vec::new();
    if let Some(f) = run.summary.get("final") {
        flatten("", f, &mut finals);
    }
    let alarms = alarm_lines(run);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "tuneguard run report: " (run.name) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { "tuneguard run report: " (run.name) }
                h2 { "Summary" }
                table {
                    @for (k, v) in summary_rows(run) {
                        tr { th { (k) } td { @if let Some(v) = v { (v) } @else { (na()) } } }
                    }
                }
                (charts)
                @if !run.evals.is_empty() { h2 { "Evaluations" } (evals_table(run)) }
                h2 { "Data" }
                @if data.is_empty() { p { (na()) } } @else { (kv_table(&data)) }
                @if let Some(t) = tokenize_table(&run.summary) { (t) }
                h2 { "Final metrics" }
                @if finals.is_empty() { p { (na()) } } @else { (kv_table(&finals)) }
                h2 { "Alarms" }
                @if alarms.is_empty() { p { "No alarms." } } @else {
                    ul { @for a in &alarms { li.alarm { (a) } } }
                }
                @if let Some(audit) = &run.audit { h2 { "Data audit" } (audit_section(audit)) }
                h2 { "Config" }
                @if let Some(c) = &run.config { pre { (c) } } @else { p { (na()) } }
            }
        }
    };
    Ok(markup.into_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_formatted_for_tables() {
        let cases = [
            (json!(12), "12"),
            (json!(2.31), "2.3100"),
            (json!(0.0009), "9.000e-4"),
            (json!(0.0), "0.0000"),
            (json!(null), "n/a"),
            (json!("x<y"), "x<y"),
            (json!(true), "true"),
        ];
        for (v, want) in cases {
            assert_eq!(fmt_value(&v), want, "{v}");
        }
    }

    #[test]
    fn durations_read_as_minutes_or_hours() {
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(157.449), "157.4 s (2 min 37 s)");
        assert_eq!(duration(7384.0), "7384.0 s (2 h 3 min)");
    }

    #[test]
    fn data_rows_show_every_numeric_key_and_fall_back_to_old_summaries() {
        // Known counts in pipeline order with their labels, then other numeric keys by name.
        let new =
            json!({"data": {"rows_read": 10, "rejected": 1, "custom_count": 3, "note": "x"}, "train_examples": 9});
        let rows = data_rows(new.as_object().expect("object"));
        let want = [("rows read", "10"), ("rejected by the loader (rejected.jsonl)", "1"), ("custom_count", "3")];
        assert_eq!(rows, want.map(|(k, v)| (k.to_string(), v.to_string())));
        let old = json!({"train_examples": 145, "tokenize": {"kept": 145}, "steps": 38});
        let rows = data_rows(old.as_object().expect("object"));
        let want = [("train_examples", "145"), ("tokenize.kept", "145")];
        assert_eq!(rows, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }
}
