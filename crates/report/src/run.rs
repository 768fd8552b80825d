//! Reading a run folder written by `tuneguard train`, into tuneguard-records' types as
//! [`Partial`] records. Every field is optional: a missing file or key leaves a section out, but a
//! file that exists and does not parse (or holds a field of the wrong type) is an error naming it.
use std::path::{Path, PathBuf};

use serde_json::Value;
use tuneguard_records::{
    EarlyStoppingSummary, EvalRecord, MetricsLine, Partial, RunRecord, Summary, METRICS_FILE, SUMMARY_FILE,
};

use crate::error::{ReportError, Result};

/// One `"kind":"train"` line of `metrics.jsonl` (lines without a kind are train lines).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TrainPoint {
    pub step: f64,
    /// Planned steps of the run, as the line says.
    pub total_steps: Option<f64>,
    pub loss: Option<f64>,
    pub lr: Option<f64>,
    pub tokens_per_s: Option<f64>,
}

/// One `"kind":"eval"` line; `line` keeps every field for the evaluations table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EvalPoint {
    pub step: f64,
    pub val_loss: Option<f64>,
    pub is_best: bool,
    pub line: EvalRecord<Partial>,
}

/// A vertical marker on the loss chart.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker {
    pub step: f64,
    pub label: String,
}

/// Everything the report shows, as read from the run folder.
#[derive(Debug, Default)]
pub(crate) struct RunData {
    pub name: String,
    pub metrics_path: PathBuf,
    pub metrics_found: bool,
    pub train: Vec<TrainPoint>,
    pub evals: Vec<EvalPoint>,
    pub summary: Summary<Partial>,
    pub config: Option<String>,
    /// `train.loss_ema` of `config.toml` (the smoothing of the training loss).
    pub loss_ema: Option<f64>,
    pub audit: Option<Value>,
}

/// The files that make a folder a run folder: a report of a folder with none of them would say
/// nothing.
pub(crate) const RUN_FILES: [&str; 3] = [METRICS_FILE, SUMMARY_FILE, CONFIG_FILE];

const CONFIG_FILE: &str = "config.toml";

/// The keys of `config.toml` the report reads (the rest of the recipe is shown as text).
#[derive(serde::Deserialize)]
struct ConfigKeys {
    train: Option<TrainKeys>,
}

#[derive(serde::Deserialize)]
struct TrainKeys {
    /// Integers read as floats.
    loss_ema: Option<f64>,
}

/// `train.loss_ema` of a `config.toml` text; `None` when absent or when the text does not parse
/// (the config is shown as it is either way).
fn loss_ema(config: &str) -> Option<f64> {
    let keys: ConfigKeys = toml::from_str(config).ok()?;
    keys.train?.loss_ema.filter(|b| (0.0..1.0).contains(b))
}

/// Reads a file, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(ReportError::Read { path: path.to_path_buf(), err }),
    }
}

fn malformed_json(path: &Path, e: &serde_json::Error) -> ReportError {
    ReportError::MalformedJson { path: path.to_path_buf(), line: e.line(), column: e.column(), reason: e.to_string() }
}

fn parse_json(path: &Path, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| malformed_json(path, &e))
}

/// Parses `summary.json`; a document that is not an object reads as an empty summary.
fn parse_summary(path: &Path, text: &str) -> Result<Summary<Partial>> {
    if !parse_json(path, text)?.is_object() {
        return Ok(Summary::default());
    }
    serde_json::from_str(text).map_err(|e| malformed_json(path, &e))
}

/// A learning rate as the decimal `metrics.jsonl` holds: the writer prints the f32's shortest
/// decimal, and the chart plots that number, not the f32's binary value widened.
fn lr_as_written(lr: f32) -> f64 {
    lr.to_string().parse().unwrap_or(f64::from(lr))
}

/// Parses `metrics.jsonl`: blank lines and unknown kinds are skipped, lines without a step are
/// skipped (nothing to place them at), a line that is not a JSON object (or holds a field of the
/// wrong type) is an error.
pub(crate) fn parse_metrics(path: &Path, text: &str) -> Result<(Vec<TrainPoint>, Vec<EvalPoint>)> {
    let (mut train, mut evals) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| ReportError::MalformedLine { path: path.to_path_buf(), line: i + 1, reason };
        match MetricsLine::parse(line).map_err(|e| bad(e.to_string()))? {
            Some(MetricsLine::Train(m)) => {
                let Some(step) = m.step else { continue };
                train.push(TrainPoint {
                    step: step as f64,
                    total_steps: m.total_steps.map(|t| t as f64),
                    loss: m.loss,
                    lr: m.lr.map(lr_as_written),
                    tokens_per_s: m.tokens_per_s,
                });
            }
            Some(MetricsLine::Eval(e)) => {
                let Some(step) = e.step else { continue };
                evals.push(EvalPoint {
                    step: step as f64,
                    val_loss: e.val_loss,
                    is_best: e.is_best.unwrap_or(false),
                    line: e,
                });
            }
            None => {}
        }
    }
    Ok((keep_last_per_step(train, |p| p.step), keep_last_per_step(evals, |e| e.step)))
}

/// Sorts by step and keeps the last line written for each step: a resumed run may repeat the
/// steps after its checkpoint, and the later lines are the ones whose weights were kept.
fn keep_last_per_step<T>(mut v: Vec<T>, step: impl Fn(&T) -> f64) -> Vec<T> {
    v.reverse();
    v.sort_by(|a, b| step(a).total_cmp(&step(b)));
    v.dedup_by(|later, earlier| step(later) == step(earlier));
    v
}

impl RunData {
    /// Reads `metrics.jsonl`, `summary.json`, `config.toml` and `audit.json` from `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ReportError::NotADirectory { path: dir.to_path_buf() });
        }
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let metrics_path = dir.join(METRICS_FILE);
        let metrics = read_optional(&metrics_path)?;
        let (train, evals) = match &metrics {
            Some(text) => parse_metrics(&metrics_path, text)?,
            None => (Vec::new(), Vec::new()),
        };
        let summary_path = dir.join(SUMMARY_FILE);
        let summary = match read_optional(&summary_path)? {
            Some(text) => parse_summary(&summary_path, &text)?,
            None => Summary::default(),
        };
        let config = read_optional(&dir.join(CONFIG_FILE))?;
        let loss_ema = config.as_deref().and_then(loss_ema);
        let audit_path = dir.join("audit.json");
        let audit = read_optional(&audit_path)?.map(|t| parse_json(&audit_path, &t)).transpose()?;
        Ok(Self {
            name,
            metrics_found: metrics.is_some(),
            metrics_path,
            train,
            evals,
            summary,
            config,
            loss_ema,
            audit,
        })
    }

    /// Refuses a folder that holds none of [`RUN_FILES`] (a wrong path), so that no report is
    /// written into it.
    ///
    /// # Errors
    /// `NotADirectory`, or `NotARun` naming the missing files.
    pub fn require_run_folder(dir: &Path) -> Result<()> {
        if !dir.is_dir() {
            return Err(ReportError::NotADirectory { path: dir.to_path_buf() });
        }
        if RUN_FILES.iter().any(|f| dir.join(f).exists()) {
            return Ok(());
        }
        Err(ReportError::NotARun { path: dir.to_path_buf() })
    }

    /// The training loss smoothed as `tuneguard train` smooths it: with β = `train.loss_ema`,
    /// e ← β·e + (1 − β)·loss from e = 0 at every step, bias-corrected to e / (1 − βⁿ) after n
    /// steps (so the eval lines' `train_loss_smoothed` are points of it). Without β, the eval
    /// lines' values. The label names the smoothing.
    pub fn smoothed_train_loss(&self) -> (String, Vec<(f64, f64)>) {
        if let Some(beta) = self.loss_ema {
            let (mut ema, mut n) = (0.0, 0i32);
            let pts = self
                .train
                .iter()
                .filter_map(|p| {
                    let loss = p.loss?;
                    ema = beta * ema + (1.0 - beta) * loss;
                    n = n.saturating_add(1);
                    Some((p.step, ema / (1.0 - beta.powi(n))))
                })
                .collect();
            return (format!("training loss, smoothed (EMA {beta})"), pts);
        }
        let pts = self.evals.iter().filter_map(|e| e.line.train_loss_smoothed.flatten().map(|v| (e.step, v))).collect();
        ("training loss, smoothed".into(), pts)
    }

    /// The summary's `run` object (tool version, start time, command line, model), if any.
    pub fn run_info(&self) -> Option<&RunRecord> {
        self.summary.run.as_ref()
    }

    /// Whether `metrics.jsonl` recorded any step.
    pub fn has_steps(&self) -> bool {
        !self.train.is_empty() || !self.evals.is_empty()
    }

    /// The `early_stopping` object of the summary, if any.
    pub fn early_stopping(&self) -> Option<&EarlyStoppingSummary<Partial>> {
        self.summary.early_stopping.as_ref()
    }

    /// Best step and value: the summary's `early_stopping.best_step`, else the last eval marked
    /// `is_best`, else the eval with the lowest validation loss.
    pub fn best(&self) -> Option<(f64, Option<f64>)> {
        if let Some(step) = self.early_stopping().and_then(|es| es.best_step).map(|s| s as f64) {
            let value = self.early_stopping().and_then(|es| es.best_value);
            let value = value.or_else(|| self.evals.iter().find(|e| e.step == step).and_then(|e| e.val_loss));
            return Some((step, value));
        }
        if let Some(e) = self.evals.iter().rev().find(|e| e.is_best) {
            return Some((e.step, e.val_loss));
        }
        self.evals
            .iter()
            .filter_map(|e| e.val_loss.map(|v| (e.step, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(s, v)| (s, Some(v)))
    }

    /// Validation loss against step: the eval lines, with the summary's `val_loss_base` (measured
    /// before training) at step 0; without eval lines, `val_loss_final` at the last step.
    pub fn val_points(&self) -> Vec<(f64, f64)> {
        let mut pts: Vec<(f64, f64)> = self.evals.iter().filter_map(|e| e.val_loss.map(|v| (e.step, v))).collect();
        if let Some(base) = self.summary.val_loss_base {
            if pts.first().is_none_or(|p| p.0 > 0.0) {
                pts.insert(0, (0.0, base));
            }
        }
        let last = self.summary.steps.map(|s| s as f64).or_else(|| self.train.last().map(|p| p.step));
        if let (true, Some(v), Some(step)) = (self.evals.is_empty(), self.summary.val_loss_final, last) {
            pts.push((step, v));
        }
        pts
    }

    /// Planned steps: the summary's `total_steps`, else the metrics lines'.
    pub fn total_steps(&self) -> Option<f64> {
        self.summary
            .total_steps
            .map(|t| t as f64)
            .or_else(|| self.train.iter().filter_map(|p| p.total_steps).reduce(f64::max))
    }

    /// The step the run stopped at when it stopped before its planned steps (early stopping or
    /// another guard). `stopped_step` is written for every run, so it only counts when below the
    /// planned steps, or, with those unknown, when the reason is not "completed ...".
    pub fn stop_step(&self) -> Option<f64> {
        let es = self.early_stopping()?;
        let step = es.stopped_step? as f64;
        match self.total_steps() {
            Some(total) => (step < total).then_some(step),
            None => {
                let reason = es.stop_reason.as_deref().unwrap_or("");
                (!reason.starts_with("completed")).then_some(step)
            }
        }
    }

    /// The vertical markers of the loss chart: best step, then the early-stop step.
    pub fn markers(&self) -> Vec<Marker> {
        let mut out = Vec::new();
        if let Some((step, value)) = self.best() {
            let value = value.map(|v| format!(" (val loss {v:.4})")).unwrap_or_default();
            out.push(Marker { step, label: format!("best step {step}{value}") });
        }
        if let Some(step) = self.stop_step() {
            out.push(Marker { step, label: format!("stopped at step {step}") });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_are_sorted_by_kind_and_gaps_are_tolerated() {
        let text = concat!(
            "{\"step\":1,\"loss\":2.5,\"lr\":0.001}\n",
            "\n",
            "{\"kind\":\"train\",\"step\":2,\"loss\":null,\"tokens_per_s\":250.5}\n",
            "{\"kind\":\"eval\",\"step\":2,\"val_loss\":2.4,\"is_best\":true}\n",
            "{\"kind\":\"other\",\"step\":3}\n",
            "{\"kind\":\"train\",\"loss\":1.0}\n",
        );
        let (train, evals) = parse_metrics(Path::new("m.jsonl"), text).expect("parses");
        assert_eq!(
            train,
            vec![
                TrainPoint { step: 1.0, total_steps: None, loss: Some(2.5), lr: Some(0.001), tokens_per_s: None },
                TrainPoint { step: 2.0, total_steps: None, loss: None, lr: None, tokens_per_s: Some(250.5) },
            ]
        );
        assert_eq!(evals.len(), 1);
        assert_eq!((evals[0].step, evals[0].val_loss, evals[0].is_best), (2.0, Some(2.4), true));
    }

    #[test]
    fn repeated_steps_after_a_resume_keep_the_last_line() {
        let text = "{\"step\":1,\"loss\":3.0}\n{\"step\":2,\"loss\":2.0}\n{\"step\":3,\"loss\":1.0}\n\
                    {\"step\":2,\"loss\":2.5}\n{\"step\":3,\"loss\":1.5}\n";
        let (train, _) = parse_metrics(Path::new("m.jsonl"), text).expect("parses");
        let got: Vec<(f64, Option<f64>)> = train.iter().map(|p| (p.step, p.loss)).collect();
        assert_eq!(got, vec![(1.0, Some(3.0)), (2.0, Some(2.5)), (3.0, Some(1.5))]);
    }

    #[test]
    fn malformed_metrics_lines_name_their_line() {
        let cases = [
            ("{\"step\":1}\n{\"step\":2}\n{\"step\":3,\n", 3, "EOF"),
            ("{\"step\":1}\n[1,2]\n", 2, "expected a JSON object"),
            ("\n\n\nnot json\n", 4, "expected"),
        ];
        for (text, line, reason_part) in cases {
            match parse_metrics(Path::new("run/metrics.jsonl"), text) {
                Err(e @ ReportError::MalformedLine { line: l, .. }) => {
                    assert_eq!(l, line, "{text:?}");
                    let msg = e.to_string();
                    assert!(msg.starts_with(&format!("run/metrics.jsonl:{line}: ")), "{msg}");
                    assert!(msg.contains(reason_part), "{msg}");
                }
                other => panic!("{text:?}: expected MalformedLine, got {other:?}"),
            }
        }
    }

    fn run_with(summary: Value, evals: &[(f64, f64, bool)]) -> RunData {
        let evals = evals
            .iter()
            .map(|&(step, v, is_best)| EvalPoint { step, val_loss: Some(v), is_best, line: EvalRecord::default() })
            .collect();
        RunData { summary: serde_json::from_value(summary).expect("summary"), evals, ..RunData::default() }
    }

    #[test]
    fn best_step_prefers_summary_then_is_best_then_lowest_val_loss() {
        let evals = [(10.0, 2.5, true), (20.0, 2.0, false), (30.0, 2.2, false)];
        let es = serde_json::json!({"early_stopping": {"best_step": 30, "best_value": 2.1, "stopped_step": 50}});
        let cases = [
            (run_with(es, &evals), Some((30.0, Some(2.1))), Some(50.0)),
            (run_with(serde_json::json!({}), &evals), Some((10.0, Some(2.5))), None),
            (run_with(serde_json::json!({}), &[(10.0, 2.5, false), (20.0, 2.0, false)]), Some((20.0, Some(2.0))), None),
            (run_with(serde_json::json!({}), &[]), None, None),
        ];
        for (run, best, stop) in cases {
            assert_eq!(run.best(), best);
            assert_eq!(run.stop_step(), stop);
        }
    }

    #[test]
    fn stop_marker_only_when_the_run_ended_before_its_planned_steps() {
        let es = |stopped: u32, total: Option<u32>, reason: &str| {
            let mut s = serde_json::json!({"early_stopping": {"stopped_step": stopped, "stop_reason": reason}});
            if let Some(t) = total {
                s["total_steps"] = t.into();
            }
            s
        };
        let cases = [
            (es(40, Some(60), "early stopping: no improvement"), Some(40.0)),
            (es(60, Some(60), "completed the planned 60 steps"), None),
            (es(60, Some(60), "anything"), None),
            (es(50, None, "no improvement in val_loss for 3 evaluations (patience 3)"), Some(50.0)),
            (es(60, None, "completed the planned 60 steps"), None),
        ];
        for (summary, stop) in cases {
            assert_eq!(run_with(summary.clone(), &[]).stop_step(), stop, "{summary}");
        }
    }

    #[test]
    fn validation_points_add_the_base_at_step_0_and_the_final_only_without_evals() {
        let both = json_obj(r#"{"val_loss_base": 2.5, "val_loss_final": 2.2, "steps": 40}"#);
        let cases = [
            (both.clone(), vec![(10.0, 2.4, true)], vec![(0.0, 2.5), (10.0, 2.4)]),
            (both, vec![], vec![(0.0, 2.5), (40.0, 2.2)]),
            (json_obj(r#"{"val_loss_base": 2.5}"#), vec![(0.0, 2.6, false)], vec![(0.0, 2.6)]),
            (json_obj("{}"), vec![(5.0, 2.6, false)], vec![(5.0, 2.6)]),
        ];
        for (summary, evals, want) in cases {
            assert_eq!(run_with(summary, &evals).val_points(), want);
        }
    }

    fn json_obj(s: &str) -> Value {
        serde_json::from_str(s).expect("json")
    }

    #[test]
    fn markers_carry_labels() {
        let es = serde_json::json!({"early_stopping": {"best_step": 30, "best_value": 2.1, "stopped_step": 50}});
        let m = run_with(es, &[]).markers();
        assert_eq!(m[0], Marker { step: 30.0, label: "best step 30 (val loss 2.1000)".into() });
        assert_eq!(m[1], Marker { step: 50.0, label: "stopped at step 50".into() });
    }
}
