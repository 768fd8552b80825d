//! Overfitting alarm: the validation metric gets worse while the (smoothed) training loss gets
//! better, for `k` evaluations in a row — the classic widening train/validation gap
//! (Goodfellow et al. 2016, "Deep Learning", §7.8). It does not stop the run (early stopping
//! does); it says so in the log and the summary.
use serde::{Deserialize, Serialize};

use super::{Guard, Observation, Verdict};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverfitAlarm {
    /// Evaluations in a row needed (0 = off).
    pub k: usize,
    pub minimize: bool,
    last: Option<(f64, f64)>,
    streak: usize,
}

impl OverfitAlarm {
    pub fn new(k: usize, minimize: bool) -> Self {
        OverfitAlarm { k, minimize, last: None, streak: 0 }
    }

    /// Records an evaluation; returns true when the alarm fires (once per streak, at its k-th
    /// evaluation).
    pub fn update(&mut self, val_metric: f64, train_loss: f64) -> bool {
        let worse_val = |prev: f64| if self.minimize { val_metric > prev } else { val_metric < prev };
        let diverging = matches!(self.last, Some((pv, pt)) if worse_val(pv) && train_loss < pt);
        self.last = Some((val_metric, train_loss));
        self.streak = if diverging { self.streak + 1 } else { 0 };
        self.k > 0 && self.streak == self.k
    }
}

impl OverfitAlarm {
    pub const NAME: &'static str = "overfitting";
}

/// Watches each evaluation's tracked metric against the smoothed training loss
/// ([`OverfitAlarm::update`]; not updated while there is no smoothed loss); a
/// [`Verdict::Warn`] when the alarm fires.
impl Guard for OverfitAlarm {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn observe(&mut self, obs: &Observation) -> Verdict {
        let (Some(eval), Some(train_loss)) = (&obs.eval, obs.smoothed_train_loss) else { return Verdict::Continue };
        let value = eval.value();
        if !self.update(value, train_loss) {
            return Verdict::Continue;
        }
        Verdict::Warn(format!(
            "overfitting: {} worsened while the training loss improved for {} evaluations in a row \
             (now {value:.4}, smoothed training loss {train_loss:.4})",
            eval.metric, self.k
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds (val, train) pairs; returns the 1-based evaluations at which the alarm fired.
    fn fired(k: usize, minimize: bool, evals: &[(f64, f64)]) -> Vec<usize> {
        let mut a = OverfitAlarm::new(k, minimize);
        evals.iter().enumerate().filter(|(_, &(v, t))| a.update(v, t)).map(|(i, _)| i + 1).collect()
    }

    /// (name, k, minimize, (val, train) per evaluation, evaluations that fire)
    type Case<'a> = (&'a str, usize, bool, &'a [(f64, f64)], &'a [usize]);

    #[test]
    fn table() {
        let rising = [(2.0, 2.0), (1.8, 1.8), (1.9, 1.6), (2.0, 1.4), (2.1, 1.2), (2.2, 1.0)];
        let cases: &[Case] = &[
            ("val rises twice while train falls", 2, true, &rising, &[4]),
            ("k = 1 fires at the first divergence", 1, true, &rising, &[3]),
            ("k = 3", 3, true, &rising, &[5]),
            ("off", 0, true, &rising, &[]),
            ("both improve: no alarm", 2, true, &[(2.0, 2.0), (1.9, 1.9), (1.8, 1.8), (1.7, 1.7)], &[]),
            ("both worsen: not overfitting", 2, true, &[(1.0, 1.0), (1.1, 1.1), (1.2, 1.2)], &[]),
            (
                "a recovery resets the streak",
                2,
                true,
                &[(2.0, 2.0), (2.1, 1.9), (2.0, 1.8), (2.1, 1.7), (2.2, 1.6)],
                &[5],
            ),
            ("maximize: accuracy falls while train falls", 2, false, &[(0.5, 2.0), (0.4, 1.9), (0.3, 1.8)], &[3]),
            ("fires again after a new streak", 1, true, &[(1.0, 1.0), (1.1, 0.9), (1.0, 0.8), (1.1, 0.7)], &[2, 4]),
        ];
        for (name, k, minimize, evals, want) in cases {
            assert_eq!(fired(*k, *minimize, evals), *want, "{name}");
        }
    }
}
