//! Autoregressive decoding with a KV cache: greedy, or sampling with temperature, top-k and
//! top-p (nucleus, Holtzman et al. 2019) from a seeded RNG, stopping at a stop token or a length.
use std::ops::ControlFlow;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::error::{ModelError, Result};
use crate::llama::{KvCache, Llama, LogitsFor};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Maximum new tokens (≥ 1).
    pub max_new_tokens: usize,
    /// 0 = greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Keep the k most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0 = off).
    pub top_p: f32,
    pub seed: u64,
    /// Generation stops after emitting one of these (EOS, `<|im_end|>`...).
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 256,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    StopToken,
    MaxNewTokens,
    ContextWindow,
    Callback,
}

#[derive(Debug, Clone)]
pub struct Generation {
    /// New token ids, including the stop token when one ended the run.
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    pub prompt_tokens: usize,
}

impl GenerateOptions {
    /// # Errors
    /// `InvalidRequest` naming the bad option.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidRequest(m));
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!("temperature must be a finite number >= 0, got {}", self.temperature));
        }
        if self.top_p.is_nan() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

/// Index of the largest logit (first one on ties, as `torch.argmax`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Draws one token from `softmax(logits / temperature)` restricted by top-k and top-p.
pub fn sample(logits: &[f32], opts: &GenerateOptions, rng: &mut StdRng) -> u32 {
    if opts.temperature == 0.0 {
        return argmax(logits);
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if opts.top_k > 0 {
        idx.truncate(opts.top_k);
    }
    let max = logits[idx[0]];
    let mut probs: Vec<f64> = idx.iter().map(|&i| (((logits[i] - max) / opts.temperature) as f64).exp()).collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if opts.top_p < 1.0 {
        let mut cum = 0.0;
        let keep = probs.iter().position(|p| {
            cum += p;
            cum >= opts.top_p as f64
        });
        let keep = keep.map_or(probs.len(), |k| k + 1);
        probs.truncate(keep);
        idx.truncate(keep);
    }
    let total: f64 = probs.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (p, &i) in probs.iter().zip(&idx) {
        u -= p;
        if u <= 0.0 {
            return i as u32;
        }
    }
    idx[idx.len() - 1] as u32
}

/// Generates after `prompt`, calling `on_token` with each new id as soon as it is chosen;
/// returning `ControlFlow::Break` from it stops the run.
///
/// # Errors
/// `InvalidRequest` for bad options, an empty prompt or a prompt that fills the context window.
pub fn generate(
    model: &Llama,
    prompt: &[u32],
    opts: &GenerateOptions,
    mut on_token: impl FnMut(u32) -> ControlFlow<()>,
) -> Result<Generation> {
    opts.validate()?;
    let ctx = model.config.max_position_embeddings;
    if prompt.is_empty() {
        return Err(ModelError::InvalidRequest("the prompt is empty".into()));
    }
    if prompt.len() >= ctx {
        return Err(ModelError::InvalidRequest(format!(
            "the prompt has {} tokens but the context window holds {ctx} (including at least one new token)",
            prompt.len()
        )));
    }
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut cache = KvCache::new(&model.config);
    let mut logits = model.forward(prompt, &mut cache, LogitsFor::Last)?;
    let mut tokens = Vec::new();
    let stop = loop {
        let next = sample(&logits, opts, &mut rng);
        tokens.push(next);
        if on_token(next).is_break() {
            break StopReason::Callback;
        }
        if opts.stop_tokens.contains(&next) {
            break StopReason::StopToken;
        }
        if tokens.len() >= opts.max_new_tokens {
            break StopReason::MaxNewTokens;
        }
        if cache.len() + 1 > ctx {
            break StopReason::ContextWindow;
        }
        logits = model.forward(&[next], &mut cache, LogitsFor::Last)?;
    };
    Ok(Generation { tokens, stop, prompt_tokens: prompt.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_max() {
        assert_eq!(argmax(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let opts = GenerateOptions { temperature: 1.0, top_k: 1, ..Default::default() };
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..20 {
            assert_eq!(sample(&[0.0, 5.0, 1.0], &opts, &mut rng), 1);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // probs ≈ [0.844, 0.114, 0.042]: top_p 0.8 keeps only token 0.
        let opts = GenerateOptions { temperature: 1.0, top_p: 0.8, ..Default::default() };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            assert_eq!(sample(&[3.0, 1.0, 0.0], &opts, &mut rng), 0);
        }
    }

    #[test]
    fn sampling_frequencies_follow_softmax() {
        // softmax([ln 3, 0]) = [0.75, 0.25].
        let opts = GenerateOptions { temperature: 1.0, ..Default::default() };
        let mut rng = StdRng::seed_from_u64(3);
        let n = 20_000;
        let ones = (0..n).filter(|_| sample(&[3f32.ln(), 0.0], &opts, &mut rng) == 1).count();
        let frac = ones as f64 / n as f64;
        assert!((frac - 0.25).abs() < 0.015, "{frac}");
    }

    #[test]
    fn options_are_checked() {
        assert!(GenerateOptions { max_new_tokens: 0, ..Default::default() }.validate().is_err());
        assert!(GenerateOptions { top_p: 0.0, ..Default::default() }.validate().is_err());
        assert!(GenerateOptions { temperature: -1.0, ..Default::default() }.validate().is_err());
    }
}
