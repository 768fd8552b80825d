//! The optimizer-step loop: batches in a seeded order, the step, evaluations, the guards (the
//! loss watchdog, early stopping, the overfitting alarm: [`tuneguard_train::guards`]) after each
//! step and each evaluation, and a checkpoint at each evaluation. Everything random is derived
//! from (seed, step, epoch), so the loop state below is all a resume needs.
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use serde::{Deserialize, Serialize};
use tuneguard_data::tokenize::TokenizedExample;
use tuneguard_model::llama::Llama;

use crate::forgetting::{general_text, measure_general};
use crate::recipe::Recipe;
use crate::rows::TrainRow;
use crate::types::{Alarm, EvalRecord, Progress, Result, RunError, StepMetrics};
use tuneguard_data::splitmix64;
use tuneguard_eval::general::GeneralSet;
use tuneguard_model::tokenizer::TextTokenizer;
use tuneguard_records::{LineKind, METRICS_FILE};
use tuneguard_train::anchor::add_anchor_penalty;
use tuneguard_train::distill::Distill;
use tuneguard_train::eval::evaluate;
use tuneguard_train::guards::early_stopping::EarlyStopping;
use tuneguard_train::guards::forgetting::ForgettingAlarm;
use tuneguard_train::guards::overfitting::OverfitAlarm;
use tuneguard_train::guards::watchdog::LossWatchdog;
use tuneguard_train::guards::{
    observe_all, EvalObservation, GeneralObservation, Guard, Observation, Verdict, Verdicts,
};
use tuneguard_train::linear_grad::Dropout;
use tuneguard_train::optim::{clip_full_grad_norm, clip_grad_norm, AdamW};
use tuneguard_train::regularize::{add_l1_full, add_l1_lora, Neftune};
use tuneguard_train::schedule::lr_at;
use tuneguard_train::step::{
    count_targets, loss_and_full_grads_with, loss_and_grads_with, FullGrads, Grads, Sequence, StepOptions,
};

use crate::prevention::Prevention;

/// The loop's state after a step: saved in each checkpoint's `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoopState {
    pub step: u64,
    pub total_steps: u64,
    /// Epochs started, and the rows of the current epoch not yet used (taken from the back).
    pub epoch: u64,
    pub order: Vec<usize>,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// Exponential moving average of the training loss before bias correction, and its count.
    pub ema: f64,
    pub ema_steps: u64,
    pub tokens_total: usize,
    pub train_seconds: f64,
    /// Tracks the best evaluation (early stopping's patience applies only when it is enabled).
    pub tracker: EarlyStopping,
    pub alarm: OverfitAlarm,
    pub alarms: Vec<Alarm>,
    pub stop_reason: Option<String>,
    /// Length of `metrics.jsonl` when the checkpoint was taken (a resume truncates it there).
    pub metrics_bytes: u64,
    pub optimizer_step: u64,
    /// sha256 of the tokenized data (a resume refuses different data).
    pub data_fingerprint: String,
    /// Validation metrics of the model before training.
    pub base_eval: Option<tuneguard_train::eval::EvalMetrics>,
    /// [`Recipe::training_fingerprint`] of the run (a resume refuses an edited recipe).
    #[serde(default)]
    pub recipe_fingerprint: String,
    /// The forgetting guard, and each general set's value with the base model.
    #[serde(default)]
    pub forgetting: ForgettingAlarm,
    #[serde(default)]
    pub general_base: Vec<f64>,
    /// Each general set's largest rise so far and its step.
    #[serde(default)]
    pub general_worst: Vec<(f64, u64)>,
    /// `[replay]`: replay epochs started, the rows of the current one not yet used (taken from
    /// the back), the fraction of a row owed to the next step, and rows used so far.
    #[serde(default)]
    pub replay_epoch: u64,
    #[serde(default)]
    pub replay_order: Vec<usize>,
    #[serde(default)]
    pub replay_owed: f64,
    #[serde(default)]
    pub replay_used: usize,
}

impl LoopState {
    pub fn new(
        total_steps: u64,
        tracker: EarlyStopping,
        alarm: OverfitAlarm,
        data_fingerprint: String,
        recipe_fingerprint: String,
    ) -> Self {
        LoopState {
            step: 0,
            total_steps,
            epoch: 0,
            order: Vec::new(),
            first_loss: None,
            last_loss: None,
            ema: 0.0,
            ema_steps: 0,
            tokens_total: 0,
            train_seconds: 0.0,
            tracker,
            alarm,
            alarms: Vec::new(),
            stop_reason: None,
            metrics_bytes: 0,
            optimizer_step: 0,
            data_fingerprint,
            base_eval: None,
            recipe_fingerprint,
            forgetting: ForgettingAlarm::default(),
            general_base: Vec::new(),
            general_worst: Vec::new(),
            replay_epoch: 0,
            replay_order: Vec::new(),
            replay_owed: 0.0,
            replay_used: 0,
        }
    }

    pub fn smoothed_loss(&self, beta: f64) -> Option<f64> {
        (self.ema_steps > 0).then(|| self.ema / (1.0 - beta.powi(self.ema_steps as i32)))
    }
}

/// What the loop needs besides its state.
pub struct LoopCtx<'a> {
    pub config: &'a crate::RunConfig,
    /// `config.recipe`.
    pub recipe: &'a Recipe,
    pub out: &'a Path,
    pub train: &'a [TrainRow],
    pub val: &'a [TokenizedExample],
    pub per_step: usize,
    pub eval_every: u64,
    /// This invocation, for the summary.
    pub record: &'a crate::recipe::RunRecord,
    /// Setup warnings already logged, for the summary.
    pub warnings: &'a [String],
    /// The forgetting guard's general-domain sets (`[forgetting]`), and the tokenizer they need.
    pub general: &'a [GeneralSet],
    pub tokenizer: &'a TextTokenizer,
    /// Forgetting prevention: replay rows, distillation, EWC, L2-SP.
    pub prevention: &'a Prevention,
}

/// Rows for the next step: a fresh seeded shuffle per epoch, consumed in order across steps.
fn next_rows(st: &mut LoopState, n_rows: usize, per_step: usize, seed: u64) -> Vec<usize> {
    let mut picked = Vec::with_capacity(per_step);
    while picked.len() < per_step {
        if st.order.is_empty() {
            st.order = (0..n_rows).collect();
            st.order.shuffle(&mut ChaCha12Rng::seed_from_u64(seed.wrapping_add(1 + st.epoch)));
            st.order.reverse(); // popped from the back, so consumed in shuffled order
            st.epoch += 1;
        }
        picked.extend(st.order.pop());
    }
    picked
}

/// Replay rows for a step of `task_rows` task rows: rows·ratio/(1 − ratio) of them, the fraction
/// carried over, in a seeded shuffle of their own per replay epoch.
fn next_replay_rows(st: &mut LoopState, p: &Prevention, task_rows: usize, seed: u64) -> Vec<usize> {
    if p.replay.is_empty() {
        return Vec::new();
    }
    st.replay_owed += task_rows as f64 * p.replay_ratio / (1.0 - p.replay_ratio);
    let n = st.replay_owed.floor();
    st.replay_owed -= n;
    let mut picked = Vec::with_capacity(n as usize);
    while picked.len() < n as usize {
        if st.replay_order.is_empty() {
            st.replay_order = (0..p.replay.len()).collect();
            let s = splitmix64(seed ^ 0x5245_504C_4159).wrapping_add(1 + st.replay_epoch);
            st.replay_order.shuffle(&mut ChaCha12Rng::seed_from_u64(s));
            st.replay_order.reverse();
            st.replay_epoch += 1;
        }
        picked.extend(st.replay_order.pop());
    }
    st.replay_used += picked.len();
    picked
}

/// What one optimizer step reports.
struct StepOut {
    loss: f64,
    grad_norm: f64,
    l1: f64,
    distill: f64,
    ewc: f64,
    l2sp: f64,
}

/// One optimizer step.
fn optimizer_step(model: &mut Llama, ctx: &LoopCtx, seqs: &[Sequence], step: u64, opt: &mut AdamW) -> Result<StepOut> {
    let (recipe, p) = (ctx.recipe, ctx.prevention);
    let (t, o) = (&recipe.train, &recipe.optim);
    let targets = count_targets(seqs, p.distill_on());
    let n_norm = targets.ce;
    let distill =
        p.distill.map(|(lambda, temperature, on)| Distill { lambda, temperature, on, n_norm: targets.distilled });
    let mut loss = 0.0;
    let seed_of = |micro: usize| splitmix64(t.seed ^ (step << 16) ^ micro as u64);
    let opts = |micro: usize| StepOptions {
        dropout: (recipe.lora.dropout > 0.0).then(|| Dropout { p: recipe.lora.dropout, seed: seed_of(micro) }),
        neftune: (t.neftune_noise_alpha > 0.0)
            .then(|| Neftune { alpha: t.neftune_noise_alpha, seed: splitmix64(seed_of(micro) ^ 0x4E45_4654) }),
        distill,
    };
    if recipe.is_full() {
        let mut grads = FullGrads::zeros(model);
        for (i, micro) in seqs.chunks(t.batch_size).enumerate() {
            loss += loss_and_full_grads_with(model, micro, n_norm, &opts(i), &mut grads)?;
        }
        let l1 = if o.l1 > 0.0 { add_l1_full(model, &mut grads, o.l1) } else { 0.0 };
        let grad_norm = clip_full_grad_norm(&mut grads, o.max_grad_norm as f64);
        opt.update_full(model, &mut grads);
        return Ok(StepOut { loss, grad_norm, l1, distill: 0.0, ewc: 0.0, l2sp: 0.0 });
    }
    let mut grads: Grads = Vec::new();
    let mut kd = 0.0;
    for (i, micro) in seqs.chunks(t.batch_size).enumerate() {
        let l = loss_and_grads_with(model, micro, n_norm, &opts(i), &mut grads)?;
        loss += l.ce;
        kd += l.distill;
    }
    let l1 = if o.l1 > 0.0 { add_l1_lora(model, &mut grads, o.l1) } else { 0.0 };
    let ewc = p.ewc.as_ref().map_or(0.0, |(lambda, f)| add_anchor_penalty(model, &mut grads, *lambda, Some(f)));
    let l2sp = p.l2sp.map_or(0.0, |lambda| add_anchor_penalty(model, &mut grads, lambda, None));
    let norm = if o.max_grad_norm > 0.0 {
        clip_grad_norm(&mut grads, o.max_grad_norm as f64)
    } else {
        tuneguard_train::optim::grad_norm(&grads)
    };
    opt.update(model, &grads)?;
    Ok(StepOut { loss, grad_norm: norm, l1, distill: kd, ewc, l2sp })
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |err| RunError::Io { path: path.to_path_buf(), err }
}

fn append_line(file: &mut std::fs::File, path: &Path, value: &impl Serialize) -> Result<()> {
    let line = serde_json::to_string(value).unwrap_or_default();
    writeln!(file, "{line}").and_then(|_| file.flush()).map_err(io(path))
}

/// Runs steps until the planned total or an early stop; returns the final state.
pub fn train_loop(
    ctx: &LoopCtx,
    model: &mut Llama,
    opt: &mut AdamW,
    mut st: LoopState,
    progress: &mut dyn Progress,
) -> Result<LoopState> {
    let (recipe, t, o) = (ctx.recipe, &ctx.recipe.train, &ctx.recipe.optim);
    let metrics_path = ctx.out.join(METRICS_FILE);
    let mut metrics =
        std::fs::OpenOptions::new().append(true).create(true).open(&metrics_path).map_err(io(&metrics_path))?;
    while st.step < st.total_steps && st.stop_reason.is_none() {
        let t0 = Instant::now();
        let picked = next_rows(&mut st, ctx.train.len(), ctx.per_step, t.seed);
        let replayed = next_replay_rows(&mut st, ctx.prevention, picked.len(), t.seed);
        let seqs: Vec<Sequence> = picked
            .iter()
            .map(|&i| ctx.train[i].as_sequence())
            .chain(replayed.iter().map(|&i| ctx.prevention.replay[i].as_sequence()))
            .collect();
        let lr = lr_at(o.lr, recipe.schedule(), o.warmup_steps, st.total_steps, st.step);
        opt.config.lr = lr;
        let out = optimizer_step(model, ctx, &seqs, st.step, opt)?;
        let (loss, grad_norm, l1) = (out.loss, out.grad_norm, out.l1);
        let p = ctx.prevention;
        st.step += 1;
        let tokens: usize = seqs.iter().map(|s| s.input_ids.len()).sum();
        st.tokens_total += tokens;
        st.train_seconds += t0.elapsed().as_secs_f64();
        let m = StepMetrics {
            kind: LineKind::Train,
            step: st.step,
            total_steps: st.total_steps,
            epoch: st.epoch,
            loss,
            lr,
            grad_norm,
            l1_penalty: (o.l1 > 0.0).then_some(l1),
            distill_loss: p.distill.is_some().then_some(out.distill),
            ewc_penalty: p.ewc.is_some().then_some(out.ewc),
            l2sp_penalty: p.l2sp.is_some().then_some(out.l2sp),
            replay_rows: (!p.replay.is_empty()).then_some(replayed.len()),
            tokens,
            tokens_per_s: tokens as f64 / t0.elapsed().as_secs_f64(),
        };
        append_line(&mut metrics, &metrics_path, &m)?;
        progress.step(&m);
        let first = *st.first_loss.get_or_insert(loss);
        st.last_loss = Some(loss);
        st.ema = t.loss_ema * st.ema + (1.0 - t.loss_ema) * loss;
        st.ema_steps += 1;
        let obs = Observation {
            step: st.step,
            train_loss: loss,
            first_train_loss: first,
            smoothed_train_loss: st.smoothed_loss(t.loss_ema),
            eval: None,
            general: None,
        };
        let verdicts = observe_all(&mut guards(&mut st, &mut watchdog(ctx)), &obs);
        report_warnings(&mut st, &verdicts, progress);
        end_if_asked(&mut st, &verdicts, progress)?;
        if st.step.is_multiple_of(ctx.eval_every) || st.step == st.total_steps {
            if !ctx.val.is_empty() {
                evaluation(ctx, model, &mut st, obs, &mut metrics, &metrics_path, progress)?;
            }
            st.metrics_bytes = metrics.metadata().map_err(io(&metrics_path))?.len();
            st.optimizer_step = opt.step;
            crate::checkpoint_now(ctx, model, opt, &st)?;
        }
    }
    Ok(st)
}

/// The loss watchdog (stateless: the first step's loss it compares with is in the observation).
fn watchdog(ctx: &LoopCtx) -> LossWatchdog {
    LossWatchdog { factor: ctx.recipe.train.divergence_factor }
}

/// The guards, in the order they are consulted. Early stopping always runs: without it
/// (`early_stopping.enabled = false`) its patience is unbounded, so it only tracks the best
/// evaluation (see `tracker` in lib.rs).
fn guards<'a>(st: &'a mut LoopState, watchdog: &'a mut LossWatchdog) -> [&'a mut dyn Guard; 4] {
    [watchdog, &mut st.tracker, &mut st.alarm, &mut st.forgetting]
}

/// Logs each warning and lists it among the summary's alarms.
fn report_warnings(st: &mut LoopState, verdicts: &Verdicts, progress: &mut dyn Progress) {
    for (guard, message) in verdicts.warnings() {
        progress.message(&format!("warning: step {}: {message}", st.step));
        st.alarms.push(Alarm { step: st.step, kind: guard.into(), message: message.into() });
    }
}

/// Ends the run if a guard asked: an abort is the run's error; a stop (the first one of the
/// run) is logged and becomes the summary's stop reason.
fn end_if_asked(st: &mut LoopState, verdicts: &Verdicts, progress: &mut dyn Progress) -> Result<()> {
    match verdicts.end() {
        Some((guard, Verdict::Abort(message))) => {
            Err(RunError::Aborted { step: st.step, guard, message: message.clone() })
        }
        Some((guard, Verdict::Stop(reason))) if st.stop_reason.is_none() => {
            progress.message(&format!("{guard} at step {}: {reason}", st.step));
            st.stop_reason = Some(format!("{guard}: {reason}"));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Evaluates, shows the evaluation to the guards, and logs it.
fn evaluation(
    ctx: &LoopCtx,
    model: &Llama,
    st: &mut LoopState,
    step_obs: Observation,
    metrics: &mut std::fs::File,
    metrics_path: &Path,
    progress: &mut dyn Progress,
) -> Result<()> {
    let m = evaluate(model, ctx.val)?;
    let general = measure_general(ctx, model, &st.general_base)?;
    if let Some(g) = &general {
        st.general_worst.resize(g.values.len(), (f64::NEG_INFINITY, 0));
        for (i, set) in ctx.general.iter().enumerate() {
            let rise = g.fields.get(&format!("general_{}_rise", set.name)).copied().unwrap_or(0.0);
            if rise > st.general_worst[i].0 {
                st.general_worst[i] = (rise, st.step);
            }
        }
    }
    let metric = ctx.recipe.early_stopping.metric;
    let mut rec = EvalRecord::new(st.step, &m, step_obs.smoothed_train_loss);
    let obs = Observation {
        eval: Some(EvalObservation { metrics: &m, metric }),
        general: general.as_ref().map(|g| GeneralObservation { rise: g.rise, what: &g.what }),
        ..step_obs
    };
    let verdicts = observe_all(&mut guards(st, &mut watchdog(ctx)), &obs);
    rec.is_best = st.tracker.best().is_some_and(|(s, _)| s == st.step);
    report_warnings(st, &verdicts, progress);
    rec.overfitting_alarm = verdicts.warnings().any(|(guard, _)| guard == OverfitAlarm::NAME);
    let no_fields = std::collections::BTreeMap::new();
    let fields = general.as_ref().map_or(&no_fields, |g| &g.fields);
    append_line(metrics, metrics_path, &tuneguard_records::EvalLine { record: &rec, general: fields })?;
    progress.eval(&rec);
    if let Some(g) = &general {
        progress.message(&format!("step {}: general {}", st.step, general_text(ctx, g)));
    }
    end_if_asked(st, &verdicts, progress)
}
