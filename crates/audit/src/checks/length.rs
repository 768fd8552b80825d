//! Length outliers by the modified z-score (B. Iglewicz & D. Hoaglin, "How to Detect and Handle
//! Outliers", ASQC 1993): M = 0.6745 (x − median) / MAD, with MAD the median absolute deviation;
//! |M| > 3.5 is their suggested cut. x is the natural log of the length (tokens when a tokenizer
//! is given, else characters): lengths are right-skewed and roughly log-normal, and the score
//! assumes a symmetric distribution. When more than half the values are equal (MAD = 0) the mean
//! absolute deviation is used instead, M = (x − median) / (1.253314 · MeanAD), as IBM SPSS does.

/// Fewer rows than this give no length outliers: the median and MAD of a handful of rows say
/// little about what is unusual.
pub const MIN_ROWS: usize = 10;

/// Median and spread of a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RobustStats {
    pub median: f64,
    /// Median absolute deviation from the median.
    pub mad: f64,
    /// Divisor of the score: MAD / 0.6745, or 1.253314 · MeanAD when MAD is 0.
    pub scale: f64,
}

impl RobustStats {
    /// Median, MAD and scale of `values` (reordered in place); `None` when empty, or when every
    /// value is the same (no spread, so nothing is an outlier).
    pub fn of(values: &mut [f64]) -> Option<RobustStats> {
        let med = median(values)?;
        let mut dev: Vec<f64> = values.iter().map(|v| (v - med).abs()).collect();
        let mad = median(&mut dev)?;
        let scale = if mad > 0.0 {
            mad / 0.6745
        } else {
            let mean_ad = dev.iter().sum::<f64>() / dev.len() as f64;
            1.253314 * mean_ad
        };
        (scale > 0.0).then_some(RobustStats { median: med, mad, scale })
    }

    /// The modified z-score of `x`.
    pub fn z(&self, x: f64) -> f64 {
        (x - self.median) / self.scale
    }
}

/// Median (mean of the two middle values for an even count); reorders `values`.
pub fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (_, &mut hi, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return Some(hi);
    }
    let lo = values[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((lo + hi) / 2.0)
}

/// The value scored for a length: ln(max(len, 1)).
pub fn log_len(len: usize) -> f64 {
    (len.max(1) as f64).ln()
}

/// Stats of the log lengths, `None` below [`MIN_ROWS`] rows or without spread.
pub fn length_stats(lengths: &[u32]) -> Option<RobustStats> {
    if lengths.len() < MIN_ROWS {
        return None;
    }
    let mut logs: Vec<f64> = lengths.iter().map(|&l| log_len(l as usize)).collect();
    RobustStats::of(&mut logs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn median_table() {
        let cases: &[(&[f64], Option<f64>)] =
            &[(&[], None), (&[7.0], Some(7.0)), (&[3.0, 1.0, 2.0], Some(2.0)), (&[4.0, 1.0, 3.0, 2.0], Some(2.5))];
        for (v, want) in cases {
            assert_eq!(median(&mut v.to_vec()), *want, "{v:?}");
        }
    }

    #[test]
    fn robust_stats_by_hand() {
        // [1,2,3,4,100]: median 3; |dev| = [2,1,0,1,97] → MAD 1; z(100) = 0.6745·97 = 65.4265.
        let s = RobustStats::of(&mut [1.0, 2.0, 3.0, 4.0, 100.0]).expect("spread");
        assert_eq!((s.median, s.mad), (3.0, 1.0));
        assert!(close(s.z(100.0), 65.4265) && close(s.z(1.0), -1.349), "{s:?}");
        // [1,2,3,4]: median 2.5; |dev| = [1.5,.5,.5,1.5] → MAD 1.
        let s = RobustStats::of(&mut [4.0, 1.0, 3.0, 2.0]).expect("spread");
        assert_eq!((s.median, s.mad), (2.5, 1.0));
        // MAD 0: [5,5,5,5,9] → MeanAD 0.8, z(9) = 4 / (1.253314·0.8) = 3.98942.
        let s = RobustStats::of(&mut [5.0, 5.0, 9.0, 5.0, 5.0]).expect("spread");
        assert_eq!(s.mad, 0.0);
        assert!(close(s.z(9.0), 3.98942), "{s:?}");
        assert_eq!(RobustStats::of(&mut [2.0; 6]), None);
    }

    #[test]
    fn length_stats_uses_logs_and_needs_rows() {
        assert_eq!(length_stats(&[10; 5]), None);
        // Lengths e^k for k = 0..=9, rounded: logs ≈ 0..9, median (4.007 + 4.997) / 2 ≈ 4.50.
        let lens: Vec<u32> = (0..10).map(|k| (k as f64).exp().round() as u32).collect();
        let s = length_stats(&lens).expect("spread");
        assert!((s.median - 4.5).abs() < 0.01, "{s:?}");
        assert!(close(log_len(0), 0.0));
    }
}
