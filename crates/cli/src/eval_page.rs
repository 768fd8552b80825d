//! `tuneguard eval --output DIR`: eval.json (the `--json` object of every task, compare
//! included) and index.html, a self-contained page (no script, no outside request) with the
//! headline metrics and their intervals, the deltas against `--compare`, per-class scores and
//! the confusion matrix of choice tasks, and the first answers of generation tasks.
use std::path::Path;

use anyhow::{Context, Result};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use tuneguard_eval::suite::{TaskReport, TaskResult};
use tuneguard_metrics::info::Unit;

use crate::eval::{show, EvalOutput, Evaluation};

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}\
.worse{color:#b00}.better{color:#070}pre{white-space:pre-wrap;margin:0}";

/// Writes `dir/eval.json` and `dir/index.html` (each atomically; the folder is created).
///
/// # Errors
/// The folder or a file cannot be written.
pub fn write(dir: &Path, o: &EvalOutput) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the folder", dir.display()))?;
    let io = |p: &Path, e: std::io::Error| anyhow::anyhow!("{}: {e}", p.display());
    tuneguard_fs::write_bytes(&dir.join("eval.json"), serde_json::to_string_pretty(o)?.as_bytes(), io)?;
    tuneguard_fs::write_bytes(&dir.join("index.html"), page(o).as_bytes(), io)?;
    Ok(())
}

fn label(e: &Evaluation) -> String {
    match &e.adapter {
        Some(a) => format!("{} + {}", e.model.display(), a.display()),
        None => e.model.display().to_string(),
    }
}

fn page(o: &EvalOutput) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'";
                title { "tuneguard eval" }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { "tuneguard eval" }
                p { "Model: " code { (label(&o.this)) } }
                @if let Some(c) = &o.compare { p { "Compared with: " code { (label(c)) } } }
                @for (i, t) in o.this.tasks.iter().enumerate() {
                    (task(t, o.compare.as_ref().map(|c| &c.tasks[i])))
                }
            }
        }
    }
    .into_string()
}

fn task(t: &TaskResult, before: Option<&TaskResult>) -> Markup {
    let b = before.map(|b| b.report.headlines());
    html! {
        h2 { (t.name) " (" (t.task) ")" }
        p { code { (t.data.display()) } ": " (t.rows) " rows, " (format!("{:.1}", t.seconds)) " s, "
            (format!("{:.1}", t.throughput)) " " (t.throughput_unit) }
        table {
            tr { th.l { "metric" } th { "value" } th { "95 % CI" }
                 @if b.is_some() { th { "compare" } th { "Δ" } } }
            @for (j, h) in t.report.headlines().iter().enumerate() {
                tr {
                    td.l { (h.metric.name) }
                    td { (show(h.metric.unit, h.value)) }
                    td { @if let Some(iv) = h.interval { (show(h.metric.unit, iv.low)) " – " (show(h.metric.unit, iv.high)) } @else { "—" } }
                    @if let Some(b) = &b {
                        @let d = h.value - b[j].value;
                        @let better = if h.metric.higher_is_better { d > 0.0 } else { d < 0.0 };
                        td { (show(h.metric.unit, b[j].value)) }
                        td class=(if d == 0.0 { "" } else if better { "better" } else { "worse" }) {
                            @if h.metric.unit == Unit::Fraction { (format!("{:+.2} pt", 100.0 * d)) } @else { (format!("{d:+.4}")) }
                        }
                    }
                }
            }
        }
        @match &t.report {
            TaskReport::MultipleChoice(r) => {
                table {
                    tr { th.l { "class" } th { "precision" } th { "recall" } th { "f1" } th { "support" } }
                    @for (k, name) in r.classes.iter().enumerate() {
                        tr { td.l { (name) } td { (format!("{:.4}", r.precision_per_class[k])) }
                             td { (format!("{:.4}", r.recall_per_class[k])) } td { (format!("{:.4}", r.f1_per_class[k])) }
                             td { (r.support[k]) } }
                    }
                }
                p { "Confusion matrix (rows: true class, columns: predicted class)" }
                table {
                    tr { th.l { "" } @for name in &r.classes { th { (name) } } }
                    @for (k, row) in r.confusion.iter().enumerate() {
                        tr { th.l { (r.classes[k]) } @for n in row { td { (n) } } }
                    }
                }
            }
            TaskReport::Generation(r) => {
                table {
                    tr { th.l { "item" } th.l { "answer" } th { "exact match" } th { "token F1" } th { "ROUGE-L" } }
                    @for s in r.per_item.iter().take(20) {
                        tr { td.l { (s.id) } td.l { pre { (s.output) } } td { (format!("{:.0}", s.exact_match)) }
                             td { (format!("{:.3}", s.token_f1)) } td { (format!("{:.3}", s.rouge_l)) } }
                    }
                }
            }
            TaskReport::Perplexity(_) => {}
        }
    }
}
