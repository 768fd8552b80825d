//! Names and units of the metrics, as `tuneguard eval --json` and the records write them.

/// What a metric's value measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A fraction in [0, 1] (shown as a percentage in tables).
    Fraction,
    /// exp(nats per token), ≥ 1.
    Perplexity,
    /// Nats per token.
    NatsPerToken,
}

/// A metric's unique name, unit and which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MetricInfo {
    pub name: &'static str,
    pub unit: Unit,
    pub higher_is_better: bool,
}

const fn fraction(name: &'static str) -> MetricInfo {
    MetricInfo { name, unit: Unit::Fraction, higher_is_better: true }
}

pub const ACCURACY: MetricInfo = fraction("accuracy");
/// Accuracy with choices scored by log-likelihood per byte (lm-evaluation-harness `acc_norm`).
pub const ACCURACY_NORM: MetricInfo = fraction("acc_norm");
pub const PRECISION: MetricInfo = fraction("precision");
pub const RECALL: MetricInfo = fraction("recall");
pub const F1: MetricInfo = fraction("f1");
pub const EXACT_MATCH: MetricInfo = fraction("exact_match");
pub const TOKEN_F1: MetricInfo = fraction("token_f1");
pub const ROUGE_L: MetricInfo = fraction("rouge_l");
pub const PERPLEXITY: MetricInfo = MetricInfo { name: "perplexity", unit: Unit::Perplexity, higher_is_better: false };
pub const NLL: MetricInfo = MetricInfo { name: "nll", unit: Unit::NatsPerToken, higher_is_better: false };

/// Every metric, each name once.
pub const ALL: [MetricInfo; 10] =
    [ACCURACY, ACCURACY_NORM, PRECISION, RECALL, F1, EXACT_MATCH, TOKEN_F1, ROUGE_L, PERPLEXITY, NLL];

/// The metric named `name`.
pub fn by_name(name: &str) -> Option<MetricInfo> {
    ALL.into_iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for (i, m) in ALL.iter().enumerate() {
            assert!(ALL[..i].iter().all(|o| o.name != m.name), "{} twice", m.name);
            assert_eq!(by_name(m.name), Some(*m));
        }
        assert_eq!(by_name("bleu"), None);
    }
}
