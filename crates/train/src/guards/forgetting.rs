//! Forgetting alarm: general-domain ability (perplexity of general text, accuracy on a
//! general multiple-choice set) measured with the base model before training and at every
//! evaluation; it fires when the relative rise against the base passes `max_rise` (catastrophic
//! forgetting, McCloskey & Cohen 1989; Kirkpatrick et al. 2017 measure it the same way, as the
//! loss of performance on the old task). A rise is worse-is-positive for both kinds: for a
//! perplexity (lower is better) (now − base) / base, for an accuracy (base − now) / base.
//! It warns once per crossing, or stops the run with `stop`.
use serde::{Deserialize, Serialize};

use super::{Guard, Observation, Verdict};

/// The relative rise of `now` against `base` (positive = worse).
pub fn relative_rise(base: f64, now: f64, higher_is_better: bool) -> f64 {
    let d = if higher_is_better { base - now } else { now - base };
    d / base.abs().max(f64::MIN_POSITIVE)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForgettingAlarm {
    /// The rise that fires the alarm (0.1 = 10 % worse than the base).
    pub max_rise: f64,
    /// Stop the run (keeping the best weights) instead of warning.
    pub stop: bool,
    /// Whether the last evaluation was above `max_rise` (a warning is given on each crossing).
    above: bool,
}

impl ForgettingAlarm {
    pub const NAME: &'static str = "forgetting";

    pub fn new(max_rise: f64, stop: bool) -> Self {
        ForgettingAlarm { max_rise, stop, above: false }
    }
}

/// Watches `obs.general` (the evaluation's largest rise and the set it comes from).
impl Guard for ForgettingAlarm {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn observe(&mut self, obs: &Observation) -> Verdict {
        let Some(g) = &obs.general else { return Verdict::Continue };
        let was_above = self.above;
        self.above = g.rise > self.max_rise;
        if !self.above {
            return Verdict::Continue;
        }
        let message = format!(
            "forgetting: {} is {:.1} % worse than the base model's (above forgetting.max_rise = {:.1} %)",
            g.what,
            100.0 * g.rise,
            100.0 * self.max_rise
        );
        match (self.stop, was_above) {
            (true, _) => Verdict::Stop(message),
            (false, false) => Verdict::Warn(message),
            (false, true) => Verdict::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::GeneralObservation;
    use super::*;

    fn obs(rise: f64) -> GeneralObservation<'static> {
        GeneralObservation { rise, what: "wikitext2 perplexity" }
    }

    fn see(a: &mut ForgettingAlarm, g: Option<GeneralObservation>) -> Verdict {
        let o = Observation {
            step: 1,
            train_loss: 1.0,
            first_train_loss: 1.0,
            smoothed_train_loss: None,
            eval: None,
            general: g,
        };
        a.observe(&o)
    }

    #[test]
    fn rises_by_hand() {
        assert!((relative_rise(20.0, 25.0, false) - 0.25).abs() < 1e-12); // perplexity 20 → 25
        assert!((relative_rise(0.8, 0.6, true) - 0.25).abs() < 1e-12); // accuracy 0.8 → 0.6
        assert!(relative_rise(20.0, 18.0, false) < 0.0);
    }

    #[test]
    fn warns_once_per_crossing_or_stops() {
        let mut a = ForgettingAlarm::new(0.1, false);
        assert_eq!(see(&mut a, None), Verdict::Continue);
        assert_eq!(see(&mut a, Some(obs(0.05))), Verdict::Continue);
        let v = see(&mut a, Some(obs(0.15)));
        assert_eq!(v, Verdict::Warn("forgetting: wikitext2 perplexity is 15.0 % worse than the base model's (above forgetting.max_rise = 10.0 %)".into()));
        assert_eq!(see(&mut a, Some(obs(0.2))), Verdict::Continue); // still above: said already
        assert_eq!(see(&mut a, Some(obs(0.1))), Verdict::Continue); // at the limit is not above
        assert!(matches!(see(&mut a, Some(obs(0.11))), Verdict::Warn(_)));
        let mut s = ForgettingAlarm::new(0.1, true);
        assert!(matches!(see(&mut s, Some(obs(0.3))), Verdict::Stop(m) if m.contains("30.0 %")));
    }
}
