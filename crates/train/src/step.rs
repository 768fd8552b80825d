//! Loss and gradients of a batch: transformers' causal-LM loss (logits[t] predicts labels[t+1],
//! cross-entropy averaged over every supervised token of the whole batch), backpropagated to the
//! LoRA matrices only; with distillation ([`crate::distill`]) the KL term to the frozen base is
//! added on the same logits.
use tuneguard_model::linear::MATVEC_MAX_ROWS;
use tuneguard_model::llama::Llama;
use tuneguard_model::ops;

use crate::block::{self, BlockGrads, FullBlockGrads};
use crate::distill::{Distill, DistillOn};
use crate::error::{Result, TrainError};
use crate::linear_grad::Dropout;
use crate::regularize::Neftune;
use rayon::prelude::*;
use tuneguard_data::splitmix64;

use crate::tensor_ops::{add_into, mm, rms_norm_bwd, rms_norm_fwd};

/// Label value of a position that is not supervised (PyTorch's `ignore_index`).
pub const IGNORE: i64 = -100;

/// One sequence: token ids (t,) and labels (t,) aligned with them (not shifted). A packed row
/// also gives each token's position within its example and its example number (segment);
/// attention then never crosses examples.
pub struct Sequence<'a> {
    pub input_ids: &'a [u32],
    pub labels: &'a [i64],
    pub packing: Option<Packing<'a>>,
    /// A replay row (general-domain data mixed in against forgetting), not a task row.
    pub replay: bool,
}

/// Position ids (t,) and segment ids (t,) of a packed row.
#[derive(Clone, Copy)]
pub struct Packing<'a> {
    pub position_ids: &'a [u32],
    pub segment_ids: &'a [u32],
}

impl<'a> Sequence<'a> {
    pub fn new(input_ids: &'a [u32], labels: &'a [i64]) -> Self {
        Sequence { input_ids, labels, packing: None, replay: false }
    }
}

/// The training-only parts of a step's forward pass: LoRA dropout, NEFTune noise, and
/// distillation from the frozen base.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepOptions {
    pub dropout: Option<Dropout>,
    pub neftune: Option<Neftune>,
    pub distill: Option<Distill>,
}

/// What one row's forward pass does besides the plain loss.
#[derive(Clone, Copy, Default)]
struct RowOptions {
    dropout: Option<Dropout>,
    neftune: Option<(Neftune, usize)>,
    distill: Option<Distill>,
}

/// The two parts of a step's loss, each already divided by its own count of positions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepLoss {
    /// Cross-entropy over the supervised tokens (the training loss).
    pub ce: f64,
    /// λ·T²·KL to the base (0 without distillation).
    pub distill: f64,
}

impl std::ops::AddAssign for StepLoss {
    fn add_assign(&mut self, o: StepLoss) {
        self.ce += o.ce;
        self.distill += o.distill;
    }
}

/// Per-layer LoRA gradients.
pub type Grads = Vec<BlockGrads>;

/// Full fine-tuning gradients of every weight of the model.
#[derive(Debug, Clone)]
pub struct FullGrads {
    pub layers: Vec<FullBlockGrads>,
    /// Token embedding (v, d), including the tied output projection's share.
    pub embed: Vec<f32>,
    pub norm: Vec<f32>,
    /// Untied output projection (v, d).
    pub lm_head: Option<Vec<f32>>,
}

impl FullGrads {
    pub fn zeros(model: &Llama) -> Self {
        FullGrads {
            layers: model.layers.iter().map(FullBlockGrads::zeros).collect(),
            embed: vec![0.0; model.embed_tokens.weight.len()],
            norm: vec![0.0; model.norm.len()],
            lm_head: model.lm_head.as_ref().map(|h| vec![0.0; h.weight.len()]),
        }
    }

    /// Gradients of the base weights of the LoRA-adapted projections only (every other buffer
    /// is empty, and an empty buffer is not computed): what the Fisher needs.
    pub fn adapted_projections(model: &Llama) -> Self {
        FullGrads {
            layers: model
                .layers
                .iter()
                .map(|l| FullBlockGrads {
                    proj: l
                        .projections()
                        .iter()
                        .map(|(_, p)| crate::linear_grad::FullLinearGrad {
                            w: if p.lora.is_some() { vec![0.0; p.weight.len()] } else { Vec::new() },
                            b: None,
                        })
                        .collect(),
                    input_norm: Vec::new(),
                    post_attention_norm: Vec::new(),
                })
                .collect(),
            embed: Vec::new(),
            norm: Vec::new(),
            lm_head: model.lm_head.as_ref().map(|_| Vec::new()),
        }
    }

    /// Every gradient buffer, in the order of [`crate::optim::full_params`].
    pub fn buffers_mut(&mut self) -> Vec<&mut Vec<f32>> {
        let mut out = Vec::new();
        for l in &mut self.layers {
            for p in &mut l.proj {
                out.push(&mut p.w);
                if let Some(b) = p.b.as_mut() {
                    out.push(b);
                }
            }
            out.push(&mut l.input_norm);
            out.push(&mut l.post_attention_norm);
        }
        out.push(&mut self.embed);
        out.push(&mut self.norm);
        if let Some(h) = self.lm_head.as_mut() {
            out.push(h);
        }
        out
    }

    fn add(&mut self, mut other: FullGrads) {
        for (a, b) in self.buffers_mut().into_iter().zip(other.buffers_mut()) {
            add_into(a, b);
        }
    }
}

/// Loss and gradients of every weight (full fine-tuning); see [`loss_and_grads`].
///
/// # Errors
/// As [`loss_and_grads`].
pub fn loss_and_full_grads(model: &Llama, batch: &[Sequence], n_norm: usize, grads: &mut FullGrads) -> Result<f64> {
    loss_and_full_grads_with(model, batch, n_norm, &StepOptions::default(), grads)
}

/// [`loss_and_full_grads`] with NEFTune noise (`opts.dropout` is ignored: no LoRA branch).
///
/// # Errors
/// As [`loss_and_grads`].
pub fn loss_and_full_grads_with(
    model: &Llama,
    batch: &[Sequence],
    n_norm: usize,
    opts: &StepOptions,
    grads: &mut FullGrads,
) -> Result<f64> {
    let mut total = 0.0;
    for (loss, g) in per_row(batch, |row, seq| {
        let mut g = FullGrads::zeros(model);
        let ro = RowOptions { neftune: opts.neftune.map(|n| (n, row)), ..Default::default() };
        let loss = sequence(model, seq, n_norm.max(1), ro, &mut Vec::new(), Some(&mut g))?;
        Ok((loss.ce, g))
    })? {
        total += loss;
        grads.add(g);
    }
    Ok(total)
}

/// Runs `f` on every row in parallel (each with its own gradients, summed by the caller in row
/// order, so results do not depend on the thread schedule); errors name the row.
fn per_row<L: Send, G: Send>(
    batch: &[Sequence],
    f: impl Fn(usize, &Sequence) -> Result<(L, G)> + Sync,
) -> Result<Vec<(L, G)>> {
    batch
        .par_iter()
        .enumerate()
        .map(|(row, seq)| {
            f(row, seq).map_err(|e| match e {
                TrainError::Batch(m) => TrainError::Batch(format!("row {row}: {m}")),
                other => other,
            })
        })
        .collect()
}

/// Supervised targets of a batch: positions t whose label at t+1 is not [`IGNORE`].
pub fn count_supervised(batch: &[Sequence]) -> usize {
    batch.iter().map(supervised).sum()
}

fn supervised(s: &Sequence) -> usize {
    s.labels.iter().skip(1).filter(|&&l| l != IGNORE).count()
}

/// The positions a step averages each loss over: cross-entropy targets, and distilled positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Targets {
    pub ce: usize,
    pub distilled: usize,
}

/// [`Targets`] of a batch when distilling `on` those positions (`None`: no distillation). With
/// [`DistillOn::Replay`] the replay rows are distilled instead of trained on.
pub fn count_targets(batch: &[Sequence], on: Option<DistillOn>) -> Targets {
    let mut t = Targets::default();
    for s in batch {
        let n = supervised(s);
        if !(s.replay && on == Some(DistillOn::Replay)) {
            t.ce += n;
        }
        if on == Some(DistillOn::Supervised) || (s.replay && on == Some(DistillOn::Replay)) {
            t.distilled += n;
        }
    }
    t
}

/// Mean cross-entropy over the supervised tokens of `batch` and its gradient w.r.t. every LoRA
/// matrix of `model`. `n_norm` is the number of supervised tokens the loss is averaged over
/// (pass [`count_supervised`] of the whole optimizer step so accumulation equals one batch).
/// `dropout` is LoRA dropout with the step's seed (each row, layer and projection derives its own).
///
/// # Errors
/// `TrainError::Batch` for mismatched lengths, ids outside the vocabulary or labels that are
/// neither [`IGNORE`] nor a token id.
pub fn loss_and_grads(
    model: &Llama,
    batch: &[Sequence],
    n_norm: usize,
    dropout: Option<Dropout>,
    grads: &mut Grads,
) -> Result<f64> {
    Ok(loss_and_grads_with(model, batch, n_norm, &StepOptions { dropout, ..Default::default() }, grads)?.ce)
}

/// [`loss_and_grads`] with every training-only option (LoRA dropout, NEFTune noise, distillation
/// from the base: `opts.distill.n_norm` is its own count, and `n_norm` then counts only the
/// cross-entropy targets, [`count_targets`]).
///
/// # Errors
/// As [`loss_and_grads`].
pub fn loss_and_grads_with(
    model: &Llama,
    batch: &[Sequence],
    n_norm: usize,
    opts: &StepOptions,
    grads: &mut Grads,
) -> Result<StepLoss> {
    let dropout = opts.dropout;
    let cfg = &model.config;
    if grads.len() != cfg.num_layers {
        *grads = (0..cfg.num_layers).map(|_| Default::default()).collect();
    }
    let mut total = StepLoss::default();
    for (loss, g) in per_row(batch, |row, seq| {
        let mut g: Grads = Vec::new();
        let ro = RowOptions {
            dropout: dropout.map(|d| Dropout { p: d.p, seed: splitmix64(d.seed ^ row as u64) }),
            neftune: opts.neftune.map(|n| (n, row)),
            distill: opts.distill,
        };
        let loss = sequence(model, seq, n_norm.max(1), ro, &mut g, None)?;
        Ok((loss, g))
    })? {
        total += loss;
        add_grads(grads, g);
    }
    Ok(total)
}

/// `acc += g`, matrix by matrix.
fn add_grads(acc: &mut Grads, g: Grads) {
    for (a_layer, g_layer) in acc.iter_mut().zip(g) {
        for (a, g) in a_layer.iter_mut().zip(g_layer) {
            match (a.as_mut(), g) {
                (Some(a), Some(g)) => {
                    add_into(&mut a.a, &g.a);
                    add_into(&mut a.b, &g.b);
                }
                (None, Some(g)) => *a = Some(g),
                (_, None) => {}
            }
        }
    }
}

/// The embeddings (t, d) of `ids`.
fn embed(model: &Llama, ids: &[u32]) -> Result<Vec<f32>> {
    let d = model.config.hidden_size;
    let mut x = vec![0f32; ids.len() * d];
    for (row, &id) in x.chunks_mut(d).zip(ids) {
        let id = id as usize;
        if id >= model.embed_tokens.out_features {
            return Err(TrainError::Batch(format!("token id {id} is outside the vocabulary")));
        }
        row.copy_from_slice(&model.embed_tokens.weight[id * d..(id + 1) * d]);
    }
    Ok(x)
}

/// The frozen base model's logits (n, v) at the positions `rows` (n,) of `ids`: the same blocks
/// with the LoRA branches left out, no dropout, no noise (distillation's teacher). Only the
/// distilled positions go through the output head.
fn base_logits(
    model: &Llama,
    ids: &[u32],
    angles: &tuneguard_model::rope::RopeAngles,
    first_key: &[usize],
    rows: &[usize],
) -> Result<Vec<f32>> {
    let cfg = &model.config;
    let (t, d) = (ids.len(), cfg.hidden_size);
    let mut x = embed(model, ids)?;
    for layer in &model.layers {
        x = block::forward(cfg, layer, x, t, angles, first_key, None, false).0;
    }
    // Zero rows pad the call to the kernel the student's t-row head call took (the matvec
    // kernels round differently), so the base's logits equal the student's at B = 0.
    let n = rows.len().max(t.min(MATVEC_MAX_ROWS + 1));
    let mut picked = vec![0f32; n * d];
    for (dst, &i) in picked.chunks_mut(d).zip(rows) {
        dst.copy_from_slice(&x[i * d..(i + 1) * d]);
    }
    let (hn, _) = rms_norm_fwd(&picked, &model.norm, cfg.rms_norm_eps as f32);
    let head = model.lm_head.as_ref().unwrap_or(&model.embed_tokens);
    let mut logits = vec![0f32; n * cfg.vocab_size];
    head.forward(&hn, n, &mut logits);
    logits.truncate(rows.len() * cfg.vocab_size);
    Ok(logits)
}

/// Adds one sequence's share of the loss (sum of its token losses / n_norm, and its distilled
/// positions' KL / distill.n_norm) and gradients.
fn sequence(
    model: &Llama,
    seq: &Sequence,
    n_norm: usize,
    opts: RowOptions,
    grads: &mut Grads,
    mut full: Option<&mut FullGrads>,
) -> Result<StepLoss> {
    let RowOptions { dropout, neftune, distill } = opts;
    let cfg = &model.config;
    if grads.len() != cfg.num_layers {
        *grads = (0..cfg.num_layers).map(|_| Default::default()).collect();
    }
    let (t, d, v) = (seq.input_ids.len(), cfg.hidden_size, cfg.vocab_size);
    if t == 0 || seq.labels.len() != t {
        return Err(TrainError::Batch(format!("{} ids but {} labels", t, seq.labels.len())));
    }
    let mut x = embed(model, seq.input_ids)?;
    if let Some((n, row)) = neftune {
        n.apply(&mut x, t, d, row); // additive, so the embedding gradient is unchanged
    }
    let (angles, first_key) = match &seq.packing {
        None => (model.rope().angles(0, t), vec![0; t]),
        Some(pk) => {
            if pk.position_ids.len() != t || pk.segment_ids.len() != t {
                return Err(TrainError::Batch("packing ids do not match the row length".into()));
            }
            let positions: Vec<usize> = pk.position_ids.iter().map(|&p| p as usize).collect();
            // First key each query may see: the start of its segment.
            let mut first = vec![0; t];
            for i in 1..t {
                first[i] = if pk.segment_ids[i] == pk.segment_ids[i - 1] { first[i - 1] } else { i };
            }
            (model.rope().angles_at(&positions), first)
        }
    };
    let mut caches = Vec::with_capacity(cfg.num_layers);
    for (li, layer) in model.layers.iter().enumerate() {
        let layer_dropout = dropout.map(|d| Dropout { p: d.p, seed: splitmix64(d.seed ^ ((li as u64) << 32)) });
        let (out, cache) = block::forward(cfg, layer, x, t, &angles, &first_key, layer_dropout, true);
        caches.push(cache);
        x = out;
    }
    let (hn, rstd) = rms_norm_fwd(&x, &model.norm, cfg.rms_norm_eps as f32);
    let head = model.lm_head.as_ref().unwrap_or(&model.embed_tokens);
    let mut logits = vec![0f32; t * v]; // (t, v)
    head.forward(&hn, t, &mut logits);
    // Which losses this row takes: cross-entropy unless it is a replay row that is distilled
    // instead, and the KL to the base on the positions distillation covers.
    let distill = distill.filter(|k| k.on == DistillOn::Supervised || seq.replay);
    let train_ce = !(seq.replay && distill.is_some_and(|k| k.on == DistillOn::Replay));
    let teacher = match distill {
        Some(_) => {
            let rows: Vec<usize> = (0..t).filter(|&i| seq.labels.get(i + 1).is_some_and(|&l| l != IGNORE)).collect();
            Some(base_logits(model, seq.input_ids, &angles, &first_key, &rows)?)
        }
        None => None,
    };
    let mut taught = 0; // teacher rows used so far: one per distilled position, in order
                        // Cross-entropy, the KL term and d(loss)/d(logits), in place.
    let mut loss = StepLoss::default();
    let mut student = Vec::new();
    for (i, row) in logits.chunks_mut(v).enumerate() {
        let target = seq.labels.get(i + 1).copied().unwrap_or(IGNORE);
        if target == IGNORE {
            row.fill(0.0);
            continue;
        }
        let target = usize::try_from(target)
            .ok()
            .filter(|&x| x < v)
            .ok_or_else(|| TrainError::Batch(format!("label {target} is not a token id")))?;
        if teacher.is_some() {
            student.clear();
            student.extend_from_slice(row);
        }
        if train_ce {
            loss.ce += ops::log_sum_exp(row) - row[target] as f64; // -log softmax(row)[target]
            ops::softmax_in_place(row);
            row[target] -= 1.0;
            row.iter_mut().for_each(|g| *g /= n_norm as f32);
        } else {
            row.fill(0.0);
        }
        if let (Some(k), Some(base)) = (distill, teacher.as_deref()) {
            loss.distill += k.add_position(&student, &base[taught * v..(taught + 1) * v], row);
            taught += 1;
        }
    }
    loss.ce /= n_norm as f64;
    let d_hn = mm(&logits, (v, 1), &head.weight, (d, 1), t, v, d); // (t, d) = dlogits · E
    if let Some(f) = full.as_deref_mut() {
        let head_grad = f.lm_head.as_mut().unwrap_or(&mut f.embed);
        if !head_grad.is_empty() {
            let d_head = mm(&logits, (1, v), &hn, (d, 1), v, t, d); // (v, d) = dlogitsᵀ · hn
            add_into(head_grad, &d_head);
        }
        if !f.norm.is_empty() {
            crate::tensor_ops::rms_norm_weight_grad(&x, &rstd, &d_hn, &mut f.norm);
        }
    }
    let mut dx = rms_norm_bwd(&x, &model.norm, &rstd, &d_hn);
    for (i, layer) in model.layers.iter().enumerate().rev() {
        let fb = full.as_deref_mut().map(|f| &mut f.layers[i]);
        dx = block::backward(cfg, layer, &caches[i], dx, t, &angles, &mut grads[i], fb);
    }
    if let Some(f) = full.filter(|f| !f.embed.is_empty()) {
        // The embedding lookup scatters its gradient back to the looked-up rows.
        for (row, &id) in dx.chunks(d).zip(seq.input_ids) {
            add_into(&mut f.embed[id as usize * d..(id as usize + 1) * d], row);
        }
    }
    Ok(loss)
}
