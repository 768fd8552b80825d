//! Sliding-window perplexity, as the transformers guide "Perplexity of fixed-length models"
//! computes it: the rows are joined with `"\n\n"` and tokenized once without special tokens;
//! windows of `window` tokens start every `stride` tokens; each window scores only the tokens
//! that no earlier window scored, with the window's earlier tokens as their context, so every
//! token after the first window is predicted from at least `window − stride` tokens.
//!
//! A token needs a token before it in its window: the text's first token is never scored, and
//! with `stride == window` neither is the first token of each window (the guide's label shift
//! drops them too). One difference from the guide's loop: it multiplies each window's mean loss
//! by (scored tokens − 1) for every window; here each scored token's NLL is summed exactly, so
//! `perplexity = exp(Σ NLL / scored tokens)` over the same tokens.
use rayon::prelude::*;
use serde::Serialize;
use tuneguard_metrics::bootstrap::{Bootstrap, Interval};
use tuneguard_model::llama::Llama;

use crate::{EvalError, Result};

/// One window: tokens `begin..end` go through the model; tokens `scored_from..end` are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub begin: usize,
    pub end: usize,
    pub scored_from: usize,
}

/// The windows over `len` tokens.
///
/// # Errors
/// `Setting` naming `--window` (< 2) or `--stride` (0, or above the window, which would leave
/// tokens unscored).
pub fn windows(len: usize, window: usize, stride: usize) -> Result<Vec<Window>> {
    if window < 2 {
        return Err(EvalError::Setting {
            flag: "--window",
            reason: format!("must be at least 2 tokens, got {window}"),
        });
    }
    if stride == 0 || stride > window {
        return Err(EvalError::Setting {
            flag: "--stride",
            reason: format!("must be between 1 and the window ({window} tokens), got {stride}"),
        });
    }
    let mut out = Vec::new();
    let mut prev_end = 0;
    for begin in (0..len).step_by(stride) {
        let end = (begin + window).min(len);
        let scored_from = prev_end.max(begin + 1);
        if scored_from < end {
            out.push(Window { begin, end, scored_from });
        }
        prev_end = end;
        if end == len {
            break;
        }
    }
    Ok(out)
}

/// The perplexity of a token sequence and how it was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerplexityReport {
    /// exp(nll).
    pub perplexity: f64,
    /// Mean negative log-likelihood of the scored tokens, nats per token.
    pub nll: f64,
    /// Tokens scored (all but the unpredictable ones, see the module docs).
    pub tokens_scored: u64,
    /// Tokens in the text.
    pub tokens: usize,
    pub windows: usize,
    pub window: usize,
    pub stride: usize,
    /// Percentile-bootstrap interval of the perplexity over windows (resampled whole).
    pub interval: Option<Interval>,
}

/// The perplexity of `tokens` under `model` with windows of `window` tokens moved by
/// `stride`; `on_window` is called once per window done (for a progress bar).
///
/// # Errors
/// `Setting` (as [`windows`], or a window longer than the model's context, or fewer than two
/// tokens), `Model` from the forward pass.
pub fn perplexity(
    model: &Llama,
    tokens: &[u32],
    window: usize,
    stride: usize,
    bootstrap: Option<Bootstrap>,
    on_window: &(dyn Fn() + Sync),
) -> Result<PerplexityReport> {
    let context = model.config.max_position_embeddings;
    if window > context {
        return Err(EvalError::Setting {
            flag: "--window",
            reason: format!("{window} tokens exceed the model's context length ({context} tokens)"),
        });
    }
    if tokens.len() < 2 {
        return Err(EvalError::Setting {
            flag: "the text",
            reason: format!("has {} token(s); perplexity needs at least 2", tokens.len()),
        });
    }
    let ws = windows(tokens.len(), window, stride)?;
    let sizes: Vec<usize> = ws.iter().map(|w| w.end - w.begin).collect();
    let per: Vec<Result<Vec<(f64, u64)>>> = crate::batch::groups(&sizes, crate::batch::BATCH_TOKENS)
        .into_par_iter()
        .map(|g| {
            let r = windows_nll(model, tokens, &ws[g]);
            if let Ok(done) = &r {
                done.iter().for_each(|_| on_window());
            }
            r
        })
        .collect();
    let per: Vec<(f64, u64)> = per.into_iter().collect::<Result<Vec<_>>>()?.concat();
    let (nll_sum, scored) = per.iter().fold((0.0, 0), |(s, n), &(a, b)| (s + a, n + b));
    let nll = nll_sum / scored as f64;
    let interval = match bootstrap {
        Some(b) => Some(
            b.interval(per.len(), |idx| {
                let (s, n) = idx.iter().fold((0.0, 0), |(s, n), &i| (s + per[i].0, n + per[i].1));
                (s / n as f64).exp()
            })
            .map_err(|e| EvalError::Setting { flag: "--bootstrap", reason: e.to_string() })?,
        ),
        None => None,
    };
    Ok(PerplexityReport {
        perplexity: nll.exp(),
        nll,
        tokens_scored: scored,
        tokens: tokens.len(),
        windows: ws.len(),
        window,
        stride,
        interval,
    })
}

/// (Σ NLL in nats, scored tokens) of each window, in one batched forward pass: a
/// window's logits are asked for from the position before its first scored token.
fn windows_nll(model: &Llama, tokens: &[u32], ws: &[Window]) -> Result<Vec<(f64, u64)>> {
    let v = model.config.vocab_size;
    let asks: Vec<(&[u32], usize)> =
        ws.iter().map(|w| (&tokens[w.begin..w.end], w.scored_from - 1 - w.begin)).collect();
    let logits = model.forward_batch(&asks)?; // (end − scored_from + 1, v) each; the last row unused
    Ok(ws
        .iter()
        .zip(&logits)
        .map(|(w, l)| {
            let nll: f64 = (w.scored_from..w.end)
                .zip(l.chunks(v))
                .map(|(p, row)| tuneguard_model::ops::log_sum_exp(row) - row[tokens[p] as usize] as f64)
                .sum();
            (nll, (w.end - w.scored_from) as u64)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(begin: usize, end: usize, scored_from: usize) -> Window {
        Window { begin, end, scored_from }
    }

    #[test]
    fn windows_score_every_token_once() -> Result<()> {
        // The guide's loop by hand: len 10, window 4, stride 2.
        assert_eq!(windows(10, 4, 2)?, [w(0, 4, 1), w(2, 6, 4), w(4, 8, 6), w(6, 10, 8)]);
        // stride = window: each window's first token has no context.
        assert_eq!(windows(9, 4, 4)?, [w(0, 4, 1), w(4, 8, 5)]);
        assert_eq!(windows(3, 8, 4)?, [w(0, 3, 1)]);
        for (len, window, stride) in [(100, 16, 5), (37, 8, 8), (64, 64, 1), (5, 2, 1)] {
            let ws = windows(len, window, stride)?;
            let scored: Vec<usize> = ws.iter().flat_map(|w| w.scored_from..w.end).collect();
            let want: Vec<usize> = (1..len).filter(|p| stride < window || p % window != 0).collect();
            assert_eq!(scored, want, "len {len} window {window} stride {stride}");
            assert!(ws.iter().all(|w| w.end - w.begin <= window && w.scored_from > w.begin));
            assert!(ws.iter().all(|w| w.scored_from - w.begin >= (window - stride).min(w.scored_from)));
        }
        for (window, stride, flag) in [(1, 1, "--window"), (4, 0, "--stride"), (4, 5, "--stride")] {
            let e = windows(10, window, stride).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.starts_with(flag), "{e}");
        }
        Ok(())
    }
}
