//! Stage 5: the training set's final make-up: at most `data.max_train_examples` examples, then
//! the `[augment]` copies (system-prompt variation; never of validation examples).
use super::{Loc, SplitSets};
use crate::recipe::Recipe;

/// Limits and augments the training examples.
pub(crate) fn augment(recipe: &Recipe, mut sets: SplitSets) -> SplitSets {
    let (train, summary) = (&mut sets.train, &mut sets.trail.summary);
    let limit = recipe.data.max_train_examples;
    if limit > 0 && train.examples.len() > limit {
        summary.unused = train.examples.len() - limit;
        train.examples.truncate(limit);
        train.at.truncate(limit);
    }
    let a = &recipe.augment;
    if a.system_prompt_copies > 0 {
        let copies = tuneguard_data::augment::system_prompt_variants(
            &train.examples,
            a.system_prompt_copies,
            &a.system_prompts,
            recipe.train.seed,
        );
        summary.augmented = copies.len();
        summary.augmentation = Some(format!(
            "{} cop{} of each chat example with a varied system prompt ({} prompts)",
            a.system_prompt_copies,
            if a.system_prompt_copies == 1 { "y" } else { "ies" },
            if a.system_prompts.is_empty() {
                tuneguard_data::augment::DEFAULT_SYSTEM_PROMPTS.len()
            } else {
                a.system_prompts.len()
            }
        ));
        for (i, e) in copies {
            let at = Loc { augmented: true, ..train.at[i].clone() };
            train.push(e, at);
        }
    }
    sets
}
