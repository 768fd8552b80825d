//! The forgetting guard's side of a run: the `[forgetting]` general-domain sets read and
//! tokenized once ([`general_sets`]), measured on the model at step 0, at every evaluation and
//! for the written weights ([`measure_general`]), and shown in the log ([`general_text`]). The
//! alarm itself is `tuneguard_train::guards::forgetting::ForgettingAlarm`, one of the loop's
//! guards.
use tuneguard_eval::general::GeneralSet;
use tuneguard_model::llama::Llama;
use tuneguard_train::guards::forgetting::relative_rise;

use crate::prepare::Prepared;
use crate::recipe::Recipe;
use crate::train_loop::LoopCtx;
use crate::types::{Progress, Result, RunError};

/// The `[forgetting]` sets, read and tokenized. They are measured at each evaluation, so they
/// need validation data.
pub(crate) fn general_sets(
    recipe: &Recipe,
    loaded: &tuneguard_model::LoadedModel,
    prepared: &Prepared,
    progress: &mut dyn Progress,
) -> Result<Vec<GeneralSet>> {
    let tasks = &recipe.forgetting.task;
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    if prepared.val.is_empty() {
        return Err(RunError::Forgetting(
            "the general sets are measured at each evaluation, and evaluations need validation data; set data.val_size or data.val_file".into(),
        ));
    }
    let context = loaded.model.config.max_position_embeddings;
    let sets = tasks
        .iter()
        .map(|t| {
            GeneralSet::prepare(t, &loaded.tokenizer, context)
                .map_err(|e| RunError::Forgetting(format!("`{}`: {e}", t.name())))
        })
        .collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = sets.iter().map(|s| format!("{} ({})", s.name, s.metric().name)).collect();
    progress.message(&format!("forgetting guard: measuring {} at each evaluation", names.join(", ")));
    Ok(sets)
}

/// The general sets measured on a model: their values (in `ctx.general`'s order) and the
/// `general_*` fields of the evaluation line.
pub struct GeneralReading {
    pub values: Vec<f64>,
    pub fields: std::collections::BTreeMap<String, f64>,
    /// The largest rise against the base, and `set metric` it comes from.
    pub rise: f64,
    pub what: String,
}

/// Measures every general set on `model`; `base` (empty at step 0) gives the rises.
pub fn measure_general(ctx: &LoopCtx, model: &Llama, base: &[f64]) -> Result<Option<GeneralReading>> {
    if ctx.general.is_empty() {
        return Ok(None);
    }
    let mut r =
        GeneralReading { values: Vec::new(), fields: Default::default(), rise: f64::NEG_INFINITY, what: String::new() };
    for (i, set) in ctx.general.iter().enumerate() {
        let m = set.metric();
        let v = set.measure(model, ctx.tokenizer).map_err(|e| RunError::Forgetting(e.to_string()))?;
        let rise = base.get(i).map_or(0.0, |&b| relative_rise(b, v, m.higher_is_better));
        r.fields.insert(format!("general_{}_{}", set.name, m.name), v);
        r.fields.insert(format!("general_{}_rise", set.name), rise);
        if rise > r.rise {
            r.rise = rise;
            r.what = format!("{} {}", set.name, m.name);
        }
        r.values.push(v);
    }
    r.fields.insert("general_rise".into(), r.rise);
    Ok(Some(r))
}

/// `wikitext2 perplexity 20.6100 (3.2 % worse)` for each set (against the base model).
pub fn general_text(ctx: &LoopCtx, g: &GeneralReading) -> String {
    let parts: Vec<String> = ctx
        .general
        .iter()
        .zip(&g.values)
        .map(|(set, v)| {
            let rise = g.fields.get(&format!("general_{}_rise", set.name)).copied().unwrap_or(0.0);
            let how = if rise > 0.0 { "worse" } else { "better" };
            if rise == 0.0 {
                format!("{} {} {v:.4}", set.name, set.metric().name)
            } else {
                format!("{} {} {v:.4} ({:.1} % {how})", set.name, set.metric().name, 100.0 * rise.abs())
            }
        })
        .collect();
    parts.join(", ")
}
