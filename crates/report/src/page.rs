//! The HTML page. maud escapes every interpolated string, so text from the run folder (config,
//! messages, metric names) cannot inject markup; only plotters' SVG goes in pre-escaped.
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde_json::Value;
use tuneguard_records::{EvalRecord, Metric, Partial, Summary, TokenizeStats};

use crate::error::Result;
use crate::plot::{self, Field};
use crate::run::RunData;

const CSS: &str = "body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#222}\
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .7em;text-align:left}\
th{background:#f4f4f4;font-weight:normal}td.num{text-align:right;font-variant-numeric:tabular-nums}\
figure{margin:1em 0}svg{max-width:100%;height:auto}pre{background:#f7f7f7;padding:.8em;overflow-x:auto}\
.na{color:#888}.alarm{color:#b00}td{vertical-align:top}ul.examples{margin:0;padding-left:1.1em}\
code{overflow-wrap:anywhere}.quiet{color:#555}";

/// A float as table text: 4 decimals, scientific when tiny.
pub(crate) fn fmt_f64(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// A JSON value as table text: integers plainly, floats as [`fmt_f64`].
pub(crate) fn fmt_value(v: &Value) -> String {
    match v {
        Value::Null => "n/a".into(),
        Value::Number(n) if n.is_f64() => fmt_f64(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Numeric and boolean fields of a record as `(dotted key, text)`, sorted by key, the keys this
/// version does not know included (a record read as [`Partial`] keeps them).
fn flatten_record(prefix: &str, record: &impl serde::Serialize, out: &mut Vec<(String, String)>) {
    flatten(prefix, &serde_json::to_value(record).unwrap_or_default(), out);
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
pub(crate) fn shell_join(args: &[String]) -> String {
    let quote = |a: &str| {
        let plain = !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain {
            a.to_string()
        } else {
            format!("'{}'", a.replace('\'', "'\\''"))
        }
    };
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// Where the run came from (the summary's `run` object, when present): start time, command
/// line, tool version and model.
fn run_info_rows(run: &RunData) -> Vec<(String, Option<String>)> {
    let Some(info) = run.run_info() else { return Vec::new() };
    [
        ("started", &info.started),
        ("command line", &shell_join(&info.command_line)),
        ("tuneguard version", &info.tool_version),
        ("model", &info.model_path),
        ("model sha256", &info.model_sha256),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Some(v.clone())))
    .collect()
}

/// Steps, time, throughput, losses, best step and stop reason.
fn summary_rows(run: &RunData) -> Vec<(String, Option<String>)> {
    let s = &run.summary;
    let count = |v: Option<u64>| v.map(|v| v.to_string());
    let steps = count(s.steps).or_else(|| run.train.last().map(|p| p.step.to_string())).map(|steps| {
        match run.total_steps().map(|t| t.to_string()) {
            Some(total) if total != steps => format!("{steps} of {total} planned"),
            _ => steps,
        }
    });
    let es = run.early_stopping();
    let metric = es.and_then(|e| e.metric).unwrap_or(Metric::ValLoss);
    let best = run.best().map(|(step, v)| match v {
        Some(v) => format!("step {step}: {metric} {v:.4}"),
        None => format!("step {step}"),
    });
    let stop = es.and_then(|e| e.stop_reason.clone()).or_else(|| {
        let enabled = es.and_then(|e| e.enabled);
        (enabled == Some(true) && run.stop_step().is_none()).then(|| "not stopped early (ran all steps)".to_string())
    });
    let mut rows = run_info_rows(run);
    rows.extend([
        ("steps".into(), steps),
        ("time".into(), s.seconds.map(duration)),
        ("tokens/s".into(), s.tokens_per_s.map(|v| format!("{v:.1}"))),
        ("trainable parameters".into(), s.trainable_parameters.map(|n| n.to_string())),
        ("validation loss, base model".into(), s.val_loss_base.map(fmt_f64)),
        ("validation loss, final".into(), s.val_loss_final.map(fmt_f64)),
        ("training loss, final".into(), s.final_train_loss.map(fmt_f64)),
        ("best step".into(), best),
        ("stop reason".into(), stop),
    ]);
    if let Some(from) = count(s.resumed_from_step) {
        rows.push(("resumed from step".into(), Some(from)));
    }
    rows
}

/// The data summary as (label, value): the known counts in pipeline order, then every other
/// numeric key (a count added later) under its dotted key. Lists (leaks, record shapes, audit
/// findings) and the tokenization counts are shown elsewhere or not at all. Older summaries kept
/// the counts at the top level; they are listed by key.
fn data_rows(summary: &Summary<Partial>) -> Vec<(String, String)> {
    let count = |v: Option<usize>| v.map(|v| v.to_string());
    let Some(d) = &summary.data else {
        let top = [
            ("train_examples", summary.train_examples),
            ("val_examples", summary.val_examples),
            ("rejected_rows", summary.rejected_rows),
        ];
        let mut rows: Vec<(String, String)> =
            top.into_iter().filter_map(|(key, v)| count(v).map(|v| (key.to_string(), v))).collect();
        for (key, t) in [("tokenize", &summary.legacy_tokenize), ("val_tokenize", &summary.legacy_val_tokenize)] {
            if let Some(t) = t {
                flatten_record(key, t, &mut rows);
            }
        }
        return rows;
    };
    let known = [
        ("rows read", count(d.rows_read)),
        ("rejected by the loader (rejected.jsonl)", count(d.rejected)),
        ("quarantined by the audit (quarantine.jsonl)", count(d.quarantined)),
        ("kept with audit warnings", count(d.audit_warned)),
        ("training examples", count(d.train_examples)),
        ("validation examples", count(d.val_examples)),
        ("validation examples from", d.val_source.clone()),
        ("validation examples removed: exact copies of training examples", count(d.leaked_exact)),
        ("validation examples removed: near copies of training examples", count(d.leaked_near)),
        ("training examples left out (data.max_train_examples)", count(d.unused)),
        ("rows cut before tokenizing (more text than max_len tokens hold)", count(d.cut_before_tokenizing)),
        ("training examples truncated to max_len", count(d.truncated)),
        ("training examples dropped at tokenization", count(d.dropped)),
        ("validation examples truncated to max_len", count(d.val_truncated)),
        ("validation examples dropped at tokenization", count(d.val_dropped)),
        ("augmented copies added to training", count(d.augmented)),
        ("augmentation", d.augmentation.clone()),
    ];
    let mut rows: Vec<(String, String)> =
        known.into_iter().filter_map(|(label, v)| v.map(|v| (label.to_string(), v))).collect();
    for (key, v) in &d.extra {
        flatten(key, v, &mut rows);
    }
    rows
}

/// The rows of the tokenization table that come first, in pipeline order (see [`tokenize_counts`]).
const TOKENIZE_LABELS: [&str; 7] = [
    "examples",
    "kept",
    "truncated to max_len",
    "dropped: too long",
    "dropped: nothing supervised",
    "tokens",
    "supervised tokens",
];

/// The counts of [`TOKENIZE_LABELS`].
fn tokenize_counts(t: &TokenizeStats<Partial>) -> [Option<usize>; 7] {
    [t.examples, t.kept, t.truncated, t.dropped_too_long, t.dropped_no_supervised, t.tokens, t.supervised_tokens]
}

/// The counts of `t` not in [`TOKENIZE_LABELS`], by key: those added later, and the keys this
/// version does not know.
fn tokenize_other(t: &TokenizeStats<Partial>) -> Vec<(String, Option<String>)> {
    let mut out = vec![("dropped_template_error".to_string(), t.dropped_template_error.map(|n| n.to_string()))];
    out.extend(t.extra.iter().map(|(k, v)| (k.clone(), v.is_number().then(|| fmt_value(v)))));
    out
}

/// The tokenization of the training and validation examples side by side (`tokenize` and
/// `val_tokenize` of the data summary), known rows first, then any other numeric key.
fn tokenize_table(summary: &Summary<Partial>) -> Option<Markup> {
    let data = summary.data.as_ref()?;
    let (train, val) = (data.tokenize.as_ref(), data.val_tokenize.as_ref());
    if train.is_none() && val.is_none() {
        return None;
    }
    let count =
        |t: Option<&TokenizeStats<Partial>>, i: usize| t.and_then(|t| tokenize_counts(t)[i]).map(|n| n.to_string());
    let mut rows: Vec<(String, Option<String>, Option<String>)> = TOKENIZE_LABELS
        .iter()
        .enumerate()
        .map(|(i, label)| (label.to_string(), count(train, i), count(val, i)))
        .collect();
    let (train_other, val_other) = (train.map(tokenize_other), val.map(tokenize_other));
    let mut keys: Vec<&String> = train_other.iter().chain(val_other.iter()).flatten().map(|(k, _)| k).collect();
    keys.sort();
    keys.dedup();
    let cell = |o: &Option<Vec<(String, Option<String>)>>, key: &String| {
        o.as_ref().and_then(|o| o.iter().find(|(k, _)| k == key)).and_then(|(_, v)| v.clone())
    };
    rows.extend(keys.into_iter().map(|k| (k.clone(), cell(&train_other, k), cell(&val_other, k))));
    rows.retain(|(_, t, v)| t.is_some() || v.is_some());
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
    if let Some(alarms) = &run.summary.alarms {
        return alarms
            .iter()
            .map(|a| {
                let step = a.step.map_or_else(|| "n/a".into(), |s| s.to_string());
                let kind = a.kind.as_deref().unwrap_or("alarm");
                let msg = a.message.as_deref().unwrap_or("");
                format!("step {step}, {kind}: {msg}")
            })
            .collect();
    }
    let flagged = run.evals.iter().filter(|e| e.line.overfitting_alarm == Some(true));
    flagged
        .map(|e| {
            let gap = e.line.gap.flatten().map_or_else(|| "n/a".into(), fmt_f64);
            format!("step {}, overfitting: validation minus training loss gap {gap}", e.step)
        })
        .collect()
}

/// The columns of the evaluations table that come first, in this order; the others follow by
/// name.
const EVAL_COLUMNS: usize = 8;

/// The cells of an eval line by column (`None` where the line lacks the field): the first
/// [`EVAL_COLUMNS`] in table order, then the others (those added later, and the keys this version
/// does not know). `n/a` is a null in the line.
fn eval_cells(e: &EvalRecord<Partial>) -> Vec<(String, Option<String>)> {
    let float = |v: Option<f64>| v.map(fmt_f64);
    let nullable = |v: Option<Option<f64>>| v.map(|x| x.map_or_else(|| "n/a".into(), fmt_f64));
    let flag = |v: Option<bool>| v.map(|b| b.to_string());
    let mut cells: Vec<(String, Option<String>)> = [
        ("step", e.step.map(|s| s.to_string())),
        (Metric::ValLoss.name(), float(e.val_loss)),
        (Metric::ValPerplexity.name(), float(e.val_perplexity)),
        (Metric::ValTokenAccuracy.name(), float(e.val_token_accuracy)),
        ("train_loss_smoothed", nullable(e.train_loss_smoothed)),
        ("gap", nullable(e.gap)),
        ("is_best", flag(e.is_best)),
        ("overfitting_alarm", flag(e.overfitting_alarm)),
        ("val_tokens", e.val_tokens.map(|n| n.to_string())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    cells.extend(e.extra.iter().map(|(k, v)| (k.clone(), Some(fmt_value(v)))));
    cells
}

fn evals_table(run: &RunData) -> Markup {
    let lines: Vec<Vec<(String, Option<String>)>> = run.evals.iter().map(|e| eval_cells(&e.line)).collect();
    let present = |col: &str| lines.iter().any(|l| l.iter().any(|(k, v)| k == col && v.is_some()));
    let names = lines.first().map(|l| l.iter().take(EVAL_COLUMNS).map(|(k, _)| k.clone()).collect::<Vec<_>>());
    let mut cols: Vec<String> = names.unwrap_or_default().into_iter().filter(|c| present(c)).collect();
    let mut extra: Vec<String> =
        lines.iter().flat_map(|l| l.iter().skip(EVAL_COLUMNS).map(|(k, _)| k.clone())).collect();
    extra.sort();
    extra.dedup();
    cols.extend(extra.into_iter().filter(|c| present(c)));
    let cell = |l: &[(String, Option<String>)], c: &str| {
        l.iter().find(|(k, _)| k == c).and_then(|(_, v)| v.clone()).unwrap_or_else(|| "n/a".into())
    };
    html! {
        table {
            tr { @for c in &cols { th { (c) } } }
            @for l in &lines {
                tr { @for c in &cols { td.num { (cell(l, c)) } } }
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
    let general = plot::general_chart(run);
    let general = if plot::has_points(&general) { Some(chart_figure(&general)?) } else { None };
    Ok(html! { h2 { "Training curves" } (loss) @if let Some(g) = general { (g) } (lr) (tps) })
}

/// A finite number of a JSON value.
fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64).filter(|x| x.is_finite())
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
    if let Some(f) = &run.summary.final_metrics {
        flatten_record("", f, &mut finals);
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
        let rows = data_rows(&serde_json::from_value(new).expect("summary"));
        let want = [("rows read", "10"), ("rejected by the loader (rejected.jsonl)", "1"), ("custom_count", "3")];
        assert_eq!(rows, want.map(|(k, v)| (k.to_string(), v.to_string())));
        let old = json!({"train_examples": 145, "tokenize": {"kept": 145}, "steps": 38});
        let rows = data_rows(&serde_json::from_value(old).expect("summary"));
        let want = [("train_examples", "145"), ("tokenize.kept", "145")];
        assert_eq!(rows, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }
}
