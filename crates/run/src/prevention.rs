//! Forgetting prevention for a run, read from the recipe once: `[replay]` rows, `[distill]`,
//! `[ewc]` with its Fisher (computed before training, while the model is the base, and cached as
//! safetensors), `[l2sp]`. The loss terms themselves are `tuneguard_train::distill` and
//! `tuneguard_train::anchor`; the loop mixes the replay rows into each step.
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tuneguard_data::tokenize::{ChatTokenizer, TokenizedExample};
use tuneguard_data::Rejected;
use tuneguard_model::LoadedModel;
use tuneguard_train::anchor::{fisher_diagonal, Cached, Fisher};
use tuneguard_train::distill::DistillOn;
use tuneguard_train::step::Sequence;

use crate::general_data::{self, GeneralExamples};
use crate::prepare::{hash_examples, DataSummary};
use crate::recipe::{DistillOnSpec, Recipe};
use crate::rows::TrainRow;
use crate::{Progress, Result, RunError};

/// The Fisher's cache file in the run folder when `ewc.fisher` is not given.
pub const FISHER_FILE: &str = "ewc_fisher.safetensors";

/// What the loop needs to prevent forgetting; everything off by default.
#[derive(Default)]
pub struct Prevention {
    /// `[replay]` rows and `replay.ratio`.
    pub replay: Vec<TrainRow>,
    pub replay_ratio: f64,
    /// `[distill]`: (λ, T, on).
    pub distill: Option<(f32, f32, DistillOn)>,
    /// `[ewc]`: λ and the Fisher (normalized when `ewc.normalize`).
    pub ewc: Option<(f32, Fisher)>,
    /// `[l2sp]`: λ.
    pub l2sp: Option<f32>,
    /// sha256 of the replay rows and the Fisher's key (joins the data fingerprint a resume
    /// checks); empty when neither is used.
    pub fingerprint: String,
}

impl Prevention {
    pub fn distill_on(&self) -> Option<DistillOn> {
        self.distill.map(|(_, _, on)| on)
    }

    /// Says how many replay rows each step of `per_step` task rows gets; a warning when that is
    /// more than there are.
    pub fn replay_notice(&self, per_step: usize, progress: &mut dyn Progress) -> Option<String> {
        if self.replay.is_empty() {
            return None;
        }
        let per = per_step as f64 * self.replay_ratio / (1.0 - self.replay_ratio);
        progress.message(&format!(
            "replay: {per:.2} replay rows per step next to {per_step} task rows (replay.ratio = {})",
            self.replay_ratio
        ));
        (per > self.replay.len() as f64).then(|| {
            format!(
                "replay.ratio = {} asks for {per:.0} replay rows per step but replay.data has {}: each is used more than once per step",
                self.replay_ratio,
                self.replay.len()
            )
        })
    }
}

/// Reads `[replay]` and `[ewc]`'s data, estimates or loads the Fisher, and adds the general
/// rows' rejects to `rejected` (rewriting `out/rejected.jsonl` when there are any) and the replay
/// summary to `summary`. Call before any checkpoint is restored: the Fisher is of the base.
///
/// # Errors
/// Data errors of the general files, `Forgetting` when one leaves no example, a Fisher cache
/// that cannot be read or written.
pub(crate) fn prepare(
    recipe: &Recipe,
    loaded: &LoadedModel,
    model_sha256: &str,
    out: &Path,
    rejected: &mut Vec<Rejected>,
    summary: &mut DataSummary,
    progress: &mut dyn Progress,
) -> Result<Prevention> {
    let (rp, kd, ewc) = (&recipe.replay, &recipe.distill, &recipe.ewc);
    let mut p = Prevention::default();
    if kd.lambda > 0.0 {
        let on = match kd.on {
            DistillOnSpec::Supervised => DistillOn::Supervised,
            DistillOnSpec::Replay => DistillOn::Replay,
        };
        p.distill = Some((kd.lambda as f32, kd.temperature as f32, on));
    }
    p.l2sp = (recipe.l2sp.lambda > 0.0).then_some(recipe.l2sp.lambda as f32);
    let replay_on = rp.ratio > 0.0 && rp.data.is_some();
    if !replay_on && ewc.lambda == 0.0 {
        return Ok(p);
    }
    let custom = crate::custom_template(recipe, loaded)?;
    let template = custom.as_ref().or(loaded.chat_template.as_ref()).ok_or(RunError::NoChatTemplate)?;
    let tok = ChatTokenizer::new(&loaded.tokenizer, template)?;
    let max_len = recipe.data.max_len;
    let mut hash = Sha256::new();
    let replay = match (replay_on, &rp.data) {
        (true, Some(path)) => {
            let g = general_data::read(
                "replay.data",
                path,
                rp.format.as_ref(),
                &loaded.tokenizer,
                &tok,
                max_len,
                None,
                progress,
            )?;
            Some(g)
        }
        _ => None,
    };
    let ewc_data = if ewc.lambda > 0.0 {
        let (path, format) = match (&ewc.data, &rp.data) {
            (Some(d), _) => (d, ewc.format.as_ref()),
            (None, Some(d)) => (d, rp.format.as_ref()),
            (None, None) => {
                return Err(RunError::Prevention { key: "ewc.data", reason: "no general-domain file is named".into() })
            }
        };
        let g = general_data::read(
            "ewc.data",
            path,
            format,
            &loaded.tokenizer,
            &tok,
            max_len,
            Some(ewc.examples),
            progress,
        )?;
        Some(g)
    } else {
        None
    };
    // Every rejected row is written before anything can stop the run; rows read for both
    // replay and EWC are listed once.
    let mut seen: std::collections::HashSet<(PathBuf, usize)> =
        rejected.iter().map(|r| (r.path.clone(), r.line)).collect();
    let before = rejected.len();
    for g in replay.iter().chain(&ewc_data) {
        for r in &g.rejected {
            if seen.insert((r.path.clone(), r.line)) {
                rejected.push(r.clone());
            }
        }
    }
    if rejected.len() > before {
        tuneguard_data::rejected::write_rejected(&out.join("rejected.jsonl"), rejected)?;
    }
    if let Some(g) = replay {
        g.check("replay.data")?;
        hash.update(b"replay");
        hash_examples(&mut hash, b'E', &g.examples);
        let GeneralExamples { examples, summary: mut s, .. } = g;
        s.ratio = Some(rp.ratio);
        summary.replay = Some(s);
        p.replay = examples.into_iter().map(TrainRow::replay).collect();
        p.replay_ratio = rp.ratio;
    }
    if let Some(g) = ewc_data {
        g.check("ewc.data")?;
        if g.examples.len() < ewc.examples {
            progress.message(&format!(
                "warning: ewc.examples = {} but {} has {} examples; the Fisher is estimated on {}",
                ewc.examples,
                g.summary.path,
                g.examples.len(),
                g.examples.len()
            ));
        }
        let key = fisher_key(model_sha256, loaded, &g.examples);
        hash.update(key.as_bytes());
        let cache = ewc.fisher.clone().unwrap_or_else(|| out.join(FISHER_FILE));
        let mut fisher = fisher(loaded, &g.examples, &cache, &key, progress)?;
        if ewc.normalize {
            fisher.normalize();
        }
        let mut s = g.summary;
        s.fisher = Some(std::path::absolute(&cache).unwrap_or(cache).display().to_string());
        summary.ewc = Some(s);
        p.ewc = Some((ewc.lambda as f32, fisher));
    }
    p.fingerprint = hex::encode(hash.finalize());
    Ok(p)
}

/// What the Fisher depends on: the model file, which projections are adapted, the examples.
fn fisher_key(model_sha256: &str, loaded: &LoadedModel, examples: &[TokenizedExample]) -> String {
    let mut h = Sha256::new();
    h.update(b"tuneguard-ewc-fisher v1\0");
    h.update(model_sha256.as_bytes());
    for layer in &loaded.model.layers {
        for (name, lin) in layer.projections() {
            if lin.lora.is_some() {
                h.update(name.as_bytes());
            }
        }
        h.update(b"|");
    }
    hash_examples(&mut h, b'E', examples);
    hex::encode(h.finalize())
}

/// The Fisher from `cache` when it was computed for `key`, else estimated and written there.
fn fisher(
    loaded: &LoadedModel,
    examples: &[TokenizedExample],
    cache: &Path,
    key: &str,
    progress: &mut dyn Progress,
) -> Result<Fisher> {
    let model = &loaded.model;
    let named = |e: tuneguard_train::TrainError| RunError::Prevention { key: "ewc.fisher", reason: e.to_string() };
    match Fisher::load(model, cache, key).map_err(named)? {
        Cached::Found(f) => {
            progress.message(&format!(
                "ewc: Fisher information of {} examples read from {}",
                f.examples,
                cache.display()
            ));
            return Ok(f);
        }
        Cached::Stale => progress.message(&format!(
            "ewc: {} holds a Fisher made for another model, other adapted projections or other examples; replacing it",
            cache.display()
        )),
        Cached::Missing => {}
    }
    progress.message(&format!(
        "ewc: estimating the Fisher information of the base weights on {} general examples...",
        examples.len()
    ));
    let t0 = std::time::Instant::now();
    let seqs: Vec<Sequence> = examples.iter().map(|e| Sequence::new(&e.input_ids, &e.labels)).collect();
    let f = fisher_diagonal(model, &seqs, |_| {})?;
    f.save(model, cache, key).map_err(named)?;
    progress.message(&format!(
        "ewc: Fisher information estimated in {:.1} s, cached in {}",
        t0.elapsed().as_secs_f64(),
        cache.display()
    ));
    Ok(f)
}
