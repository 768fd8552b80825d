//! Validation metrics over the supervised tokens of held-out examples (no gradients).
use rayon::prelude::*;
use tuneguard_data::tokenize::TokenizedExample;
use tuneguard_model::llama::{KvCache, Llama, LogitsFor};

use crate::step::IGNORE;

/// Metrics of one evaluation and the metric names (plain data of `summary.json`, defined in
/// tuneguard-records).
pub use tuneguard_records::{EvalMetrics, Metric};

/// Evaluates `model` on `examples` (rows in parallel, summed in order: the result does not depend
/// on the thread count). Labels are aligned with the ids: logits at i predict labels[i + 1].
///
/// # Errors
/// Model errors from the forward pass (e.g. a sequence longer than the context).
pub fn evaluate(model: &Llama, examples: &[TokenizedExample]) -> tuneguard_model::Result<EvalMetrics> {
    let v = model.config.vocab_size;
    let per: Vec<tuneguard_model::Result<(f64, usize, usize)>> = examples
        .par_iter()
        .map(|ex| {
            let mut cache = KvCache::new(&model.config);
            let logits = model.forward(&ex.input_ids, &mut cache, LogitsFor::All)?; // (t, v)
            let (mut nll, mut n, mut correct) = (0.0, 0, 0);
            for (i, row) in logits.chunks(v).enumerate() {
                let Some(&target) = ex.labels.get(i + 1).filter(|&&l| l != IGNORE) else { continue };
                let target = target as usize;
                nll += tuneguard_model::ops::log_sum_exp(row) - row[target] as f64;
                n += 1;
                // First maximum, as torch.argmax.
                let best = row.iter().enumerate().fold(0, |b, (j, &x)| if x > row[b] { j } else { b });
                correct += usize::from(best == target);
            }
            Ok((nll, n, correct))
        })
        .collect();
    let (mut nll, mut n, mut correct) = (0.0, 0usize, 0usize);
    for r in per {
        let (s, c, k) = r?;
        nll += s;
        n += c;
        correct += k;
    }
    let loss = if n == 0 { f64::NAN } else { nll / n as f64 };
    Ok(EvalMetrics {
        loss,
        perplexity: loss.exp(),
        token_accuracy: correct as f64 / n.max(1) as f64,
        tokens: n,
        extra: (),
    })
}
