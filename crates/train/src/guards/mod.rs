//! Guards that watch a run: early stopping (stops it), the overfitting alarm (warns), the
//! forgetting alarm (warns or stops) and the loss watchdog (aborts a diverging run).
//!
//! Every guard implements [`Guard`]: the training loop shows each of its guards the same
//! [`Observation`] and acts on their [`Verdict`]s ([`observe_all`]). A new guard (a forgetting
//! alarm, a fairness or drift check) is one more `impl Guard` in the loop's list:
//!
//! - the loop observes every optimizer step once when it is done (`eval: None`) and, on steps
//!   with a validation evaluation, once more after it (`eval: Some`); a guard on the training
//!   loss acts on the first kind, a guard on validation metrics on the second, and every guard
//!   returns [`Verdict::Continue`] for what it does not watch;
//! - [`Verdict::Warn`]: training goes on; the loop logs `warning: step N: MESSAGE` and lists the
//!   message in the summary's alarms under the guard's [`Guard::name`];
//! - [`Verdict::Stop`]: the run ends after this step as a success (`NAME at step N: MESSAGE`
//!   in the log, `NAME: MESSAGE` as the summary's stop reason; the best weights are written);
//! - [`Verdict::Abort`]: the run fails with MESSAGE as its error (the weights are not worth
//!   writing: no adapter, no summary).
//!
//! A guard whose state must survive a resume is serializable and kept in the loop's
//! checkpointed state.
pub mod early_stopping;
pub mod forgetting;
pub mod overfitting;
pub mod watchdog;

use crate::eval::EvalMetrics;
use tuneguard_records::Metric;

/// What the guards see of the run after an optimizer step (and, with `eval`, after an
/// evaluation at that step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation<'a> {
    /// Optimizer steps done (the first step is 1).
    pub step: u64,
    /// This step's training loss.
    pub train_loss: f64,
    /// The first step's training loss (the reference a divergence is measured against).
    pub first_train_loss: f64,
    /// Exponential moving average of the training loss, bias-corrected (None when smoothing
    /// has seen no step).
    pub smoothed_train_loss: Option<f64>,
    /// The evaluation at this step; None on the step's own observation.
    pub eval: Option<EvalObservation<'a>>,
    /// The general-domain measurement at this step's evaluation (the forgetting guard's).
    pub general: Option<GeneralObservation<'a>>,
}

/// The general-domain sets measured at an evaluation, reduced to the largest relative rise
/// against the base model ([`forgetting::relative_rise`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeneralObservation<'a> {
    pub rise: f64,
    /// The set and metric of that rise, e.g. `wikitext2 perplexity`.
    pub what: &'a str,
}

/// A validation evaluation, and the metric the recipe tracks (early stopping's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalObservation<'a> {
    pub metrics: &'a EvalMetrics,
    /// The tracked metric.
    pub metric: Metric,
}

impl EvalObservation<'_> {
    /// The tracked metric's value.
    pub fn value(&self) -> f64 {
        self.metrics.get(self.metric)
    }
}

/// What a guard makes of an observation; the messages are whole sentences for the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Continue,
    /// Go on, and report the message.
    Warn(String),
    /// End the run after this step, keeping what it has learnt.
    Stop(String),
    /// The run has failed: end it with the message as its error.
    Abort(String),
}

/// A check on the run that the training loop consults after each step.
pub trait Guard {
    /// Short name: the kind of its alarms in the summary, the prefix of its stop reasons.
    fn name(&self) -> &'static str;

    /// Records `obs` and says whether the run goes on.
    fn observe(&mut self, obs: &Observation) -> Verdict;
}

/// The verdicts of a list of guards on one observation, each with its guard's name, in list
/// order.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdicts(pub Vec<(&'static str, Verdict)>);

impl Verdicts {
    /// (guard, message) of every warning, in list order.
    pub fn warnings(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.0.iter().filter_map(|(g, v)| match v {
            Verdict::Warn(m) => Some((*g, m.as_str())),
            _ => None,
        })
    }

    /// How the run ends, if a guard asked: the first abort, else the first stop.
    pub fn end(&self) -> Option<(&'static str, &Verdict)> {
        let first = |want: fn(&Verdict) -> bool| self.0.iter().find(|(_, v)| want(v)).map(|(g, v)| (*g, v));
        first(|v| matches!(v, Verdict::Abort(_))).or_else(|| first(|v| matches!(v, Verdict::Stop(_))))
    }
}

/// Shows `obs` to every guard in order and collects their verdicts. Every guard sees every
/// observation, also after an earlier one asked to stop, so that each keeps its state.
pub fn observe_all(guards: &mut [&mut dyn Guard], obs: &Observation) -> Verdicts {
    Verdicts(guards.iter_mut().map(|g| (g.name(), g.observe(obs))).collect())
}

#[cfg(test)]
mod tests {
    use super::early_stopping::{Direction, EarlyStopping, EarlyStoppingConfig};
    use super::overfitting::OverfitAlarm;
    use super::watchdog::LossWatchdog;
    use super::*;

    fn metrics(loss: f64) -> EvalMetrics {
        EvalMetrics { loss, perplexity: loss.exp(), token_accuracy: 0.5, tokens: 10, extra: () }
    }

    /// (step, train loss, val loss per evaluation) through the three guards as the loop runs
    /// them; returns every step's (warnings, end) of both observations.
    fn run(steps: &[(f64, Option<f64>)]) -> Vec<(u64, Vec<String>, Option<String>)> {
        let mut es =
            EarlyStopping::new(EarlyStoppingConfig { direction: Direction::Minimize, patience: 2, min_delta: 0.0 });
        let mut alarm = OverfitAlarm::new(1, true);
        let mut watchdog = LossWatchdog { factor: 3.0 };
        let mut out = Vec::new();
        let (first, mut ema) = (steps[0].0, None::<f64>);
        for (i, &(loss, val)) in steps.iter().enumerate() {
            let step = i as u64 + 1;
            ema = Some(ema.map_or(loss, |e| 0.5 * e + 0.5 * loss));
            let obs = Observation {
                step,
                train_loss: loss,
                first_train_loss: first,
                smoothed_train_loss: ema,
                eval: None,
                general: None,
            };
            let m = val.map(metrics);
            let mut observations = vec![obs];
            if let Some(m) = &m {
                observations
                    .push(Observation { eval: Some(EvalObservation { metrics: m, metric: Metric::ValLoss }), ..obs });
            }
            for obs in observations {
                let v = observe_all(&mut [&mut watchdog, &mut es, &mut alarm], &obs);
                let warns = v.warnings().map(|(g, m)| format!("{g}: {m}")).collect();
                let end = v.end().map(|(g, v)| format!("{g}: {v:?}"));
                out.push((step, warns, end));
            }
        }
        out
    }

    #[test]
    fn the_loop_sees_warnings_stops_and_aborts() {
        let r = run(&[(2.0, None), (1.8, Some(1.5)), (1.6, Some(1.6)), (1.4, Some(1.7)), (7.0, None)]);
        let at = |step: u64| r.iter().filter(|e| e.0 == step).cloned().collect::<Vec<_>>();
        assert!(at(1).iter().chain(&at(2)).all(|e| e.1.is_empty() && e.2.is_none()), "{r:?}");
        // Step 3: the validation loss rises while the training loss falls.
        let s3 = at(3);
        assert_eq!((s3[0].1.len(), s3[1].1.len()), (0, 1), "only the evaluation warns: {s3:?}");
        assert!(s3[1].1[0].starts_with("overfitting: overfitting: val_loss worsened"), "{s3:?}");
        assert_eq!(s3[1].2, None);
        // Step 4: patience 2 is used up; the alarm fires once per streak.
        let s4 = at(4);
        assert!(s4[1].1.is_empty(), "{s4:?}");
        let end = s4[1].2.as_deref().unwrap_or_default();
        assert!(end.starts_with("early stopping: Stop(\"no improvement larger than 0 for 2 evaluations"), "{end}");
        // Step 5: 7.0 > 3 × 2.0.
        let end = at(5)[0].2.clone().unwrap_or_default();
        assert!(end.starts_with("loss watchdog: Abort(\"training diverged at step 5: loss 7 (more than 3"), "{end}");
    }

    #[test]
    fn an_abort_wins_over_an_earlier_stop() {
        let v = Verdicts(vec![
            ("a", Verdict::Warn("w".into())),
            ("b", Verdict::Stop("s".into())),
            ("c", Verdict::Stop("t".into())),
            ("d", Verdict::Abort("x".into())),
        ]);
        assert_eq!(v.end(), Some(("d", &Verdict::Abort("x".into()))));
        assert_eq!(v.warnings().collect::<Vec<_>>(), [("a", "w")]);
        let v = Verdicts(vec![
            ("a", Verdict::Continue),
            ("b", Verdict::Stop("s".into())),
            ("c", Verdict::Stop("t".into())),
        ]);
        assert_eq!(v.end(), Some(("b", &Verdict::Stop("s".into()))));
    }
}
