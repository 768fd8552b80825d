//! Classification scores with scikit-learn's semantics (`sklearn.metrics`, version 1.9):
//! `accuracy_score`, `precision_recall_fscore_support` and `confusion_matrix`.
//!
//! - Labels are the sorted union of `y_true` and `y_pred`, or the `labels` given, in their
//!   order; a given label absent from both is an empty class (support 0).
//! - Per class, precision = tp / (tp + fp), recall = tp / (tp + fn) and
//!   F-beta = (1 + β²)·tp / ((1 + β²)·tp + β²·fn + fp); a zero denominator gives the
//!   [`ZeroDivision`] value (scikit-learn's default `"warn"` is [`ZeroDivision::Zero`]).
//! - `micro` sums tp, fp and fn over the labels first; `macro` is the mean over labels and
//!   `weighted` the mean weighted by support, both skipping NaN values (`zero_division=nan`),
//!   `weighted` falling back to the plain mean when every support is 0; `binary` is the
//!   `pos_label` class and needs at most two labels in the data.
//!
//! Empty inputs are an error here (scikit-learn returns NaN or zeros with a warning).
use std::collections::BTreeMap;
use std::fmt::Debug;

use crate::{MetricsError, Result};

/// The value of a ratio whose denominator is 0 (scikit-learn's `zero_division`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroDivision {
    #[default]
    Zero,
    One,
    Nan,
}

impl ZeroDivision {
    fn value(self) -> f64 {
        match self {
            ZeroDivision::Zero => 0.0,
            ZeroDivision::One => 1.0,
            ZeroDivision::Nan => f64::NAN,
        }
    }
}

/// How per-class scores are combined (scikit-learn's `average`).
#[derive(Debug, Clone, PartialEq)]
pub enum Average<L> {
    Binary { pos_label: L },
    Micro,
    Macro,
    Weighted,
}

/// Per-class scores, in the order of `labels`.
#[derive(Debug, Clone, PartialEq)]
pub struct PerClass<L> {
    pub labels: Vec<L>,
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub f_score: Vec<f64>,
    /// Items whose true label is this class.
    pub support: Vec<usize>,
}

/// Averaged scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub precision: f64,
    pub recall: f64,
    pub f_score: f64,
}

/// Fraction of items predicted right.
///
/// # Errors
/// `LengthMismatch`, `Empty`.
pub fn accuracy<L: PartialEq>(y_true: &[L], y_pred: &[L]) -> Result<f64> {
    check_lengths(y_true, y_pred)?;
    let right = y_true.iter().zip(y_pred).filter(|(t, p)| t == p).count();
    Ok(right as f64 / y_true.len() as f64)
}

/// `C[i][j]`: items of true label `labels[i]` predicted as `labels[j]`; items with a label not
/// in `labels` are left out. `labels` defaults to the sorted labels of both inputs.
///
/// # Errors
/// `LengthMismatch`, `Empty`, `NoLabels` (an empty `labels`), `DuplicateLabel`,
/// `NoLabelInTrue` (none of `labels` is a true label).
pub fn confusion_matrix<L: Ord + Clone + Debug>(
    y_true: &[L],
    y_pred: &[L],
    labels: Option<&[L]>,
) -> Result<(Vec<L>, Vec<Vec<usize>>)> {
    check_lengths(y_true, y_pred)?;
    let labels = match labels {
        Some(given) => {
            let index = index_of(given)?;
            if !y_true.iter().any(|t| index.contains_key(t)) {
                return Err(MetricsError::NoLabelInTrue);
            }
            given.to_vec()
        }
        None => present(y_true, y_pred),
    };
    let index = index_of(&labels)?;
    let mut m = vec![vec![0; labels.len()]; labels.len()];
    for (t, p) in y_true.iter().zip(y_pred) {
        if let (Some(&i), Some(&j)) = (index.get(t), index.get(p)) {
            m[i][j] += 1;
        }
    }
    Ok((labels, m))
}

/// Precision, recall, F-beta and support of every class (scikit-learn's `average=None`).
///
/// # Errors
/// `LengthMismatch`, `Empty`, `NoLabels`, `DuplicateLabel`, `OutOfRange` (beta < 0 or NaN).
pub fn per_class<L: Ord + Clone + Debug>(
    y_true: &[L],
    y_pred: &[L],
    labels: Option<&[L]>,
    beta: f64,
    zero_division: ZeroDivision,
) -> Result<PerClass<L>> {
    check_lengths(y_true, y_pred)?;
    check_beta(beta)?;
    let labels = match labels {
        Some(given) => {
            index_of(given)?;
            given.to_vec()
        }
        None => present(y_true, y_pred),
    };
    let counts = class_counts(y_true, y_pred, &labels);
    let mut out = PerClass { labels, precision: vec![], recall: vec![], f_score: vec![], support: vec![] };
    for c in counts {
        let s = c.scores(beta, zero_division);
        out.precision.push(s.precision);
        out.recall.push(s.recall);
        out.f_score.push(s.f_score);
        out.support.push(c.true_sum);
    }
    Ok(out)
}

/// Precision, recall and F-beta combined as `average` says.
///
/// # Errors
/// As [`per_class`], and for `Binary`: `NotBinary` (more than two labels in the data),
/// `InvalidPosLabel` (two labels, neither `pos_label`).
pub fn averaged<L: Ord + Clone + Debug>(
    y_true: &[L],
    y_pred: &[L],
    labels: Option<&[L]>,
    average: &Average<L>,
    beta: f64,
    zero_division: ZeroDivision,
) -> Result<Scores> {
    check_lengths(y_true, y_pred)?;
    check_beta(beta)?;
    let labels = match (average, labels) {
        (Average::Binary { pos_label }, _) => {
            let present = present(y_true, y_pred);
            if present.len() > 2 {
                return Err(MetricsError::NotBinary(present.len()));
            }
            if present.len() == 2 && !present.contains(pos_label) {
                return Err(MetricsError::InvalidPosLabel {
                    pos_label: format!("{pos_label:?}"),
                    present: format!("{present:?}"),
                });
            }
            vec![pos_label.clone()]
        }
        (_, Some(given)) => {
            index_of(given)?;
            given.to_vec()
        }
        (_, None) => present(y_true, y_pred),
    };
    let counts = class_counts(y_true, y_pred, &labels);
    let per: Vec<Scores> = counts.iter().map(|c| c.scores(beta, zero_division)).collect();
    Ok(match average {
        Average::Binary { .. } => per[0],
        Average::Micro => {
            let sum = counts.iter().fold(Counts::default(), |a, c| Counts {
                tp: a.tp + c.tp,
                pred_sum: a.pred_sum + c.pred_sum,
                true_sum: a.true_sum + c.true_sum,
            });
            sum.scores(beta, zero_division)
        }
        Average::Macro => combine(&per, None),
        Average::Weighted => {
            let weights: Vec<f64> = counts.iter().map(|c| c.true_sum as f64).collect();
            combine(&per, Some(&weights))
        }
    })
}

/// One class's true positives, predicted count (tp + fp) and true count (tp + fn).
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    tp: usize,
    pred_sum: usize,
    true_sum: usize,
}

impl Counts {
    fn scores(self, beta: f64, zd: ZeroDivision) -> Scores {
        let divide = |num: f64, den: f64| if den == 0.0 { zd.value() } else { num / den };
        let (tp, pred, truth) = (self.tp as f64, self.pred_sum as f64, self.true_sum as f64);
        let precision = divide(tp, pred);
        let recall = divide(tp, truth);
        let f_score = if beta.is_infinite() {
            recall
        } else if beta == 0.0 {
            precision
        } else {
            let b2 = beta * beta;
            divide((1.0 + b2) * tp, b2 * truth + pred)
        };
        Scores { precision, recall, f_score }
    }
}

fn class_counts<L: Ord>(y_true: &[L], y_pred: &[L], labels: &[L]) -> Vec<Counts> {
    let index: BTreeMap<&L, usize> = labels.iter().enumerate().map(|(i, l)| (l, i)).collect();
    let mut counts = vec![Counts::default(); labels.len()];
    for (t, p) in y_true.iter().zip(y_pred) {
        if let Some(&i) = index.get(t) {
            counts[i].true_sum += 1;
            if t == p {
                counts[i].tp += 1;
            }
        }
        if let Some(&j) = index.get(p) {
            counts[j].pred_sum += 1;
        }
    }
    counts
}

/// scikit-learn's `_nanaverage` of each score: NaN entries (and their weights) left out, the
/// plain mean when the weights sum to 0, NaN when nothing is left.
fn combine(per: &[Scores], weights: Option<&[f64]>) -> Scores {
    let avg = |get: fn(&Scores) -> f64| {
        let kept: Vec<(f64, f64)> = per
            .iter()
            .enumerate()
            .filter(|(_, s)| !get(s).is_nan())
            .map(|(i, s)| (get(s), weights.map_or(1.0, |w| w[i])))
            .collect();
        if kept.is_empty() {
            return f64::NAN;
        }
        let total: f64 = kept.iter().map(|k| k.1).sum();
        if total == 0.0 {
            kept.iter().map(|k| k.0).sum::<f64>() / kept.len() as f64
        } else {
            kept.iter().map(|k| k.0 * k.1).sum::<f64>() / total
        }
    };
    Scores { precision: avg(|s| s.precision), recall: avg(|s| s.recall), f_score: avg(|s| s.f_score) }
}

fn check_lengths<L>(y_true: &[L], y_pred: &[L]) -> Result<()> {
    if y_true.len() != y_pred.len() {
        return Err(MetricsError::LengthMismatch { y_true: y_true.len(), y_pred: y_pred.len() });
    }
    if y_true.is_empty() {
        return Err(MetricsError::Empty);
    }
    Ok(())
}

fn check_beta(beta: f64) -> Result<()> {
    if beta.is_nan() || beta < 0.0 {
        return Err(MetricsError::OutOfRange { what: "beta", range: "≥ 0", value: beta });
    }
    Ok(())
}

/// The sorted labels of both inputs.
fn present<L: Ord + Clone>(y_true: &[L], y_pred: &[L]) -> Vec<L> {
    let mut all: Vec<L> = y_true.iter().chain(y_pred).cloned().collect();
    all.sort();
    all.dedup();
    all
}

fn index_of<L: Ord + Debug>(labels: &[L]) -> Result<BTreeMap<&L, usize>> {
    if labels.is_empty() {
        return Err(MetricsError::NoLabels);
    }
    let mut index = BTreeMap::new();
    for (i, l) in labels.iter().enumerate() {
        if index.insert(l, i).is_some() {
            return Err(MetricsError::DuplicateLabel(format!("{l:?}")));
        }
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand calculation: 3 classes, class 2 never predicted, class 9 given but absent.
    #[test]
    fn hand_computed_scores() -> Result<()> {
        let t = [0, 0, 1, 1, 2, 2];
        let p = [0, 1, 1, 1, 0, 0];
        assert_eq!(accuracy(&t, &p)?, 0.5);
        let (labels, m) = confusion_matrix(&t, &p, None)?;
        assert_eq!(labels, [0, 1, 2]);
        assert_eq!(m, [vec![1, 1, 0], vec![0, 2, 0], vec![2, 0, 0]]);
        let pc = per_class(&t, &p, Some(&[0, 1, 2, 9]), 1.0, ZeroDivision::Zero)?;
        // class 0: tp 1, predicted 3, true 2; class 1: tp 2, predicted 3, true 2; class 2 and 9: none predicted
        assert_eq!(pc.precision, [1.0 / 3.0, 2.0 / 3.0, 0.0, 0.0]);
        assert_eq!(pc.recall, [0.5, 1.0, 0.0, 0.0]);
        assert_eq!(pc.f_score, [2.0 / 5.0, 4.0 / 5.0, 0.0, 0.0]);
        assert_eq!(pc.support, [2, 2, 2, 0]);
        let nan = per_class(&t, &p, Some(&[9]), 1.0, ZeroDivision::Nan)?;
        assert!(nan.precision[0].is_nan() && nan.recall[0].is_nan() && nan.f_score[0].is_nan());
        let micro = averaged(&t, &p, None, &Average::Micro, 1.0, ZeroDivision::Zero)?;
        assert_eq!((micro.precision, micro.recall), (0.5, 0.5));
        let macro_ = averaged(&t, &p, None, &Average::Macro, 1.0, ZeroDivision::Zero)?;
        assert!((macro_.precision - 1.0 / 3.0).abs() < 1e-15);
        Ok(())
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cases: [(Result<f64>, MetricsError); 2] = [
            (accuracy(&[1, 2], &[1]), MetricsError::LengthMismatch { y_true: 2, y_pred: 1 }),
            (accuracy::<u8>(&[], &[]), MetricsError::Empty),
        ];
        for (got, want) in cases {
            assert_eq!(got, Err(want));
        }
        assert_eq!(confusion_matrix(&[1], &[1], Some(&[])).err(), Some(MetricsError::NoLabels));
        assert_eq!(confusion_matrix(&[1], &[2], Some(&[2])).err(), Some(MetricsError::NoLabelInTrue));
        assert_eq!(
            per_class(&[1], &[1], Some(&[1, 1]), 1.0, ZeroDivision::Zero).err().map(|e| e.to_string()),
            Some("labels lists 1 twice".into())
        );
        let binary = Average::Binary { pos_label: 1 };
        assert_eq!(
            averaged(&[0, 1, 2], &[0, 1, 2], None, &binary, 1.0, ZeroDivision::Zero).err(),
            Some(MetricsError::NotBinary(3))
        );
        let e = averaged(&[2, 3], &[2, 3], None, &binary, 1.0, ZeroDivision::Zero).err();
        assert!(matches!(e, Some(MetricsError::InvalidPosLabel { .. })), "{e:?}");
        assert!(averaged(&[1], &[1], None, &Average::Micro, -1.0, ZeroDivision::Zero).is_err());
    }
}
