//! Perplexity from negative log-likelihood sums: exp(Σ NLL / tokens), the NLL in nats (natural
//! log), as transformers' "Perplexity of fixed-length models" guide and lm-evaluation-harness
//! (`word_perplexity` aside) compute it. Sums rather than means are kept so that windows or
//! batches of different lengths combine exactly.
use crate::info::{MetricInfo, PERPLEXITY};
use crate::Metric;

/// Running sums of the scored tokens' NLL.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Perplexity {
    /// Σ −ln p(token), nats.
    pub nll_sum: f64,
    pub tokens: u64,
}

impl Perplexity {
    /// Mean NLL per token (nats), `None` before any token.
    pub fn mean_nll(&self) -> Option<f64> {
        (self.tokens > 0).then(|| self.nll_sum / self.tokens as f64)
    }
}

impl Metric for Perplexity {
    /// (Σ NLL of some tokens in nats, how many tokens)
    type Item<'a> = (f64, u64);

    fn info(&self) -> MetricInfo {
        PERPLEXITY
    }

    fn update(&mut self, (nll_sum, tokens): (f64, u64)) {
        self.nll_sum += nll_sum;
        self.tokens += tokens;
    }

    fn value(&self) -> Option<f64> {
        self.mean_nll().map(f64::exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_of_different_lengths_combine_exactly() {
        let mut p = Perplexity::default();
        assert_eq!(p.value(), None);
        p.update((2.0 * 3.0, 3)); // 3 tokens at 2 nats
        p.update((1.0, 1)); // 1 token at 1 nat
        assert_eq!(p.mean_nll(), Some(7.0 / 4.0));
        assert_eq!(p.value(), Some((7.0f64 / 4.0).exp()));
        assert_eq!(p.info().name, "perplexity");
    }
}
