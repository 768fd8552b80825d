//! The run's data pipeline as typed stages, each a function from one stage's output to the next:
//!
//! ```text
//! load::load        recipe            → LoadedSets   (rejected.jsonl written, long rows cut)
//! audit::audit      LoadedSets        → AuditedSets  (quarantined rows dropped)
//! split::split      AuditedSets       → SplitSets    (train/validation, each row with its file:line)
//! leakage::remove   SplitSets         → SplitSets    (validation rows that repeat training ones)
//! augment::augment  SplitSets         → SplitSets    (data.max_train_examples, augmented copies)
//! tokenize::tokenize SplitSets        → Prepared     (pre-flight lint, chat template, loss masks)
//! ```
//!
//! A new stage (bias mitigation, replay mixing, a poison scan) is one more function between two
//! of these. Every stage carries the [`Trail`]: the data summary and the rejected rows so far.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use tuneguard_data::{Example, LoadedData, Rejected};

use crate::prepare::DataSummary;

pub(crate) mod audit;
pub(crate) mod augment;
pub(crate) mod leakage;
pub(crate) mod load;
pub(crate) mod split;
pub(crate) mod tokenize;

/// What every stage passes on: the data summary, the rows rejected so far (in `rejected.jsonl`)
/// and that file's path.
pub(crate) struct Trail {
    pub summary: DataSummary,
    pub rejected: Vec<Rejected>,
    pub rejected_path: PathBuf,
}

/// The loaded files: training, and the validation file if any. `cut_*` map the lines of rows cut
/// before tokenizing to their bytes of text; `max_bytes` is that cut.
pub(crate) struct LoadedSets {
    pub train: LoadedData,
    pub val: Option<LoadedData>,
    pub cut_train: HashMap<usize, usize>,
    pub cut_val: HashMap<usize, usize>,
    pub max_bytes: Option<usize>,
    pub trail: Trail,
}

/// [`LoadedSets`] after the row audit: quarantined rows are gone.
pub(crate) struct AuditedSets(pub LoadedSets);

/// The training and validation examples, each with where it came from.
pub(crate) struct SplitSets {
    pub train: Rows,
    pub val: Rows,
    pub max_bytes: Option<usize>,
    pub trail: Trail,
}

#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub path: Rc<Path>,
    pub line: usize,
    /// The row's bytes of text, when it was cut before tokenizing.
    pub cut_from: Option<usize>,
    /// An augmented copy of the row.
    pub augmented: bool,
    /// The byte length of the instruction at the start of the user turn
    /// ([`LoadedData::instruction_lens`]).
    pub instruction_len: Option<usize>,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Examples with where each came from.
#[derive(Default)]
pub(crate) struct Rows {
    pub examples: Vec<Example>,
    pub at: Vec<Loc>,
}

impl Rows {
    /// The file's examples; `cut` maps the lines of rows cut before tokenizing to their bytes.
    pub fn of(data: LoadedData, cut: &HashMap<usize, usize>) -> Rows {
        let path: Rc<Path> = Rc::from(data.path.as_path());
        let at = data
            .lines
            .iter()
            .zip(&data.instruction_lens)
            .map(|(&line, &instruction_len)| Loc {
                path: path.clone(),
                line,
                cut_from: cut.get(&line).copied(),
                augmented: false,
                instruction_len,
            })
            .collect();
        Rows { at, examples: data.examples }
    }

    pub fn push(&mut self, example: Example, at: Loc) {
        self.examples.push(example);
        self.at.push(at);
    }

    /// Keeps the rows whose index `keep` accepts.
    pub fn retain_index(&mut self, keep: impl Fn(usize) -> bool) {
        let rows = std::mem::take(self);
        for (i, (e, a)) in rows.examples.into_iter().zip(rows.at).enumerate() {
            if keep(i) {
                self.push(e, a);
            }
        }
    }
}
