//! Early stopping on a validation metric (Prechelt 1998, "Early Stopping — But When?"), with the
//! semantics of Keras' `EarlyStopping` / transformers' `EarlyStoppingCallback`: an evaluation
//! counts as an improvement only when it beats the best value so far by more than `min_delta`;
//! after `patience` evaluations in a row without one, training stops. The best step is kept so
//! the best checkpoint (not the last) can be restored.

use serde::{Deserialize, Serialize};

use super::{Guard, Observation, Verdict};

/// Whether smaller (loss, perplexity) or larger (accuracy) values are better: the recipe's
/// `early_stopping.direction`, one enum for the recipe, the records and this guard.
pub use tuneguard_records::Direction;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingConfig {
    #[serde(deserialize_with = "direction_of_any_checkpoint")]
    pub direction: Direction,
    /// Evaluations without improvement before stopping (≥ 1).
    pub patience: usize,
    /// Smallest change that counts as an improvement (≥ 0, in the metric's unit).
    pub min_delta: f64,
}

/// Reads `minimize`/`maximize`, and `Minimize`/`Maximize` as checkpoints (`state.json`) wrote
/// them while this guard had its own copy of [`Direction`], so those runs still resume.
fn direction_of_any_checkpoint<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Direction, D::Error> {
    let name = String::deserialize(d)?;
    match name.as_str() {
        "Minimize" => Ok(Direction::Minimize),
        "Maximize" => Ok(Direction::Maximize),
        _ => Direction::deserialize(serde::de::IntoDeserializer::into_deserializer(name.as_str())),
    }
}

/// What to do after an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Continue,
    Stop { reason: String },
}

/// The state is serializable so a resumed run continues with the same patience count.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub config: EarlyStoppingConfig,
    best: Option<(u64, f64)>,
    bad_evals: usize,
}

impl EarlyStopping {
    pub fn new(config: EarlyStoppingConfig) -> Self {
        EarlyStopping { config, best: None, bad_evals: 0 }
    }

    /// (step, value) of the best evaluation so far.
    pub fn best(&self) -> Option<(u64, f64)> {
        self.best
    }

    /// Records the metric `value` measured at optimizer step `step`. A NaN never improves.
    pub fn update(&mut self, step: u64, value: f64) -> Decision {
        let improved = match self.best {
            None => !value.is_nan(),
            Some((_, best)) => match self.config.direction {
                Direction::Minimize => value < best - self.config.min_delta,
                Direction::Maximize => value > best + self.config.min_delta,
            },
        };
        if improved {
            self.best = Some((step, value));
            self.bad_evals = 0;
            return Decision::Continue;
        }
        self.bad_evals += 1;
        if self.bad_evals >= self.config.patience.max(1) {
            let (best_step, best) = self.best.unwrap_or((step, f64::NAN));
            return Decision::Stop {
                reason: format!(
                    "no improvement larger than {} for {} evaluations; best {best:.4} at step {best_step}",
                    self.config.min_delta, self.bad_evals
                ),
            };
        }
        Decision::Continue
    }
}

impl EarlyStopping {
    pub const NAME: &'static str = "early stopping";
}

/// Watches the tracked metric of each evaluation ([`EarlyStopping::update`]); a [`Verdict::Stop`]
/// once patience is used up.
impl Guard for EarlyStopping {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn observe(&mut self, obs: &Observation) -> Verdict {
        let Some(eval) = &obs.eval else { return Verdict::Continue };
        match self.update(obs.step, eval.value()) {
            Decision::Continue => Verdict::Continue,
            Decision::Stop { reason } => Verdict::Stop(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_of_old_and_new_checkpoints_read_the_same() -> serde_json::Result<()> {
        let config = |d: &str| format!(r#"{{"direction":"{d}","patience":2,"min_delta":0.0}}"#);
        let max = EarlyStoppingConfig { direction: Direction::Maximize, patience: 2, min_delta: 0.0 };
        assert_eq!(serde_json::from_str::<EarlyStoppingConfig>(&config("Maximize"))?, max);
        assert_eq!(serde_json::from_str::<EarlyStoppingConfig>(&config("maximize"))?, max);
        assert_eq!(serde_json::to_string(&max)?, config("maximize"));
        let e = serde_json::from_str::<EarlyStoppingConfig>(&config("up")).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("`minimize` or `maximize`")));
        Ok(())
    }

    /// Feeds `values` (one evaluation per step 1, 2, ...) and returns (stop step, best step).
    fn run(direction: Direction, patience: usize, min_delta: f64, values: &[f64]) -> (Option<u64>, Option<u64>) {
        let mut es = EarlyStopping::new(EarlyStoppingConfig { direction, patience, min_delta });
        for (i, &v) in values.iter().enumerate() {
            let step = i as u64 + 1;
            if let Decision::Stop { .. } = es.update(step, v) {
                return (Some(step), es.best().map(|b| b.0));
            }
        }
        (None, es.best().map(|b| b.0))
    }

    /// (direction, patience, min_delta, values, expected stop step, expected best step)
    type Case = (Direction, usize, f64, &'static [f64], Option<u64>, Option<u64>);

    #[test]
    fn stop_and_best_steps() {
        use Direction::*;
        let cases: &[Case] = &[
            (Minimize, 2, 0.0, &[3.0, 2.0, 1.0, 1.5, 1.6, 0.5], Some(5), Some(3)),
            (Minimize, 3, 0.0, &[3.0, 2.0, 1.0, 1.5, 1.6, 0.5], None, Some(6)),
            (Minimize, 1, 0.0, &[1.0, 1.0], Some(2), Some(1)), // equal is no improvement
            (Minimize, 2, 0.1, &[1.0, 0.95, 0.92, 0.5], Some(3), Some(1)), // too small to count
            (Minimize, 2, 0.1, &[1.0, 0.85, 0.80, 0.5], None, Some(4)),
            (Maximize, 2, 0.0, &[0.5, 0.6, 0.55, 0.58], Some(4), Some(2)),
            (Maximize, 2, 0.05, &[0.5, 0.54, 0.53, 0.7], Some(3), Some(1)), // 0.54 and 0.53 are within min_delta of 0.5
            (Maximize, 2, 0.05, &[0.5, 0.54, 0.56, 0.7], None, Some(4)),    // 0.56 beats 0.5 + 0.05
            (Minimize, 2, 0.0, &[f64::NAN, 1.0, f64::NAN, f64::NAN], Some(4), Some(2)),
            (Minimize, 5, 0.0, &[], None, None),
        ];
        for (i, &(dir, patience, delta, values, stop, best)) in cases.iter().enumerate() {
            assert_eq!(run(dir, patience, delta, values), (stop, best), "case {i}: {values:?}");
        }
    }
}
