//! Stage 4: validation examples that repeat training ones (exactly or nearly) are removed and
//! reported (`data.leakage_check`; [`tuneguard_data::leakage`]).
use tuneguard_data::leakage::{example_text, find_leaks, LeakKind, LeakRows, LeakageOptions};

use super::{Rows, SplitSets};
use crate::prepare::{DataSummary, LeakReport};
use crate::recipe::Recipe;
use crate::Progress;

/// Removes the leaked validation examples (when the check is on and there is a validation set).
pub(crate) fn remove(recipe: &Recipe, mut sets: SplitSets, progress: &mut dyn Progress) -> SplitSets {
    if recipe.data.leakage_check && !sets.val.examples.is_empty() {
        remove_leaks(recipe, &sets.train, &mut sets.val, &mut sets.trail.summary, progress);
    }
    sets
}

fn remove_leaks(recipe: &Recipe, train: &Rows, val: &mut Rows, s: &mut DataSummary, progress: &mut dyn Progress) {
    let opts = LeakageOptions {
        near_threshold: recipe.data.near_dup_threshold,
        seed: recipe.train.seed,
        ..Default::default()
    };
    let lens = |rows: &Rows| rows.at.iter().map(|a| a.instruction_len).collect::<Vec<_>>();
    let (train_lens, val_lens) = (lens(train), lens(val));
    let leaks = find_leaks(
        LeakRows { examples: &train.examples, instruction_lens: &train_lens },
        LeakRows { examples: &val.examples, instruction_lens: &val_lens },
        &opts,
    );
    if leaks.is_empty() {
        return;
    }
    for l in &leaks {
        match l.kind {
            LeakKind::Exact => s.leaked_exact += 1,
            LeakKind::Near => s.leaked_near += 1,
        }
        if s.leaks.len() < 20 {
            let text: String = example_text(&val.examples[l.val_index]).chars().take(160).collect();
            s.leaks.push(LeakReport {
                kind: format!("{:?}", l.kind).to_lowercase(),
                jaccard: l.jaccard,
                shared: l.shared,
                val_row: val.at[l.val_index].to_string(),
                train_row: train.at[l.train_index].to_string(),
                text,
            });
        }
    }
    progress.message(&format!(
        "leakage: removed {} validation examples that repeat training ones ({} exact, {} near-duplicate)",
        leaks.len(),
        s.leaked_exact,
        s.leaked_near
    ));
    for r in s.leaks.iter().take(3) {
        let of = r.shared.map_or(String::new(), |k| format!(" of the {}", k.rest_name()));
        progress
            .message(&format!("  {} ({}, Jaccard {:.2}{of}) repeats {}", r.val_row, r.kind, r.jaccard, r.train_row));
    }
    let drop: std::collections::HashSet<usize> = leaks.iter().map(|l| l.val_index).collect();
    val.retain_index(|i| !drop.contains(&i));
}
