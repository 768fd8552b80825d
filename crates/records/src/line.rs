//! The lines of `metrics.jsonl`: one JSON object per line, a [`StepMetrics`] after every
//! optimizer step and an [`EvalRecord`] after every evaluation (the base model's at step 0
//! first), told apart by `kind`.
use serde::{Deserialize, Serialize};

use crate::metric::EvalMetrics;
use crate::presence::{Partial, Presence, Written};

/// The `kind` of a `metrics.jsonl` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Lines without a kind (written before evaluations were logged) are train lines.
    #[default]
    Train,
    Eval,
}

/// One optimizer step's figures (a `"kind": "train"` line).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct StepMetrics<P: Presence = Written> {
    /// Always [`LineKind::Train`].
    pub kind: P::Of<LineKind>,
    /// Optimizer steps taken, this one included (1-based).
    pub step: P::Of<u64>,
    /// Optimizer steps planned.
    pub total_steps: P::Of<u64>,
    /// Epochs started so far (1 during the first pass over the data).
    pub epoch: P::Of<u64>,
    /// Mean cross-entropy per supervised token (nats; the L1 penalty is reported apart).
    pub loss: P::Of<f64>,
    /// Learning rate of the step.
    pub lr: P::Of<f32>,
    /// Global gradient norm before clipping.
    pub grad_norm: P::Of<f64>,
    /// The L1 penalty added to the loss (nats), when `optim.l1` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1_penalty: Option<f64>,
    /// Distillation's λ·T²·KL to the base (`[distill]`), added to the loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill_loss: Option<f64>,
    /// EWC's λ/2·Σ F·ΔW² (`[ewc]`) and L2-SP's λ/2·‖ΔW‖² (`[l2sp]`), added to the loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ewc_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l2sp_penalty: Option<f64>,
    /// Replay rows among the step's rows (`[replay]`); their tokens are in `tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_rows: Option<usize>,
    /// Tokens in the step's sequences.
    pub tokens: P::Of<usize>,
    /// `tokens` over the step's wall-clock seconds.
    pub tokens_per_s: P::Of<f64>,
}

/// One evaluation (a `"kind": "eval"` line).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct EvalRecord<P: Presence = Written> {
    /// Always [`LineKind::Eval`].
    pub kind: P::Of<LineKind>,
    /// Optimizer steps taken before the evaluation (0: the base model).
    pub step: P::Of<u64>,
    /// Mean negative log-likelihood per supervised validation token (nats).
    pub val_loss: P::Of<f64>,
    /// exp(val_loss).
    pub val_perplexity: P::Of<f64>,
    /// Share (0–1) of supervised validation tokens predicted right.
    pub val_token_accuracy: P::Of<f64>,
    /// Supervised validation tokens.
    pub val_tokens: P::Of<usize>,
    /// Exponential moving average of the training loss (nats, bias-corrected); null at step 0.
    #[serde(default, deserialize_with = "P::nullable")]
    pub train_loss_smoothed: P::Of<Option<f64>>,
    /// val_loss − train_loss_smoothed: the generalization gap (nats); null at step 0.
    #[serde(default, deserialize_with = "P::nullable")]
    pub gap: P::Of<Option<f64>>,
    /// The best evaluation so far by the early-stopping metric.
    pub is_best: P::Of<bool>,
    pub overfitting_alarm: P::Of<bool>,
    #[serde(flatten)]
    pub extra: P::Extra,
}

impl EvalRecord {
    /// The line of an evaluation at `step` with `smoothed` the smoothed training loss.
    pub fn new(step: u64, m: &EvalMetrics, smoothed: Option<f64>) -> Self {
        EvalRecord {
            kind: LineKind::Eval,
            step,
            val_loss: m.loss,
            val_perplexity: m.perplexity,
            val_token_accuracy: m.token_accuracy,
            val_tokens: m.tokens,
            train_loss_smoothed: smoothed,
            gap: smoothed.map(|s| m.loss - s),
            is_best: false,
            overfitting_alarm: false,
            extra: (),
        }
    }
}

/// One line of `metrics.jsonl` as read back.
/// An evaluation line as written, with the forgetting guard's general-domain measurements as
/// top-level fields: `general_<set>_<metric>` (e.g. `general_wikitext2_perplexity`),
/// `general_<set>_rise` (relative rise against the base, positive = worse) and `general_rise`
/// (the largest). A reader finds them in [`EvalRecord::general`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalLine<'a> {
    #[serde(flatten)]
    pub record: &'a EvalRecord,
    #[serde(flatten)]
    pub general: &'a std::collections::BTreeMap<String, f64>,
}

impl EvalRecord<Partial> {
    /// The `general_*` fields of the line (none when the run measured no general set).
    pub fn general(&self) -> std::collections::BTreeMap<String, f64> {
        self.extra
            .iter()
            .filter(|(k, _)| k.starts_with("general_"))
            .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricsLine {
    Train(StepMetrics<Partial>),
    Eval(EvalRecord<Partial>),
}

/// Why a `metrics.jsonl` line could not be read.
#[derive(Debug)]
pub enum LineError {
    /// Not JSON, or a field of the wrong type.
    Json(serde_json::Error),
    /// JSON, but not an object.
    NotAnObject(serde_json::Value),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::Json(e) => write!(f, "{e}"),
            LineError::NotAnObject(v) => write!(f, "expected a JSON object, found {v}"),
        }
    }
}

impl std::error::Error for LineError {}

/// The kind of a line as read: another version may write kinds this one does not know.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum AnyKind {
    Train,
    Eval,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Head {
    #[serde(default)]
    kind: Option<AnyKind>,
}

impl MetricsLine {
    /// Reads one line: `Ok(None)` for a kind this version does not know; a line without a kind
    /// is a train line. Fields may be missing ([`Partial`]).
    ///
    /// # Errors
    /// A line that is not a JSON object, or whose fields have the wrong type.
    pub fn parse(line: &str) -> Result<Option<Self>, LineError> {
        let value: serde_json::Value = serde_json::from_str(line).map_err(LineError::Json)?;
        if !value.is_object() {
            return Err(LineError::NotAnObject(value));
        }
        let head = Head::deserialize(&value).map_err(LineError::Json)?;
        Ok(match head.kind.unwrap_or(AnyKind::Train) {
            AnyKind::Train => Some(MetricsLine::Train(StepMetrics::deserialize(&value).map_err(LineError::Json)?)),
            AnyKind::Eval => Some(MetricsLine::Eval(EvalRecord::deserialize(&value).map_err(LineError::Json)?)),
            AnyKind::Other => None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    /// The writer's field names and order, and the reader reading them back.
    #[test]
    fn lines_are_written_in_field_order_and_read_back() {
        let m: StepMetrics = StepMetrics {
            kind: LineKind::Train,
            step: 2,
            total_steps: 6,
            epoch: 1,
            loss: 2.5,
            lr: 0.00025,
            grad_norm: 0.5,
            l1_penalty: None,
            distill_loss: None,
            ewc_penalty: None,
            l2sp_penalty: None,
            replay_rows: None,
            tokens: 100,
            tokens_per_s: 30.5,
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"train","step":2,"total_steps":6,"epoch":1,"loss":2.5,"lr":0.00025,"grad_norm":0.5,"tokens":100,"tokens_per_s":30.5}"#
        );
        let Some(MetricsLine::Train(back)) = MetricsLine::parse(&text).unwrap() else { panic!("a train line") };
        assert_eq!((back.step, back.lr, back.l1_penalty), (Some(2), Some(0.00025), None));
        let base = EvalMetrics { loss: 2.0, perplexity: 2f64.exp(), token_accuracy: 0.5, tokens: 10, extra: () };
        let text = serde_json::to_string(&EvalRecord::new(0, &base, None)).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"kind":"eval","step":0,"val_loss":2.0,"val_perplexity":{},"val_token_accuracy":0.5,"val_tokens":10,"train_loss_smoothed":null,"gap":null,"is_best":false,"overfitting_alarm":false}}"#,
                2f64.exp()
            )
        );
        let Some(MetricsLine::Eval(back)) = MetricsLine::parse(&text).unwrap() else { panic!("an eval line") };
        assert_eq!((back.train_loss_smoothed, back.gap, back.is_best), (Some(None), Some(None), Some(false)));
        assert!(back.extra.is_empty());
    }

    #[test]
    fn lines_of_other_versions_are_read_as_far_as_they_go() {
        let Some(MetricsLine::Train(old)) = MetricsLine::parse(r#"{"step":1,"loss":2.5}"#).unwrap() else {
            panic!("no kind: a train line")
        };
        assert_eq!((old.kind, old.step, old.loss, old.lr), (None, Some(1), Some(2.5), None));
        assert!(MetricsLine::parse(r#"{"kind":"other","step":3}"#).unwrap().is_none());
        let Some(MetricsLine::Eval(e)) = MetricsLine::parse(r#"{"kind":"eval","step":2,"new_metric":1}"#).unwrap()
        else {
            panic!("an eval line")
        };
        assert_eq!((e.train_loss_smoothed, e.extra.len()), (None, 1));
        let e = MetricsLine::parse("[1,2]").unwrap_err().to_string();
        assert_eq!(e, "expected a JSON object, found [1,2]");
        assert!(MetricsLine::parse(r#"{"step":"one"}"#).is_err());
    }
}
