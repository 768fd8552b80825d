//! The end of a run: restore the best evaluation's weights, measure them, write the adapter (or
//! model), the summary and the report.
use tuneguard_model::LoadedModel;

use crate::prepare::Prepared;
use crate::train_loop::{LoopCtx, LoopState};
use crate::types::{EarlyStoppingSummary, Progress, Result, Summary};
use crate::write_atomic;
use tuneguard_records::{ForgettingSummary, GeneralSetSummary};
use tuneguard_train::checkpoint;
use tuneguard_train::eval::evaluate;

pub fn finish(
    ctx: &LoopCtx,
    loaded: &mut LoadedModel,
    st: LoopState,
    prepared: &Prepared,
    trainable: usize,
    resumed_from: Option<u64>,
    progress: &mut dyn Progress,
) -> Result<Summary> {
    let (recipe, out) = (ctx.recipe, ctx.out);
    let best = st.tracker.best();
    let mut restored_best = false;
    if recipe.early_stopping.restore_best {
        if let Some((best_step, value)) = best {
            if best_step != st.step {
                let dir = checkpoint::path(out, best_step);
                let saved = checkpoint::read_tensors(&dir)?.params;
                crate::set_params(&mut loaded.model, recipe.is_full(), saved, &dir)?;
                progress.message(&format!(
                    "restored the best weights: step {best_step} ({} {value:.4})",
                    recipe.early_stopping.metric
                ));
            }
            restored_best = true;
        }
    }
    let final_metrics = if ctx.val.is_empty() { None } else { Some(evaluate(&loaded.model, ctx.val)?) };
    let forgetting = forgetting_summary(ctx, &loaded.model, &st, progress)?;
    if recipe.is_full() {
        tuneguard_model::save::save_hf_dir(loaded, &out.join("model"))?;
    } else {
        tuneguard_model::lora::save_adapter(
            &loaded.model,
            &out.join("adapter"),
            &ctx.config.base_model_name,
            recipe.lora.dropout as f64,
        )?;
    }
    let es = &recipe.early_stopping;
    let stop_reason =
        st.stop_reason.clone().unwrap_or_else(|| format!("completed the planned {} steps", st.total_steps));
    let early_stopping = (!ctx.val.is_empty()).then(|| EarlyStoppingSummary {
        enabled: ctx.config.early_stopping,
        metric: es.metric,
        direction: ctx.config.direction,
        patience: es.patience,
        min_delta: es.min_delta,
        best_step: best.map(|b| b.0),
        best_value: best.map(|b| b.1),
        stopped_step: st.step,
        stop_reason: stop_reason.clone(),
        restored_best,
    });
    let d = &prepared.summary;
    let summary = Summary {
        run: ctx.record.clone(),
        train_examples: d.train_examples,
        val_examples: d.val_examples,
        rejected_rows: d.rejected,
        data: {
            let mut d = d.clone();
            if let Some(r) = d.replay.as_mut() {
                r.used = st.replay_used;
            }
            d
        },
        trainable_parameters: trainable,
        steps: st.step,
        total_steps: st.total_steps,
        tokens: st.tokens_total,
        seconds: st.train_seconds,
        tokens_per_s: st.tokens_total as f64 / st.train_seconds.max(1e-9),
        val_loss_base: st.base_eval.map(|m| m.loss),
        val_loss_final: final_metrics.map(|m| m.loss),
        final_train_loss: st.last_loss,
        final_metrics,
        early_stopping,
        alarms: st.alarms.clone(),
        warnings: ctx.warnings.to_vec(),
        lints: prepared.lints.clone(),
        resumed_from_step: resumed_from,
        forgetting,
        legacy_tokenize: None,
        legacy_val_tokenize: None,
    };
    write_atomic(
        &out.join(tuneguard_records::SUMMARY_FILE),
        &serde_json::to_string_pretty(&summary).unwrap_or_default(),
    )?;
    let keep: Vec<u64> = best.map(|b| b.0).into_iter().collect();
    checkpoint::prune(out, recipe.train.keep_checkpoints.max(1), &keep);
    if st.stop_reason.is_none() && st.step < st.total_steps {
        tracing::warn!("the loop ended before its planned steps without a reason");
    }
    Ok(summary)
}

/// The general sets measured with the written weights, against the base (none without
/// `[forgetting]` sets).
fn forgetting_summary(
    ctx: &LoopCtx,
    model: &tuneguard_model::llama::Llama,
    st: &LoopState,
    progress: &mut dyn Progress,
) -> Result<Option<ForgettingSummary>> {
    let Some(g) = crate::forgetting::measure_general(ctx, model, &st.general_base)? else { return Ok(None) };
    progress.message(&format!("written weights: general {}", crate::forgetting::general_text(ctx, &g)));
    let f = &ctx.recipe.forgetting;
    let sets = ctx
        .general
        .iter()
        .enumerate()
        .map(|(i, set)| GeneralSetSummary {
            name: set.name.clone(),
            metric: set.metric().name.to_string(),
            base: st.general_base.get(i).copied().unwrap_or(f64::NAN),
            final_value: g.values.get(i).copied(),
            rise: g.fields.get(&format!("general_{}_rise", set.name)).copied(),
            worst_rise: st.general_worst.get(i).map(|w| w.0).filter(|r| r.is_finite()),
            worst_step: st.general_worst.get(i).map(|w| w.1),
        })
        .collect();
    Ok(Some(ForgettingSummary {
        max_rise: f.max_rise,
        stop: f.stop,
        sets,
        rise: Some(g.rise),
        alarmed: st.alarms.iter().any(|a| a.kind == tuneguard_train::guards::forgetting::ForgettingAlarm::NAME),
    }))
}
