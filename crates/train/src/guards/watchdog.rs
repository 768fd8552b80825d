//! Loss watchdog: a NaN or infinite loss, or one above `factor` × the first step's loss, means
//! the run has diverged (too high a learning rate, bad data); it stops with a clear message
//! rather than training on garbage.
use super::{Guard, Observation, Verdict};

/// The watchdog as a [`Guard`]: checks each step's own observation (not the evaluation's, which
/// repeats the step) and aborts the run on a diverged loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWatchdog {
    /// See [`check`].
    pub factor: f64,
}

impl LossWatchdog {
    pub const NAME: &'static str = "loss watchdog";
}

impl Guard for LossWatchdog {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn observe(&mut self, obs: &Observation) -> Verdict {
        if obs.eval.is_some() {
            return Verdict::Continue;
        }
        match check(obs.train_loss, obs.first_train_loss, self.factor) {
            None => Verdict::Continue,
            Some(why) => Verdict::Abort(format!(
                "training diverged at step {}: loss {} ({why}); lower optim.lr or check the data",
                obs.step, obs.train_loss
            )),
        }
    }
}

/// Returns why the run must stop, or None. `factor` ≤ 0 turns the ratio check off.
pub fn check(loss: f64, first_loss: f64, factor: f64) -> Option<String> {
    if !loss.is_finite() {
        return Some("not finite".into());
    }
    if factor > 0.0 && first_loss.is_finite() && loss > factor * first_loss {
        return Some(format!("more than {factor} × the first step's {first_loss:.4}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn table() {
        let cases = [
            (f64::NAN, 2.0, 3.0, true),
            (f64::INFINITY, 2.0, 3.0, true),
            (6.1, 2.0, 3.0, true),
            (6.0, 2.0, 3.0, false),
            (100.0, 2.0, 0.0, false),
            (f64::NAN, 2.0, 0.0, true),
            (1.0, 2.0, 3.0, false),
        ];
        for (loss, first, factor, stops) in cases {
            assert_eq!(check(loss, first, factor).is_some(), stops, "{loss} {first} {factor}");
        }
    }
}
