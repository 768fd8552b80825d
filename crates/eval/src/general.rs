//! General-domain sets measured during training (the forgetting guard): a suite task read and
//! tokenized once, then measured on the model being trained at every evaluation. Perplexity
//! tasks give `perplexity`; multiple-choice tasks give `accuracy`. Generation tasks are refused
//! here (greedy decoding at every evaluation would be the slow part of a run).
use tuneguard_metrics::info::{self, MetricInfo};
use tuneguard_model::llama::Llama;
use tuneguard_model::tokenizer::TextTokenizer;

use crate::choice::{self, ChoiceSpec, Item};
use crate::perplexity;
use crate::suite::TaskConfig;
use crate::texts::read_texts;
use crate::{EvalError, Result};

enum Prepared {
    Perplexity { tokens: Vec<u32>, window: usize, stride: usize },
    Choice { items: Vec<Item>, spec: Box<ChoiceSpec>, path: std::path::PathBuf },
}

/// One general-domain set, ready to measure.
pub struct GeneralSet {
    pub name: String,
    prepared: Prepared,
}

impl GeneralSet {
    /// Reads and tokenizes `task`'s data for a model with a context of `context` tokens.
    ///
    /// # Errors
    /// `Setting` for a generation task or a window above `context`; bad data as the task's
    /// reader reports it.
    pub fn prepare(task: &TaskConfig, tokenizer: &TextTokenizer, context: usize) -> Result<Self> {
        task.check()?;
        if let TaskConfig::Perplexity(t) = task {
            if t.window > context {
                return Err(EvalError::Setting {
                    flag: "window",
                    reason: format!("{} tokens exceed the model's context length ({context} tokens)", t.window),
                });
            }
        }
        let prepared = match task {
            TaskConfig::Perplexity(t) => {
                let texts = read_texts(&t.data, &t.field)?;
                let mut tokens = tokenizer.encode(&texts.join("\n\n"), false)?;
                if t.max_tokens > 0 {
                    tokens.truncate(t.max_tokens);
                }
                Prepared::Perplexity { tokens, window: t.window, stride: t.stride() }
            }
            TaskConfig::MultipleChoice(t) => {
                let spec = t.spec()?;
                let mut items = choice::read_items(&t.data, &spec)?;
                if t.max_items > 0 {
                    items.truncate(t.max_items);
                }
                Prepared::Choice { items, spec: Box::new(spec), path: t.data.clone() }
            }
            TaskConfig::Generation(_) => {
                return Err(EvalError::Setting {
                    flag: "forgetting.task",
                    reason: format!("`{}` is a generation task; use a perplexity or multiple_choice task", task.name()),
                })
            }
        };
        Ok(GeneralSet { name: task.name(), prepared })
    }

    pub fn metric(&self) -> MetricInfo {
        match self.prepared {
            Prepared::Perplexity { .. } => info::PERPLEXITY,
            Prepared::Choice { .. } => info::ACCURACY,
        }
    }

    /// The metric on `model`.
    ///
    /// # Errors
    /// As [`perplexity::perplexity`] or [`choice::evaluate`].
    pub fn measure(&self, model: &Llama, tokenizer: &TextTokenizer) -> Result<f64> {
        match &self.prepared {
            Prepared::Perplexity { tokens, window, stride } => {
                Ok(perplexity::perplexity(model, tokens, *window, *stride, None, &|| ())?.perplexity)
            }
            Prepared::Choice { items, spec, path } => {
                Ok(choice::evaluate(model, tokenizer, path, items, spec, None, &|| ())?.accuracy)
            }
        }
    }
}
