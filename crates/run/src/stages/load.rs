//! Stage 1: load the training file (and the validation file), list rejected rows, say which
//! record shape each file is read with, and cut over-long rows before anything holds them whole.
use std::collections::HashMap;

use tuneguard_data::load::{load_file, LoadOptions, LoadedData};
use tuneguard_data::tokenize::ChatTokenizer;
use tuneguard_data::{Rejected, ShapeSource};

use super::{LoadedSets, Trail};
use crate::prepare::DataSummary;
use crate::recipe::Recipe;
use crate::{Progress, Result};

/// Loads the recipe's data files into [`LoadedSets`], writing `out/rejected.jsonl` first.
///
/// # Errors
/// Data errors (unreadable file, unknown shape, too many rejected rows), I/O errors.
pub(crate) fn load(
    recipe: &Recipe,
    tok: &ChatTokenizer<'_>,
    out: &std::path::Path,
    progress: &mut dyn Progress,
) -> Result<LoadedSets> {
    let mut data = load_one(recipe, &recipe.data.train)?;
    let mut summary = DataSummary { rows_read: data.stats.rows, ..Default::default() };
    let mut rejected = data.rejected.clone();
    let mut val_data = match &recipe.data.val_file {
        Some(path) => {
            let v = load_one(recipe, path)?;
            summary.rows_read += v.stats.rows;
            rejected.extend(v.rejected.iter().cloned());
            Some(v)
        }
        None => None,
    };
    // Rejected rows are reported and written before any check can stop the run.
    let rejected_path = out.join("rejected.jsonl");
    tuneguard_data::rejected::write_rejected(&rejected_path, &rejected)?;
    report_rejected(&rejected, &rejected_path, progress);
    report_shapes(&std::iter::once(&data).chain(val_data.as_ref()).collect::<Vec<_>>(), &mut summary, progress);
    data.check(recipe.data.max_reject_fraction)?;
    if let Some(v) = &val_data {
        v.check(recipe.data.max_reject_fraction)?;
    }
    // Over-long rows are cut before anything else holds them whole.
    let max_bytes = tok.max_example_bytes(recipe.data.max_len);
    let cut_train = cut_long_rows(&mut data, max_bytes);
    let cut_val = val_data.as_mut().map(|v| cut_long_rows(v, max_bytes)).unwrap_or_default();
    summary.cut_before_tokenizing = cut_train.len() + cut_val.len();
    Ok(LoadedSets {
        train: data,
        val: val_data,
        cut_train,
        cut_val,
        max_bytes,
        trail: Trail { summary, rejected, rejected_path },
    })
}

fn load_one(recipe: &Recipe, path: &std::path::Path) -> Result<LoadedData> {
    let opts = LoadOptions {
        format: recipe.data.format.clone(),
        file_kind: None,
        max_reject_fraction: recipe.data.max_reject_fraction,
        keep_empty: true,
    };
    Ok(load_file(path, &opts)?)
}

/// Where an example came from.
/// Cuts the examples with more than `max_bytes` bytes of text ([`Example::cut_to`]); returns
/// the line and original bytes of each.
fn cut_long_rows(data: &mut LoadedData, max_bytes: Option<usize>) -> HashMap<usize, usize> {
    let mut cut = HashMap::new();
    let Some(max) = max_bytes else { return cut };
    for (e, &line) in data.examples.iter_mut().zip(&data.lines) {
        if let Some(short) = e.cut_to(max) {
            cut.insert(line, e.text_bytes());
            *e = short;
        }
    }
    cut
}

fn report_rejected(rejected: &[Rejected], path: &std::path::Path, progress: &mut dyn Progress) {
    for r in rejected.iter().take(5) {
        progress.message(&format!("rejected {r}"));
    }
    if rejected.len() > 5 {
        progress.message(&format!("... {} rejected rows in all, see {}", rejected.len(), path.display()));
    }
}

/// Says which record shape each file is read with, and warns when most rows do not fit a
/// detected one.
fn report_shapes(files: &[&LoadedData], summary: &mut DataSummary, progress: &mut dyn Progress) {
    for d in files {
        let shape = d.shape();
        if matches!(shape.source, ShapeSource::Detected(_)) {
            progress.message(&shape.describe());
        }
        let set_it = "data.format (e.g. data.format = { kind = \"instruction\" }; kinds: instruction, \
                      prompt_completion, messages, text)";
        if let Some(w) = shape.warning(set_it) {
            progress.message(&format!("warning: {w}"));
        }
        summary.shapes.push(shape);
    }
}
