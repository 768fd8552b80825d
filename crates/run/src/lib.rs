//! A whole fine-tuning run from a [`Recipe`]: load, split (without leakage), augment, tokenize,
//! train with evaluations, early stopping and checkpoints, restore the best weights, and write the
//! run folder (`config.toml`, `rejected.jsonl`, `metrics.jsonl`, `checkpoints/`, `adapter/` or
//! `model/`, `summary.json`, `report.html`). [`resume`] continues a run from its last checkpoint.
//! Both need the folder's [`RunLock`], so two runs never write into one folder.
//!
//! tuneguard-run composes the data path (`tuneguard-data`, `tuneguard-audit`) and the numerical
//! core (`tuneguard-train`); [`recipe`] parses and checks the recipe TOML.
use std::path::Path;

use tuneguard_data::tokenize::ChatTokenizer;
use tuneguard_model::llama::Llama;
use tuneguard_model::LoadedModel;

pub use crate::config::RunConfig;
use crate::recipe::Recipe;
use tuneguard_train::checkpoint;
use tuneguard_train::eval::evaluate;
use tuneguard_train::guards::early_stopping::{Direction, EarlyStopping, EarlyStoppingConfig};
use tuneguard_train::guards::forgetting::ForgettingAlarm;
use tuneguard_train::guards::overfitting::OverfitAlarm;
use tuneguard_train::init::init_lora;
use tuneguard_train::optim::{prepare_full_finetune, trainable_params, trainable_refs, AdamW, AdamWConfig};

pub mod config;
pub mod recipe;

mod finish;
mod forgetting;
mod general_data;
mod preflight;
mod prepare;
mod prevention;
mod record;
mod rows;
mod set_aside;
mod stages;
mod train_loop;
mod types;

use prepare::PrepareCtx;
pub use prepare::{DataSummary, LeakReport, Prepared};
pub use record::model_sha256;
pub use train_loop::LoopState;
/// The lock file in a run folder (see [`RunLock`]).
pub use tuneguard_fs::LOCK_FILE;
pub use types::*;

use set_aside::SetAside;
use train_loop::{train_loop, LoopCtx};

fn io(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |err| RunError::Io { path: path.to_path_buf(), err }
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    tuneguard_fs::write_bytes(path, text.as_bytes(), |p, err| RunError::Io { path: p.to_path_buf(), err })
}

/// Outputs that mark a started run, and files a new run replaces.
const RUN_MARKERS: [&str; 5] = ["summary.json", "metrics.jsonl", "adapter", "model", checkpoint::DIR];
const RUN_FILES: [&str; 5] = ["config.toml", "rejected.jsonl", "report.html", "audit.json", "quarantine.jsonl"];

/// One run's exclusive hold on its folder (`OUT/.lock`, an OS advisory lock that dies with its
/// process): taken before anything in the folder is touched and kept by the caller until it is
/// done with the folder (the CLI also writes `report.html` under it). A second `train`,
/// `--resume` or `--overwrite` into the folder is refused instead of interleaving its files
/// with this run's.
#[derive(Debug)]
pub struct RunLock(tuneguard_fs::DirLock);

/// Takes the run folder `dir` (creating it), without waiting.
///
/// # Errors
/// `Locked` when another run holds it (the folder is left as it is), `Io`.
pub fn lock(dir: &Path) -> Result<RunLock> {
    if dir.exists() && !dir.is_dir() {
        let err = std::io::Error::other("is a file, not a folder; set output.dir to a folder");
        return Err(RunError::Io { path: dir.to_path_buf(), err });
    }
    tuneguard_fs::lock_dir(dir).map(RunLock).map_err(|e| match e {
        tuneguard_fs::LockError::Held { dir, holder, .. } => RunError::Locked { dir, holder },
        tuneguard_fs::LockError::Io { path, err } => RunError::Io { path, err },
    })
}

/// `lock` must hold `out` (a caller's mistake otherwise, reported as an I/O error on `out`).
fn check_lock(lock: &RunLock, out: &Path) -> Result<()> {
    let same = match (lock.0.dir().canonicalize(), out.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Ok(());
    }
    let err = std::io::Error::other(format!("the run's lock is on {}, not on this folder", lock.0.dir().display()));
    Err(RunError::Io { path: out.to_path_buf(), err })
}

/// Runs the recipe from the start; `command_line` is recorded in `config.toml` and
/// `summary.json`.
///
/// # Errors
/// Any [`RunError`]; nothing is left half-written in the run folder's files.
pub fn run(
    config: &RunConfig,
    overwrite: bool,
    lock: &RunLock,
    command_line: &[String],
    progress: &mut dyn Progress,
) -> Result<Summary> {
    let out = &config.recipe.output.dir;
    check_lock(lock, out)?;
    set_aside::recover(out)?;
    // A run has started once metrics.jsonl exists; config.toml and rejected.jsonl alone are left
    // by a run that stopped before training and do not block the next one.
    let started = RUN_MARKERS.iter().any(|m| out.join(m).exists());
    if started && !overwrite {
        return Err(RunError::OutputExists(out.clone()));
    }
    let names: Vec<&'static str> = RUN_MARKERS.iter().chain(&RUN_FILES).copied().collect();
    // An earlier run is set aside, not deleted, until this one starts training.
    let aside = if started {
        SetAside::new(out, &names)?
    } else {
        for m in &names {
            let p = out.join(m);
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
        SetAside::new(out, &[])?
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    execute(config, false, aside, command_line, progress)
}

/// Errors a run would otherwise meet only after the model is loaded or the folder changed: a
/// missing model or data file.
fn check_inputs(config: &RunConfig) -> Result<()> {
    let (recipe, model_path) = (&config.recipe, &config.model_path);
    let missing = |key: &str, path: &Path| {
        let err = std::io::Error::new(std::io::ErrorKind::NotFound, format!("{key}: the file does not exist"));
        Err(RunError::Io { path: path.to_path_buf(), err })
    };
    if !model_path.exists() {
        return missing("the model (model.path, TUNEGUARD_MODEL or the default model)", model_path);
    }
    for (key, path) in std::iter::once(("data.train", &recipe.data.train))
        .chain(recipe.data.val_file.iter().map(|p| ("data.val_file", p)))
    {
        if !path.exists() {
            return missing(key, path);
        }
    }
    Ok(())
}

/// Continues the run in `recipe.output.dir` (whose recipe is its `config.toml`) from its newest
/// complete checkpoint. The result is the same as an uninterrupted run's: same losses, same
/// final weights.
///
/// # Errors
/// `Resume` when the folder has no complete checkpoint, has finished, its data changed, or the
/// model's sha256 is not the one `config.toml` recorded.
pub fn resume(
    config: &RunConfig,
    lock: &RunLock,
    command_line: &[String],
    progress: &mut dyn Progress,
) -> Result<Summary> {
    let out = &config.recipe.output.dir;
    check_lock(lock, out)?;
    set_aside::recover(out)?;
    let fail = |reason: &str| Err(RunError::Resume { dir: out.clone(), reason: reason.into() });
    if out.join("summary.json").exists() {
        return fail("the run has finished (summary.json exists)");
    }
    if checkpoint::list(out).is_empty() {
        return fail("it has no complete checkpoint (one is written at each evaluation); start it again");
    }
    // Data preparation rewrites these; a refused resume puts them back.
    let aside = SetAside::new(out, &["rejected.jsonl", "audit.json", "quarantine.jsonl"])?;
    execute(config, true, aside, command_line, progress)
}

/// `config.toml`: a header for the reader, then the resolved recipe with this run's `[run]`.
fn write_config(recipe: &Recipe, record: &crate::recipe::RunRecord) -> Result<()> {
    let mut r = recipe.absolutized();
    r.run = Some(record.clone());
    let text = format!(
        "# The resolved recipe of this run: every key with its value, paths absolute, and [run]\n\
         # (who started it, when, with which model). `tuneguard train --resume` reads this file\n\
         # and refuses to continue when a setting here was edited or the model file changed.\n\n{}",
        r.to_toml()
    );
    write_atomic(&recipe.output.dir.join("config.toml"), &text)
}

/// The model's context length against `data.max_len`, from its header (nothing is decoded).
fn check_context(recipe: &Recipe, model_path: &Path) -> Result<()> {
    let config = tuneguard_model::engine::read_config(model_path)?;
    recipe.check_context_length(config.max_position_embeddings, model_path)?;
    Ok(())
}

/// What early stopping tracks, from the recipe.
fn tracker(config: &RunConfig) -> EarlyStopping {
    let es = &config.recipe.early_stopping;
    // Without early stopping the tracker only remembers the best evaluation.
    let patience = if config.early_stopping { es.patience } else { usize::MAX };
    EarlyStopping::new(EarlyStoppingConfig { direction: config.direction, patience, min_delta: es.min_delta })
}

/// Loads the model (with LoRA weights initialized, or readied for full fine-tuning); returns it
/// and its number of trainable parameters.
fn load_model(recipe: &Recipe, model_path: &Path, progress: &mut dyn Progress) -> Result<(LoadedModel, usize)> {
    progress.message(&format!("loading {}", model_path.display()));
    let mut loaded = tuneguard_model::load(model_path)?;
    let t = &recipe.train;
    let trainable = if recipe.is_full() {
        prepare_full_finetune(&mut loaded.model);
        loaded.model.config.num_parameters()
    } else {
        init_lora(&mut loaded.model, recipe.lora.r, recipe.lora.alpha, &recipe.lora.target_modules, t.seed)?
    };
    Ok((loaded, trainable))
}

/// The recipe's `data.chat_template`, read for `loaded`'s tokenizer (`None`: the model's own).
pub(crate) fn custom_template(
    recipe: &Recipe,
    loaded: &LoadedModel,
) -> Result<Option<tuneguard_model::chat::ChatTemplate>> {
    Ok(match &recipe.data.chat_template {
        Some(p) => Some(tuneguard_audit::lint::chat_template_from_path(p, &loaded.tokenizer)?),
        None => None,
    })
}

/// Renders, audits, splits, lints and tokenizes the data for `loaded` (audit files go to `out`).
fn prepare_for(
    recipe: &Recipe,
    loaded: &LoadedModel,
    out: &Path,
    audit_only: bool,
    progress: &mut dyn Progress,
) -> Result<prepare::Prepared> {
    let custom = custom_template(recipe, loaded)?;
    let template = custom.as_ref().or(loaded.chat_template.as_ref()).ok_or(RunError::NoChatTemplate)?;
    let tok = ChatTokenizer::new(&loaded.tokenizer, template)?;
    let cx = PrepareCtx { loaded, data_template: custom.as_ref(), tok: &tok, out, audit_only };
    prepare::prepare(recipe, &cx, progress)
}

/// Everything a run does before training (authentication, audit, split, leakage check, lint,
/// tokenization), writing `audit.json` and `quarantine.jsonl` into `out`; for `tuneguard audit`.
///
/// # Errors
/// As [`run`], before training.
pub fn preflight(config: &RunConfig, out: &Path, progress: &mut dyn Progress) -> Result<Prepared> {
    let (recipe, model_path) = (&config.recipe, &config.model_path);
    prepare::authenticate(config, progress)?;
    check_inputs(config)?;
    check_context(recipe, model_path)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let (loaded, _) = load_model(recipe, model_path, progress)?;
    prepare_for(recipe, &loaded, out, true, progress)
}

fn execute(
    config: &RunConfig,
    resuming: bool,
    aside: SetAside,
    command_line: &[String],
    progress: &mut dyn Progress,
) -> Result<Summary> {
    let (recipe, model_path) = (&config.recipe, &config.model_path);
    let out = &recipe.output.dir;
    // The data is checked against its manifest first: that needs no model.
    prepare::authenticate(config, progress)?;
    check_inputs(config)?;
    check_context(recipe, model_path)?;
    let record = record::new(model_path, command_line)?;
    match (&recipe.run, resuming) {
        (_, false) => write_config(recipe, &record)?,
        (Some(started), true) if started.model_sha256 != record.model_sha256 => {
            return Err(RunError::Resume {
                dir: out.clone(),
                reason: format!(
                    "the model {} (sha256 {}) is not the one the run started with, {} (sha256 {}, in config.toml)",
                    record.model_path, record.model_sha256, started.model_path, started.model_sha256
                ),
            });
        }
        // A folder from before runs were recorded has no model hash to compare.
        _ => {}
    }
    let (mut loaded, trainable) = load_model(recipe, model_path, progress)?;
    let t = &recipe.train;
    let mut prepared = prepare_for(recipe, &loaded, out, false, progress)?;
    let s = &prepared.summary;
    // The same counts as summary.json: training and validation apart.
    progress.message(&format!(
        "{} training and {} validation examples ({} rows rejected, {} quarantined, {} augmented; training: {} \
         truncated, {} dropped; validation: {} truncated, {} dropped)",
        s.train_examples,
        s.val_examples,
        s.rejected,
        s.quarantined,
        s.augmented,
        s.truncated,
        s.dropped,
        s.val_truncated,
        s.val_dropped,
    ));
    let dropped = s.dropped + s.val_dropped;
    if dropped > 0 {
        let (what, are) = if dropped == 1 { ("example", "is") } else { ("examples", "are") };
        let list = out.join("rejected.jsonl");
        progress.message(&format!("the {dropped} {what} dropped at tokenization {are} listed in {}", list.display()));
    }
    let prevention = prevention::prepare(
        recipe,
        &loaded,
        &record.model_sha256,
        out,
        &mut prepared.rejected,
        &mut prepared.summary,
        progress,
    )?;
    let mut fingerprint = prepared.fingerprint();
    if !prevention.fingerprint.is_empty() {
        fingerprint =
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!("{fingerprint}{}", prevention.fingerprint)));
    }
    let rows = rows::training_rows(std::mem::take(&mut prepared.train), recipe.data.packing, recipe.data.max_len)?;
    let mut warnings = Vec::new();
    let mut per_step = t.batch_size * t.grad_accum;
    if per_step > rows.len() {
        warnings.push(format!(
            "train.batch_size × train.grad_accum = {per_step} exceeds the {} training rows; using {} per step",
            rows.len(),
            rows.len()
        ));
        per_step = rows.len();
    }
    let total_steps = if t.max_steps > 0 { t.max_steps } else { (rows.len().div_ceil(per_step) * t.epochs) as u64 };
    warnings.extend(recipe.warmup_warning(total_steps));
    let eval_every = if t.eval_steps > 0 { t.eval_steps } else { total_steps.div_ceil(10).max(1) };
    let o = &recipe.optim;
    let mut opt =
        AdamW::new(AdamWConfig { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weight_decay: o.weight_decay })?;
    let tracker = tracker(config);
    if config.early_stopping && prepared.val.is_empty() {
        warnings.push(
            "early stopping is on but there is no validation data; set data.val_size or data.val_file".to_string(),
        );
    }
    warnings.extend(prevention.replay_notice(per_step, progress));
    for w in &warnings {
        progress.message(&format!("warning: {w}"));
    }
    let general = forgetting::general_sets(recipe, &loaded, &prepared, progress)?;
    // The loop reads the tokenizer while the model is trained in `loaded`.
    let tokenizer = loaded.tokenizer.clone();
    let ctx = LoopCtx {
        config,
        recipe,
        out,
        train: &rows,
        val: &prepared.val,
        per_step,
        eval_every,
        record: &record,
        warnings: &warnings,
        general: &general,
        tokenizer: &tokenizer,
        prevention: &prevention,
    };
    let (state, resumed_from) = if resuming {
        let st = restore(&ctx, &mut loaded.model, &mut opt, &fingerprint, total_steps)?;
        progress.message(&format!("resuming from the checkpoint of step {} of {total_steps}", st.step));
        let from = st.step;
        (st, Some(from))
    } else {
        (fresh_state(&ctx, &loaded.model, tracker, fingerprint, total_steps, progress)?, None)
    };
    // Training starts: what an earlier attempt left is no longer needed.
    aside.commit();
    let st = train_loop(&ctx, &mut loaded.model, &mut opt, state, progress)?;
    finish::finish(&ctx, &mut loaded, st, &prepared, trainable, resumed_from, progress)
}

/// The state of a run starting from step 0; `metrics.jsonl` starts with the base model's
/// evaluation (step 0) when there is validation data.
fn fresh_state(
    ctx: &LoopCtx,
    model: &Llama,
    tracker: EarlyStopping,
    data_fingerprint: String,
    total_steps: u64,
    progress: &mut dyn Progress,
) -> Result<LoopState> {
    let recipe = ctx.recipe;
    let alarm = OverfitAlarm::new(recipe.train.overfit_alarm_evals, ctx.config.direction == Direction::Minimize);
    let mut st = LoopState::new(total_steps, tracker, alarm, data_fingerprint, recipe.training_fingerprint());
    st.forgetting = ForgettingAlarm::new(recipe.forgetting.max_rise, recipe.forgetting.stop);
    let metrics = ctx.out.join(tuneguard_records::METRICS_FILE);
    std::fs::write(&metrics, "").map_err(io(&metrics))?; // the run has started
    if !ctx.val.is_empty() {
        // A forward pass over the whole validation set: seconds on a CPU, so say what it is.
        progress.message(&format!("evaluating the base model on {} validation examples...", ctx.val.len()));
        let t0 = std::time::Instant::now();
        let base = evaluate(model, ctx.val)?;
        progress.message(&format!(
            "base model: val loss {:.4} perplexity {:.2} token accuracy {:.3} ({:.1} s)",
            base.loss,
            base.perplexity,
            base.token_accuracy,
            t0.elapsed().as_secs_f64()
        ));
        let general = forgetting::measure_general(ctx, model, &[])?;
        let no_fields = std::collections::BTreeMap::new();
        let fields = general.as_ref().map_or(&no_fields, |g| &g.fields);
        let rec = EvalRecord::new(0, &base, None);
        let line =
            serde_json::to_string(&tuneguard_records::EvalLine { record: &rec, general: fields }).unwrap_or_default();
        std::fs::write(&metrics, line + "\n").map_err(io(&metrics))?;
        st.base_eval = Some(base);
        if let Some(g) = general {
            progress.message(&format!("base model: general {}", forgetting::general_text(ctx, &g)));
            st.general_worst = vec![(0.0, 0); g.values.len()];
            st.general_base = g.values;
        }
    }
    Ok(st)
}

/// Writes a checkpoint of the current step and prunes old ones (keeping the best).
fn checkpoint_now(ctx: &LoopCtx, model: &Llama, opt: &AdamW, st: &LoopState) -> Result<()> {
    let state = serde_json::to_string_pretty(st).unwrap_or_default();
    let params = trainable_refs(model, ctx.recipe.is_full());
    let full = ctx.recipe.is_full();
    let dropout = ctx.recipe.lora.dropout as f64;
    checkpoint::save(ctx.out, st.step, &params, opt.moments(), &state, |dir| {
        if full {
            return Ok(());
        }
        tuneguard_model::lora::save_adapter(model, &dir.join("adapter"), &ctx.config.base_model_name, dropout)
    })?;
    let best: Vec<u64> = st.tracker.best().map(|b| b.0).into_iter().collect();
    checkpoint::prune(ctx.out, ctx.recipe.train.keep_checkpoints.max(1), &best);
    Ok(())
}

/// Loads the newest complete checkpoint into the model and optimizer; truncates `metrics.jsonl`
/// to what that checkpoint had seen.
fn restore(ctx: &LoopCtx, model: &mut Llama, opt: &mut AdamW, fingerprint: &str, total: u64) -> Result<LoopState> {
    let fail = |reason: String| RunError::Resume { dir: ctx.out.to_path_buf(), reason };
    let saved = checkpoint::load_latest(ctx.out).ok_or_else(|| fail("it has no complete checkpoint".into()))?;
    let dir = saved.dir;
    let st: LoopState =
        serde_json::from_str(&saved.state).map_err(|e| fail(format!("{}: {e}", dir.join("state.json").display())))?;
    if st.data_fingerprint != fingerprint {
        return Err(fail("the training or validation data (or its tokenization) changed since the checkpoint".into()));
    }
    if st.recipe_fingerprint != ctx.recipe.training_fingerprint() {
        return Err(fail(
            "config.toml differs from the recipe the run was started with; start a new run instead".into(),
        ));
    }
    if st.total_steps != total {
        return Err(fail(format!("the run plans {total} steps but the checkpoint planned {}", st.total_steps)));
    }
    set_params(model, ctx.recipe.is_full(), saved.tensors.params, &dir).map_err(|e| fail(e.to_string()))?;
    opt.restore(st.optimizer_step, saved.tensors.moments);
    let metrics = ctx.out.join("metrics.jsonl");
    let f = std::fs::OpenOptions::new().write(true).open(&metrics).map_err(io(&metrics))?;
    let len = f.metadata().map_err(io(&metrics))?.len();
    if len < st.metrics_bytes {
        return Err(fail(format!(
            "{} has {len} bytes, fewer than the {} the checkpoint recorded (it was cut or edited)",
            metrics.display(),
            st.metrics_bytes
        )));
    }
    f.set_len(st.metrics_bytes).map_err(io(&metrics))?;
    Ok(st)
}

/// Puts a checkpoint's trainable tensors (read from `dir`) into the model.
fn set_params(model: &mut Llama, full: bool, saved: Vec<Vec<f32>>, dir: &Path) -> Result<()> {
    let mut params = trainable_params(model, full);
    let bad = |reason: String| tuneguard_train::TrainError::Checkpoint { path: dir.to_path_buf(), reason };
    if params.len() != saved.len() {
        return Err(bad(format!("{} tensors, the model trains {}", saved.len(), params.len())).into());
    }
    for (i, (p, s)) in params.iter_mut().zip(saved).enumerate() {
        if p.len() != s.len() {
            return Err(bad(format!("tensor {i} has {} values, the model's has {}", s.len(), p.len())).into());
        }
        **p = s;
    }
    Ok(())
}
