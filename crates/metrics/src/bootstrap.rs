//! Seeded percentile-bootstrap confidence intervals (Efron & Tibshirani 1993, "An Introduction
//! to the Bootstrap", ch. 13): the statistic is recomputed on `resamples` resamples of the
//! items drawn with replacement, and the interval is the (1 − level)/2 and (1 + level)/2
//! quantiles of those values, interpolated linearly between order statistics (numpy's default
//! `percentile`, which `scipy.stats.bootstrap(method="percentile")` uses). The same seed gives
//! the same interval. Resamples whose statistic is NaN (e.g. a precision with no positive
//! prediction under `zero_division=nan`) are left out and counted.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::{MetricsError, Result};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Interval {
    /// The statistic on all items.
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
    /// The confidence level, in (0, 1).
    pub level: f64,
    /// Resamples whose statistic was NaN (not in the quantiles).
    pub undefined: usize,
}

/// The bootstrap settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    pub resamples: usize,
    /// In (0, 1), e.g. 0.95.
    pub level: f64,
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap { resamples: 1000, level: 0.95, seed: 0 }
    }
}

impl Bootstrap {
    /// The interval of `statistic` over `n` items; `statistic` gets the item indices of a
    /// sample (each in `0..n`, repeats allowed) and returns its value.
    ///
    /// # Errors
    /// `Empty` when `n` is 0; `OutOfRange` for `level` outside (0, 1) or no resample.
    pub fn interval(&self, n: usize, statistic: impl Fn(&[usize]) -> f64) -> Result<Interval> {
        if n == 0 {
            return Err(MetricsError::Empty);
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(MetricsError::OutOfRange { what: "confidence level", range: "in (0, 1)", value: self.level });
        }
        if self.resamples == 0 {
            return Err(MetricsError::OutOfRange { what: "bootstrap resamples", range: "≥ 1", value: 0.0 });
        }
        let all: Vec<usize> = (0..n).collect();
        let estimate = statistic(&all);
        let mut rng = ChaCha12Rng::seed_from_u64(self.seed);
        let mut sample = vec![0; n];
        let mut values = Vec::with_capacity(self.resamples);
        for _ in 0..self.resamples {
            sample.iter_mut().for_each(|i| *i = rng.random_range(0..n));
            values.push(statistic(&sample));
        }
        let undefined = values.iter().filter(|v| v.is_nan()).count();
        values.retain(|v| !v.is_nan());
        values.sort_by(f64::total_cmp);
        let (low, high) = if values.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            (percentile(&values, (1.0 - self.level) / 2.0), percentile(&values, (1.0 + self.level) / 2.0))
        };
        Ok(Interval { estimate, low, high, level: self.level, undefined })
    }
}

/// The `q` quantile (0–1) of sorted values, linear between order statistics.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(xs: &[f64]) -> impl Fn(&[usize]) -> f64 + '_ {
        move |idx| idx.iter().map(|&i| xs[i]).sum::<f64>() / idx.len() as f64
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        // numpy.percentile([1, 2, 3, 4], [25, 50, 90]) = 1.75, 2.5, 3.7
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!([0.25, 0.5, 0.9].map(|q| percentile(&v, q)), [1.75, 2.5, 3.7]);
    }

    #[test]
    fn intervals_are_seeded_cover_the_estimate_and_narrow_with_more_items() -> Result<()> {
        let small: Vec<f64> = (0..20).map(|i| (i % 2) as f64).collect();
        let large: Vec<f64> = (0..2000).map(|i| (i % 2) as f64).collect();
        let b = Bootstrap { resamples: 500, level: 0.95, seed: 7 };
        let a = b.interval(small.len(), mean(&small))?;
        assert_eq!(a, b.interval(small.len(), mean(&small))?, "same seed, same interval");
        // Another seed draws other resamples (the 20 items' quantiles are multiples of 0.05, so
        // compare continuous values).
        let spread: Vec<f64> = (0..20).map(|i| (i * i) as f64).collect();
        assert_ne!(b.interval(20, mean(&spread))?, Bootstrap { seed: 8, ..b }.interval(20, mean(&spread))?);
        assert_eq!(a.estimate, 0.5);
        assert!(a.low < 0.5 && 0.5 < a.high, "{a:?}");
        let l = b.interval(large.len(), mean(&large))?;
        // The standard error of a mean of 0/1 values at p = 0.5 is 0.5/√n: the 95 % interval
        // is about ±1.96·0.5/√n wide on each side (±0.219 at n = 20, ±0.022 at n = 2000).
        assert!((a.high - a.low - 2.0 * 1.96 * 0.5 / 20f64.sqrt()).abs() < 0.1, "{a:?}");
        assert!((l.high - l.low - 2.0 * 1.96 * 0.5 / 2000f64.sqrt()).abs() < 0.01, "{l:?}");
        Ok(())
    }

    #[test]
    fn undefined_resamples_are_counted_and_bad_settings_refused() -> Result<()> {
        let b = Bootstrap { resamples: 200, level: 0.9, seed: 1 };
        let i = b.interval(3, |idx| if idx.contains(&0) { 1.0 } else { f64::NAN })?;
        // P(item 0 missing from a resample of 3) = (2/3)³ ≈ 0.30
        assert!(i.undefined > 30 && i.undefined < 90, "{i:?}");
        assert_eq!(b.interval(0, |_| 0.0).err(), Some(MetricsError::Empty));
        assert!(Bootstrap { level: 1.0, ..b }.interval(3, |_| 0.0).is_err());
        assert!(Bootstrap { resamples: 0, ..b }.interval(3, |_| 0.0).is_err());
        Ok(())
    }
}
