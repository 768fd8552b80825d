//! Validation metrics: their names ([`Metric`]), which way is better ([`Direction`]), and one
//! evaluation's values ([`EvalMetrics`]).
use serde::{Deserialize, Serialize};

use crate::presence::{Presence, Written};

/// A validation metric by its recipe name (`early_stopping.metric`), as eval lines name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean negative log-likelihood per supervised token (nats).
    #[default]
    ValLoss,
    /// exp(val_loss).
    ValPerplexity,
    /// Share (0–1) of supervised tokens whose most likely prediction is the target.
    ValTokenAccuracy,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::ValLoss, Metric::ValPerplexity, Metric::ValTokenAccuracy];

    /// `val_loss`, `val_perplexity` or `val_token_accuracy`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ValLoss => "val_loss",
            Metric::ValPerplexity => "val_perplexity",
            Metric::ValTokenAccuracy => "val_token_accuracy",
        }
    }

    /// Which way is better: the loss and the perplexity fall, the accuracy rises.
    pub fn direction(self) -> Direction {
        match self {
            Metric::ValLoss | Metric::ValPerplexity => Direction::Minimize,
            Metric::ValTokenAccuracy => Direction::Maximize,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a [`Metric`]; the message lists the accepted names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownMetric(pub String);

impl std::fmt::Display for UnknownMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = Metric::ALL.iter().map(|m| format!("`{m}`")).collect();
        write!(f, "unknown metric `{}`, expected one of {}", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownMetric {}

impl std::str::FromStr for Metric {
    type Err = UnknownMetric;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownMetric(s.to_string()))
    }
}

/// Whether smaller or larger values of a metric are better (`early_stopping.direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Minimize,
    Maximize,
}

impl Direction {
    /// `minimize` or `maximize`.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Metrics of one evaluation, averaged over every supervised token of the set (`final` of
/// `summary.json`; the base model's in a checkpoint's `state.json`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct EvalMetrics<P: Presence = Written> {
    /// Mean negative log-likelihood per supervised token (nats).
    pub loss: P::Of<f64>,
    /// exp(loss).
    pub perplexity: P::Of<f64>,
    /// Share (0–1) of supervised tokens whose most likely prediction is the target.
    pub token_accuracy: P::Of<f64>,
    /// Supervised tokens evaluated.
    pub tokens: P::Of<usize>,
    #[serde(flatten)]
    pub extra: P::Extra,
}

impl Copy for EvalMetrics {}

impl EvalMetrics {
    /// The value of `metric`.
    pub fn get(&self, metric: Metric) -> f64 {
        match metric {
            Metric::ValLoss => self.loss,
            Metric::ValPerplexity => self.perplexity,
            Metric::ValTokenAccuracy => self.token_accuracy,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn metric_names_parse_and_print_as_the_recipe_writes_them() {
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>(), Ok(m));
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<Metric>(&format!("\"{m}\"")).unwrap(), m);
        }
        let e = "bleu".parse::<Metric>().unwrap_err().to_string();
        assert_eq!(e, "unknown metric `bleu`, expected one of `val_loss`, `val_perplexity`, `val_token_accuracy`");
        let e = serde_json::from_str::<Metric>("\"bleu\"").unwrap_err().to_string();
        assert!(e.contains("`val_loss`, `val_perplexity`, `val_token_accuracy`"), "{e}");
        let e = serde_json::from_str::<Direction>("\"up\"").unwrap_err().to_string();
        assert!(e.contains("`minimize` or `maximize`"), "{e}");
        assert_eq!(Metric::ValTokenAccuracy.direction(), Direction::Maximize);
        assert_eq!(Metric::ValPerplexity.direction(), Direction::Minimize);
    }

    #[test]
    fn get_is_total() {
        let m = EvalMetrics { loss: 2.0, perplexity: 7.4, token_accuracy: 0.5, tokens: 10, extra: () };
        let got: Vec<f64> = Metric::ALL.iter().map(|&k| m.get(k)).collect();
        assert_eq!(got, [2.0, 7.4, 0.5]);
    }
}
