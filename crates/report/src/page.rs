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
.na{color:#888}.alarm{color:#b00}";

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
    let mut rows = vec![
        ("steps".into(), steps),
        ("time".into(), num(s.get("seconds")).map(duration)),
        ("tokens/s".into(), num(s.get("tokens_per_s")).map(|v| format!("{v:.1}"))),
        ("trainable parameters".into(), get("trainable_parameters")),
        ("validation loss, base model".into(), get("val_loss_base")),
        ("validation loss, final".into(), get("val_loss_final")),
        ("training loss, final".into(), get("final_train_loss")),
        ("best step".into(), best),
        ("stop reason".into(), stop),
    ];
    if let Some(from) = get("resumed_from_step") {
        rows.push(("resumed from step".into(), Some(from)));
    }
    rows
}

/// The `data` object's numeric keys; older summaries kept the counts at the top level.
fn data_rows(summary: &Map<String, Value>) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if let Some(data) = summary.get("data") {
        flatten("", data, &mut rows);
        return rows;
    }
    for key in ["train_examples", "val_examples", "rejected_rows", "tokenize", "val_tokenize"] {
        if let Some(v) = summary.get(key) {
            flatten(key, v, &mut rows);
        }
    }
    rows
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

fn audit_section(audit: &Value) -> Markup {
    let mut rows = Vec::new();
    if let Some(counts) = audit.get("counts").filter(|c| c.is_object()) {
        flatten("", counts, &mut rows);
        return kv_table(&rows);
    }
    html! { pre { (serde_json::to_string_pretty(audit).unwrap_or_default()) } }
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
        let new =
            json!({"data": {"rows_read": 10, "rejected": 1, "custom_count": 3, "note": "x"}, "train_examples": 9});
        let rows = data_rows(new.as_object().expect("object"));
        let want = [("custom_count", "3"), ("rejected", "1"), ("rows_read", "10")];
        assert_eq!(rows, want.map(|(k, v)| (k.to_string(), v.to_string())));
        let old = json!({"train_examples": 145, "tokenize": {"kept": 145}, "steps": 38});
        let rows = data_rows(old.as_object().expect("object"));
        let want = [("train_examples", "145"), ("tokenize.kept", "145")];
        assert_eq!(rows, want.map(|(k, v)| (k.to_string(), v.to_string())));
    }
}
