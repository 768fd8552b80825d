//! Stage 3: training and validation sets, from the validation file or a seeded (optionally
//! stratified) split of the training file.
use std::collections::HashMap;

use tuneguard_data::load::LoadedData;
use tuneguard_data::split::{read_field_values, split_indices, ValSize};

use super::{AuditedSets, Rows, SplitSets};
use crate::recipe::{Recipe, ValSizeSpec};
use crate::{Result, RunError};

/// The training and validation sets, each row with its file and line.
///
/// # Errors
/// `Split` for a validation size the data cannot give or a missing stratification field.
pub(crate) fn split(recipe: &Recipe, AuditedSets(sets): AuditedSets) -> Result<SplitSets> {
    let (train, val, source) = match sets.val {
        Some(v) => {
            let file = v.path.display().to_string();
            (Rows::of(sets.train, &sets.cut_train), Rows::of(v, &sets.cut_val), file)
        }
        None => split_file(recipe, sets.train, &sets.cut_train)?,
    };
    let mut trail = sets.trail;
    trail.summary.rejected = trail.rejected.len();
    trail.summary.val_source = source;
    Ok(SplitSets { train, val, max_bytes: sets.max_bytes, trail })
}

/// (train, val, source) by the recipe's split rule; `cut` as in [`Rows::of`].
fn split_file(recipe: &Recipe, data: LoadedData, cut: &HashMap<usize, usize>) -> Result<(Rows, Rows, String)> {
    let n = data.examples.len();
    let size = match recipe.data.val_size {
        ValSizeSpec::Count(0) => return Ok((Rows::of(data, cut), Rows::default(), "none".into())),
        ValSizeSpec::Count(asked) if asked >= n => {
            return Err(RunError::Split(format!(
                "data.val_size = {asked} asks for {asked} validation examples, but {} has only {n} usable examples \
                 (after rejected and quarantined rows), which would leave none for training; hold out fewer than {n}, \
                 or give a fraction (data.val_size = 0.1)",
                data.path.display()
            )))
        }
        ValSizeSpec::Count(k) => ValSize::Count(k),
        ValSizeSpec::Fraction(f) => ValSize::Fraction(f),
    };
    let strata = match &recipe.data.stratify_by {
        None => None,
        Some(field) => {
            let values = read_field_values(&data.path, field)?;
            if values.is_empty() {
                return Err(RunError::Split(format!(
                    "data.stratify_by: no record of {} has a `{field}` field",
                    data.path.display()
                )));
            }
            Some(data.lines.iter().map(|l| values.get(l).cloned()).collect::<Vec<_>>())
        }
    };
    let (_, vi) =
        split_indices(n, size, recipe.train.seed, strata.as_deref()).map_err(|e| RunError::Split(e.to_string()))?;
    let mut is_val = vec![false; n];
    vi.iter().for_each(|&i| is_val[i] = true);
    let (mut train, mut val) = (Rows::default(), Rows::default());
    let all = Rows::of(data, cut);
    for (i, (e, a)) in all.examples.into_iter().zip(all.at).enumerate() {
        if is_val[i] {
            val.push(e, a);
        } else {
            train.push(e, a);
        }
    }
    Ok((train, val, "split".into()))
}
