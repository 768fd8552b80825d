//! A whole LoRA fine-tuning run from a [`Recipe`]: load, split, tokenize, train, evaluate, and
//! write the run folder (`config.toml`, `rejected.jsonl`, `metrics.jsonl`, `adapter/`,
//! `summary.json`).
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use tuneguard_data::load::{load_file, LoadOptions};
use tuneguard_data::tokenize::{ChatTokenizer, TokenizeOptions, TokenizedExample};
use tuneguard_model::llama::{KvCache, Llama, LogitsFor};

use crate::init::init_lora;
use crate::linear_grad::{splitmix64, Dropout};
use crate::optim::{clip_full_grad_norm, clip_grad_norm, prepare_full_finetune, AdamW, AdamWConfig};
use crate::recipe::Recipe;
use crate::schedule::lr_at;
use crate::step::{count_supervised, loss_and_full_grads, loss_and_grads, FullGrads, Grads, Packing, Sequence, IGNORE};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Model(#[from] tuneguard_model::ModelError),
    #[error(transparent)]
    Data(#[from] tuneguard_data::DataError),
    #[error(transparent)]
    Train(#[from] crate::TrainError),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{0}: the folder already holds a run (possibly an interrupted one); pass --overwrite to replace it")]
    OutputExists(PathBuf),
    #[error("the model has no chat template, which the training data needs")]
    NoChatTemplate,
    /// The loss watchdog: a non-finite loss, or one far above the first step's.
    #[error("training diverged at step {step}: loss {loss} ({why}); lower optim.lr or check the data")]
    Diverged { step: u64, loss: f64, why: String },
}

type Result<T> = std::result::Result<T, RunError>;

/// One optimizer step's figures (a line of `metrics.jsonl`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepMetrics {
    pub step: u64,
    pub total_steps: u64,
    pub loss: f64,
    pub lr: f32,
    pub grad_norm: f64,
    pub tokens: usize,
    pub tokens_per_s: f64,
}

/// Receives progress; the CLI draws a bar or prints lines.
pub trait Progress {
    fn message(&mut self, text: &str);
    fn step(&mut self, m: &StepMetrics);
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub train_examples: usize,
    pub val_examples: usize,
    pub rejected_rows: usize,
    pub tokenize: tuneguard_data::tokenize::TokenizeStats,
    /// Tokenization counts of the held-out examples.
    pub val_tokenize: tuneguard_data::tokenize::TokenizeStats,
    pub trainable_parameters: usize,
    pub steps: u64,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    /// Mean loss per supervised token on the held-out examples, before and after training.
    pub val_loss_base: Option<f64>,
    pub val_loss_final: Option<f64>,
    pub final_train_loss: Option<f64>,
}

/// One LoRA optimizer step over `seqs` (micro-batches of `batch_size`): returns the loss and the
/// gradient norm before clipping.
fn lora_step(
    model: &mut Llama,
    recipe: &Recipe,
    seqs: &[Sequence],
    n_norm: usize,
    step: u64,
    opt: &mut AdamW,
) -> Result<(f64, f64)> {
    let (t, o) = (&recipe.train, &recipe.optim);
    let mut grads: Grads = Vec::new();
    let mut loss = 0.0;
    for (micro_index, micro) in seqs.chunks(t.batch_size).enumerate() {
        let dropout = (recipe.lora.dropout > 0.0)
            .then(|| Dropout { p: recipe.lora.dropout, seed: splitmix64(t.seed ^ (step << 16) ^ micro_index as u64) });
        loss += loss_and_grads(model, micro, n_norm, dropout, &mut grads)?;
    }
    let grad_norm = if o.max_grad_norm > 0.0 {
        clip_grad_norm(&mut grads, o.max_grad_norm as f64)
    } else {
        crate::optim::grad_norm(&grads)
    };
    opt.update(model, &grads)?;
    Ok((loss, grad_norm))
}

/// One training row: an example, or several packed together.
struct TrainRow {
    input_ids: Vec<u32>,
    labels: Vec<i64>,
    packing: Option<(Vec<u32>, Vec<u32>)>,
}

impl TrainRow {
    fn as_sequence(&self) -> Sequence<'_> {
        Sequence {
            input_ids: &self.input_ids,
            labels: &self.labels,
            packing: self.packing.as_ref().map(|(p, s)| Packing { position_ids: p, segment_ids: s }),
        }
    }
}

/// Rows for training: one per example, or packed rows of up to `max_len` tokens. In a packed
/// row each example's first label is ignored, so no token learns to predict the next example.
fn training_rows(examples: Vec<TokenizedExample>, packing: bool, max_len: usize) -> Result<Vec<TrainRow>> {
    if !packing {
        return Ok(examples
            .into_iter()
            .map(|e| TrainRow { input_ids: e.input_ids, labels: e.labels, packing: None })
            .collect());
    }
    let plan = tuneguard_data::batch::plan_packing(&examples, max_len)?;
    Ok(plan
        .iter()
        .map(|members| {
            let mut row =
                TrainRow { input_ids: Vec::new(), labels: Vec::new(), packing: Some((Vec::new(), Vec::new())) };
            for (seg, &i) in members.iter().enumerate() {
                let e = &examples[i];
                row.input_ids.extend_from_slice(&e.input_ids);
                row.labels.extend(e.labels.iter().enumerate().map(|(k, &l)| if k == 0 { IGNORE } else { l }));
                if let Some((pos, segs)) = row.packing.as_mut() {
                    pos.extend(0..e.input_ids.len() as u32);
                    segs.extend(std::iter::repeat_n(seg as u32 + 1, e.input_ids.len()));
                }
            }
            row
        })
        .collect())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |err| RunError::Io { path: path.to_path_buf(), err }
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Mean negative log-likelihood per supervised token over `examples` (no gradients).
pub fn eval_loss(model: &Llama, examples: &[TokenizedExample]) -> Result<f64> {
    let v = model.config.vocab_size;
    let per: Vec<Result<(f64, usize)>> = examples
        .par_iter()
        .map(|ex| {
            let mut cache = KvCache::new(&model.config);
            let logits = model.forward(&ex.input_ids, &mut cache, LogitsFor::All)?;
            let mut sum = 0.0;
            let mut n = 0;
            for (i, row) in logits.chunks(v).enumerate() {
                let Some(&target) = ex.labels.get(i + 1).filter(|&&l| l != IGNORE) else { continue };
                sum += tuneguard_model::ops::log_sum_exp(row) - row[target as usize] as f64;
                n += 1;
            }
            Ok((sum, n))
        })
        .collect();
    let (mut sum, mut n) = (0.0, 0);
    for r in per {
        let (s, c) = r?;
        sum += s;
        n += c;
    }
    Ok(if n == 0 { f64::NAN } else { sum / n as f64 })
}

/// Runs the recipe. `model_path` is the resolved model (the recipe's or the default).
///
/// # Errors
/// Any [`RunError`]; nothing is left half-written in the run folder's files.
pub fn run(recipe: &Recipe, model_path: &Path, overwrite: bool, progress: &mut dyn Progress) -> Result<Summary> {
    let out = &recipe.output.dir;
    // A run has started once metrics.jsonl exists; config.toml and rejected.jsonl alone are left
    // by a run that stopped before training and do not block the next one.
    let markers = ["summary.json", "metrics.jsonl", "adapter", "model"];
    if markers.iter().any(|m| out.join(m).exists()) && !overwrite {
        return Err(RunError::OutputExists(out.clone()));
    }
    for m in markers.iter().chain(&["config.toml", "rejected.jsonl"]) {
        let p = out.join(m);
        let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    write_atomic(&out.join("config.toml"), &recipe.to_toml())?;

    progress.message(&format!("loading {}", model_path.display()));
    let mut loaded = tuneguard_model::load(model_path)?;
    let t = &recipe.train;
    let trainable = if recipe.is_full() {
        prepare_full_finetune(&mut loaded.model);
        loaded.model.config.num_parameters()
    } else {
        init_lora(&mut loaded.model, recipe.lora.r, recipe.lora.alpha, &recipe.lora.target_modules, t.seed)?
    };
    let opts = LoadOptions {
        format: recipe.data.format.clone(),
        file_kind: None,
        max_reject_fraction: recipe.data.max_reject_fraction,
        keep_empty: true,
    };
    let data = load_file(&recipe.data.train, &opts)?;
    // Rejected rows are reported and written before any check can stop the run.
    tuneguard_data::rejected::write_rejected(&out.join("rejected.jsonl"), &data.rejected)?;
    for r in data.rejected.iter().take(5) {
        progress.message(&format!("rejected {r}"));
    }
    if data.rejected.len() > 5 {
        progress.message(&format!(
            "... {} rejected rows in all, see {}",
            data.rejected.len(),
            out.join("rejected.jsonl").display()
        ));
    }
    data.check(recipe.data.max_reject_fraction)?;
    let mut examples = data.examples;
    examples.shuffle(&mut StdRng::seed_from_u64(t.seed));
    let n_val = recipe.data.val_size.min(examples.len().saturating_sub(1));
    if n_val < recipe.data.val_size {
        progress.message(&format!(
            "warning: data.val_size {} leaves no training data; holding out {n_val} of {} examples",
            recipe.data.val_size,
            examples.len()
        ));
    }
    let (val_ex, train_ex) = examples.split_at(n_val);
    let template = loaded.chat_template.as_ref().ok_or(RunError::NoChatTemplate)?;
    let tok = ChatTokenizer::new(&loaded.tokenizer, template)?;
    let topts = TokenizeOptions { max_len: recipe.data.max_len, overflow: recipe.data.overflow };
    let (train, tstats) = tok.tokenize_all(train_ex, topts)?;
    let (val, val_stats) =
        if val_ex.is_empty() { (Vec::new(), Default::default()) } else { tok.tokenize_all(val_ex, topts)? };
    progress.message(&format!(
        "{} training and {} held-out examples ({} rows rejected, {} truncated, {} dropped)",
        train.len(),
        val.len(),
        data.rejected.len(),
        tstats.truncated,
        tstats.dropped_too_long + tstats.dropped_no_supervised
    ));

    let val_loss_base = if val.is_empty() { None } else { Some(eval_loss(&loaded.model, &val)?) };
    let n_train_examples = train.len();
    let train = training_rows(train, recipe.data.packing, recipe.data.max_len)?;
    let mut per_step = t.batch_size * t.grad_accum;
    if per_step > train.len() {
        progress.message(&format!(
            "warning: train.batch_size × train.grad_accum = {per_step} exceeds the {} training rows; using {} per step",
            train.len(),
            train.len()
        ));
        per_step = train.len();
    }
    let total_steps = if t.max_steps > 0 { t.max_steps } else { (train.len().div_ceil(per_step) * t.epochs) as u64 };
    let o = &recipe.optim;
    let mut opt =
        AdamW::new(AdamWConfig { lr: o.lr, beta1: o.beta1, beta2: o.beta2, eps: o.eps, weight_decay: o.weight_decay })?;
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = std::fs::File::create(&metrics_path).map_err(io(&metrics_path))?;
    // Example order: a fresh seeded shuffle per epoch, consumed in order across steps.
    let mut order: Vec<usize> = Vec::new();
    let mut epoch = 0u64;
    let (start, mut tokens_total, mut last_loss) = (Instant::now(), 0usize, None);
    let mut first_loss: Option<f64> = None;
    for step in 0..total_steps {
        let t0 = Instant::now();
        let mut picked = Vec::with_capacity(per_step);
        while picked.len() < per_step {
            if order.is_empty() {
                order = (0..train.len()).collect();
                order.shuffle(&mut StdRng::seed_from_u64(t.seed.wrapping_add(1 + epoch)));
                order.reverse(); // popped from the back, so consumed in shuffled order
                epoch += 1;
            }
            picked.extend(order.pop());
        }
        let seqs: Vec<Sequence> = picked.iter().map(|&i| train[i].as_sequence()).collect();
        let n_norm = count_supervised(&seqs);
        let lr = lr_at(o.lr, recipe.schedule(), o.warmup_steps, total_steps, step);
        opt.config.lr = lr;
        let (loss, grad_norm) = if recipe.is_full() {
            let mut grads = FullGrads::zeros(&loaded.model);
            let mut loss = 0.0;
            for micro in seqs.chunks(t.batch_size) {
                loss += loss_and_full_grads(&loaded.model, micro, n_norm, &mut grads)?;
            }
            let norm = clip_full_grad_norm(&mut grads, o.max_grad_norm as f64);
            opt.update_full(&mut loaded.model, &mut grads);
            (loss, norm)
        } else {
            lora_step(&mut loaded.model, recipe, &seqs, n_norm, step, &mut opt)?
        };
        let tokens: usize = seqs.iter().map(|s| s.input_ids.len()).sum();
        tokens_total += tokens;
        let m = StepMetrics {
            step: step + 1,
            total_steps,
            loss,
            lr,
            grad_norm,
            tokens,
            tokens_per_s: tokens as f64 / t0.elapsed().as_secs_f64(),
        };
        let line = serde_json::to_string(&m).unwrap_or_default();
        writeln!(metrics, "{line}").and_then(|_| metrics.flush()).map_err(io(&metrics_path))?;
        progress.step(&m);
        // Loss watchdog: stop on NaN/inf, or on a loss above `divergence_factor` × the first.
        let first = *first_loss.get_or_insert(loss);
        let factor = t.divergence_factor;
        if !loss.is_finite() || (factor > 0.0 && first.is_finite() && loss > factor * first) {
            let why = if loss.is_finite() {
                format!("more than {factor} × the first step's {first:.4}")
            } else {
                "not finite".into()
            };
            return Err(RunError::Diverged { step: step + 1, loss, why });
        }
        last_loss = Some(loss);
    }
    let seconds = start.elapsed().as_secs_f64();
    let val_loss_final = if val.is_empty() { None } else { Some(eval_loss(&loaded.model, &val)?) };
    let base_name = recipe
        .model
        .path
        .as_ref()
        .map_or("HuggingFaceTB/SmolLM2-135M-Instruct".to_string(), |p| p.display().to_string());
    if recipe.is_full() {
        tuneguard_model::save::save_hf_dir(&loaded, &out.join("model"))?;
    } else {
        tuneguard_model::lora::save_adapter(
            &loaded.model,
            &out.join("adapter"),
            &base_name,
            recipe.lora.dropout as f64,
        )?;
    }
    let summary = Summary {
        train_examples: n_train_examples,
        val_examples: val.len(),
        rejected_rows: data.rejected.len(),
        tokenize: tstats,
        val_tokenize: val_stats,
        trainable_parameters: trainable,
        steps: total_steps,
        tokens: tokens_total,
        seconds,
        tokens_per_s: tokens_total as f64 / seconds.max(1e-9),
        val_loss_base,
        val_loss_final,
        final_train_loss: last_loss,
    };
    write_atomic(&out.join("summary.json"), &serde_json::to_string_pretty(&summary).unwrap_or_default())?;
    Ok(summary)
}
