//! Evaluation tasks as settings (a suite file's `[[task]]` tables, or one task from the
//! command line) and running them on a loaded model.
//!
//! A suite is TOML: optional `bootstrap` (resamples, 0 = no intervals) and `seed`, then one
//! `[[task]]` table per task with `kind = "perplexity" | "multiple_choice" | "generation"`
//! (`classification` is another name for `multiple_choice`). Every kind has its own keys
//! (below, with their defaults); an unknown key or kind is an error naming it. `data` paths are
//! relative to the suite file.
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tuneguard_metrics::bootstrap::{Bootstrap, Interval};
use tuneguard_metrics::info::{self, MetricInfo};
use tuneguard_model::LoadedModel;

use crate::choice::{self, ChoiceReport, ChoiceSpec, Choices};
use crate::generation::{self, GenerationReport, GenerationSpec};
use crate::perplexity::{self, PerplexityReport};
use crate::rows::Template;
use crate::texts::read_texts;
use crate::{EvalError, Result};

/// A suite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    /// Bootstrap resamples for the 95 % intervals (0 = none).
    #[serde(default = "default_bootstrap")]
    pub bootstrap: usize,
    #[serde(default)]
    pub seed: u64,
    pub task: Vec<TaskConfig>,
}

fn default_bootstrap() -> usize {
    1000
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskConfig {
    Perplexity(PerplexityTask),
    #[serde(alias = "classification")]
    MultipleChoice(ChoiceTask),
    Generation(GenerationTask),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerplexityTask {
    pub name: Option<String>,
    /// JSONL (text in `field`) or plain-text file.
    pub data: PathBuf,
    #[serde(default = "default_text_field")]
    pub field: String,
    /// Tokens per window.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Tokens each window moves on (default: half the window).
    pub stride: Option<usize>,
    /// Only the first N tokens (0 = all).
    #[serde(default)]
    pub max_tokens: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChoiceTask {
    pub name: Option<String>,
    pub data: PathBuf,
    /// Jinja template of the prompt over the row's fields (lm-eval `doc_to_text`).
    pub prompt: String,
    /// The same choices for every row...
    pub choices: Option<Vec<String>>,
    /// ...or a row field holding a list of choices.
    pub choices_field: Option<String>,
    /// Field of the right choice (index or text).
    #[serde(default = "default_label")]
    pub label: String,
    /// Between the prompt and each choice (lm-eval `target_delimiter`).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    pub id_field: Option<String>,
    /// Only the first N rows (0 = all).
    #[serde(default)]
    pub max_items: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationTask {
    pub name: Option<String>,
    pub data: PathBuf,
    /// Jinja template of the prompt over the row's fields.
    pub prompt: String,
    /// Field of the reference answer (a string or a list of strings).
    pub reference: String,
    /// Send the prompt as a user message through the chat template.
    #[serde(default = "default_true")]
    pub chat: bool,
    pub system: Option<String>,
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    pub id_field: Option<String>,
    #[serde(default)]
    pub max_items: usize,
}

fn default_text_field() -> String {
    "text".into()
}
fn default_window() -> usize {
    1024
}
fn default_label() -> String {
    "label".into()
}
fn default_delimiter() -> String {
    " ".into()
}
fn default_true() -> bool {
    true
}
fn default_max_new_tokens() -> usize {
    64
}

/// Reads a suite file; `data` paths become relative to its folder.
///
/// # Errors
/// `Io`; `Suite` for TOML that is not a suite (unknown key or kind, missing key), with the
/// file and the parser's position; `Setting` for a task without tasks or with both or neither of
/// `choices` / `choices_field`.
pub fn read_suite(path: &Path) -> Result<Suite> {
    let text = std::fs::read_to_string(path).map_err(|err| EvalError::Io { path: path.to_path_buf(), err })?;
    let mut suite: Suite = toml::from_str(&text)
        .map_err(|e| EvalError::Suite { path: path.to_path_buf(), reason: e.to_string().trim_end().to_string() })?;
    if suite.task.is_empty() {
        return Err(EvalError::Suite { path: path.to_path_buf(), reason: "no [[task]]".into() });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    for t in &mut suite.task {
        let data = t.data_mut();
        if data.is_relative() {
            *data = dir.join(&*data);
        }
        t.check()?;
    }
    Ok(suite)
}

impl TaskConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            TaskConfig::Perplexity(_) => "perplexity",
            TaskConfig::MultipleChoice(_) => "multiple_choice",
            TaskConfig::Generation(_) => "generation",
        }
    }

    pub fn data(&self) -> &Path {
        match self {
            TaskConfig::Perplexity(t) => &t.data,
            TaskConfig::MultipleChoice(t) => &t.data,
            TaskConfig::Generation(t) => &t.data,
        }
    }

    pub fn data_mut(&mut self) -> &mut PathBuf {
        match self {
            TaskConfig::Perplexity(t) => &mut t.data,
            TaskConfig::MultipleChoice(t) => &mut t.data,
            TaskConfig::Generation(t) => &mut t.data,
        }
    }

    /// The task's name: `name`, or the data file's stem.
    pub fn name(&self) -> String {
        let given = match self {
            TaskConfig::Perplexity(t) => &t.name,
            TaskConfig::MultipleChoice(t) => &t.name,
            TaskConfig::Generation(t) => &t.name,
        };
        given.clone().unwrap_or_else(|| {
            self.data().file_stem().map_or_else(|| self.kind().to_string(), |s| s.to_string_lossy().into_owned())
        })
    }

    /// Checks the settings that need no file or model.
    ///
    /// # Errors
    /// `Setting` naming the key.
    pub fn check(&self) -> Result<()> {
        match self {
            TaskConfig::Perplexity(t) => perplexity::windows(0, t.window, t.stride()).map(|_| ()),
            TaskConfig::MultipleChoice(t) => t.spec().map(|_| ()),
            TaskConfig::Generation(t) => t.spec().map(|_| ()),
        }
    }
}

impl PerplexityTask {
    pub fn stride(&self) -> usize {
        self.stride.unwrap_or((self.window / 2).max(1))
    }
}

impl ChoiceTask {
    /// # Errors
    /// `Setting` for a bad template or choices given both or neither way.
    pub fn spec(&self) -> Result<ChoiceSpec> {
        let choices = match (&self.choices, &self.choices_field) {
            (Some(c), None) => Choices::Fixed(c.clone()),
            (None, Some(f)) => Choices::Field(f.clone()),
            (Some(_), Some(_)) => {
                return Err(EvalError::Setting { flag: "choices", reason: "give `choices` or `choices_field`, not both".into() })
            }
            (None, None) => {
                return Err(EvalError::Setting {
                    flag: "choices",
                    reason: "missing: give the choices (`choices = [\"negative\", \"positive\"]`, --choices) or the field holding them (`choices_field`, --choices-field)".into(),
                })
            }
        };
        if let Choices::Fixed(c) = &choices {
            if c.len() < 2 {
                return Err(EvalError::Setting {
                    flag: "choices",
                    reason: format!("needs at least two choices, got {}", c.len()),
                });
            }
            if let Some(i) = c.iter().position(|x| x.trim().is_empty()) {
                return Err(EvalError::Setting { flag: "choices", reason: format!("choice {i} is empty") });
            }
            if let Some((i, x)) = c.iter().enumerate().find(|(i, x)| c[..*i].contains(x)) {
                return Err(EvalError::Setting {
                    flag: "choices",
                    reason: format!("choice {i} ({x:?}) repeats an earlier one"),
                });
            }
        }
        Ok(ChoiceSpec {
            prompt: Template::new("prompt", &self.prompt)?,
            choices,
            label_field: self.label.clone(),
            delimiter: self.delimiter.clone(),
            id_field: self.id_field.clone(),
        })
    }
}

impl GenerationTask {
    /// # Errors
    /// `Setting` for a bad template or `max_new_tokens` 0.
    pub fn spec(&self) -> Result<GenerationSpec> {
        if self.max_new_tokens == 0 {
            return Err(EvalError::Setting { flag: "max_new_tokens", reason: "must be at least 1".into() });
        }
        Ok(GenerationSpec {
            prompt: Template::new("prompt", &self.prompt)?,
            reference_field: self.reference.clone(),
            chat: self.chat,
            system: self.system.clone(),
            max_new_tokens: self.max_new_tokens,
            id_field: self.id_field.clone(),
        })
    }
}

/// What a task measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum TaskReport {
    Perplexity(PerplexityReport),
    MultipleChoice(ChoiceReport),
    Generation(GenerationReport),
}

/// A headline metric of a task.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Headline {
    pub metric: MetricInfo,
    pub value: f64,
    pub interval: Option<Interval>,
}

impl TaskReport {
    /// The task's main metrics, the first being the one to follow.
    pub fn headlines(&self) -> Vec<Headline> {
        let h = |metric, value, interval| Headline { metric, value, interval };
        match self {
            TaskReport::Perplexity(r) => vec![h(info::PERPLEXITY, r.perplexity, r.interval), h(info::NLL, r.nll, None)],
            TaskReport::MultipleChoice(r) => vec![
                h(info::ACCURACY, r.accuracy, r.accuracy_interval),
                h(info::ACCURACY_NORM, r.acc_norm, r.acc_norm_interval),
                h(info::F1, r.f1, r.f1_interval),
            ],
            TaskReport::Generation(r) => vec![
                h(info::EXACT_MATCH, r.exact_match, r.exact_match_interval),
                h(info::TOKEN_F1, r.token_f1, r.token_f1_interval),
                h(info::ROUGE_L, r.rouge_l, r.rouge_l_interval),
            ],
        }
    }
}

/// A task's result with what it ran on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskResult {
    pub name: String,
    pub task: &'static str,
    pub data: PathBuf,
    /// Items (rows) scored; for perplexity the rows of text.
    pub rows: usize,
    pub seconds: f64,
    /// Scored tokens per second (perplexity) or items per second, as `throughput_unit` says.
    pub throughput: f64,
    pub throughput_unit: &'static str,
    #[serde(flatten)]
    pub report: TaskReport,
}

/// Progress of a long task (a bar in the CLI).
pub trait Progress: Sync {
    fn start(&self, label: &str, total: u64);
    fn tick(&self);
    fn finish(&self);
}

/// No progress shown.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &str, _: u64) {}
    fn tick(&self) {}
    fn finish(&self) {}
}

/// Reads a task's data and runs it on `m`.
///
/// # Errors
/// Bad data (`Io`, `Row`, `Empty`), settings (`Setting`), `Model`.
pub fn run_task(
    m: &LoadedModel,
    task: &TaskConfig,
    bootstrap: Option<Bootstrap>,
    progress: &dyn Progress,
) -> Result<TaskResult> {
    let name = task.name();
    let tick = || progress.tick();
    let t0 = Instant::now();
    let (rows, report, units) = match task {
        TaskConfig::Perplexity(t) => {
            let texts = read_texts(&t.data, &t.field)?;
            let mut tokens = m.tokenizer.encode(&texts.join("\n\n"), false)?;
            if t.max_tokens > 0 {
                tokens.truncate(t.max_tokens);
            }
            let n = perplexity::windows(tokens.len(), t.window, t.stride())?.len();
            progress.start(&format!("{name}: window"), n as u64);
            let r = perplexity::perplexity(&m.model, &tokens, t.window, t.stride(), bootstrap, &tick)?;
            let scored = r.tokens_scored as f64;
            (texts.len(), TaskReport::Perplexity(r), scored)
        }
        TaskConfig::MultipleChoice(t) => {
            let spec = t.spec()?;
            let mut items = choice::read_items(&t.data, &spec)?;
            truncate(&mut items, t.max_items);
            progress.start(&format!("{name}: item"), items.len() as u64);
            let r = choice::evaluate(&m.model, &m.tokenizer, &t.data, &items, &spec, bootstrap, &tick)?;
            (items.len(), TaskReport::MultipleChoice(r), items.len() as f64)
        }
        TaskConfig::Generation(t) => {
            let spec = t.spec()?;
            let mut items = generation::read_items(&t.data, &spec)?;
            truncate(&mut items, t.max_items);
            progress.start(&format!("{name}: item"), items.len() as u64);
            let r = generation::evaluate(m, &items, &spec, bootstrap, &tick)?;
            (items.len(), TaskReport::Generation(r), items.len() as f64)
        }
    };
    progress.finish();
    let seconds = t0.elapsed().as_secs_f64();
    Ok(TaskResult {
        name,
        task: task.kind(),
        data: task.data().to_path_buf(),
        rows,
        seconds,
        throughput: units / seconds.max(1e-9),
        throughput_unit: if matches!(task, TaskConfig::Perplexity(_)) { "tokens/s" } else { "items/s" },
        report,
    })
}

fn truncate<T>(items: &mut Vec<T>, max: usize) {
    if max > 0 {
        items.truncate(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(text: &str) -> std::result::Result<Suite, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let p = dir.path().join("s.toml");
        std::fs::write(&p, text).map_err(|e| e.to_string())?;
        read_suite(&p).map_err(|e| e.to_string())
    }

    #[test]
    fn a_suite_reads_each_kind_and_names_what_is_wrong() -> std::result::Result<(), String> {
        let s = suite(
            "bootstrap = 0\n[[task]]\nkind = \"perplexity\"\ndata = \"w.jsonl\"\nwindow = 512\n\
             [[task]]\nkind = \"classification\"\nname = \"sst2\"\ndata = \"/abs/sst2.jsonl\"\nprompt = \"{{text}}\"\nchoices = [\"negative\", \"positive\"]\n\
             [[task]]\nkind = \"generation\"\ndata = \"g.jsonl\"\nprompt = \"{{instruction}}\"\nreference = \"response\"\n",
        )?;
        assert_eq!(s.bootstrap, 0);
        let names: Vec<(String, &str)> = s.task.iter().map(|t| (t.name(), t.kind())).collect();
        assert_eq!(names, [("w".into(), "perplexity"), ("sst2".into(), "multiple_choice"), ("g".into(), "generation")]);
        assert!(s.task[0].data().ends_with("w.jsonl") && s.task[0].data().is_absolute());
        assert_eq!(s.task[1].data(), Path::new("/abs/sst2.jsonl"));
        match &s.task[0] {
            TaskConfig::Perplexity(t) => assert_eq!((t.window, t.stride(), t.field.as_str()), (512, 256, "text")),
            _ => return Err("not perplexity".into()),
        }
        let cases = [
            ("[[task]]\nkind = \"summarize\"\ndata = \"x\"\n", "unknown variant `summarize`"),
            ("[[task]]\nkind = \"perplexity\"\ndata = \"x\"\nwindw = 3\n", "unknown field `windw`"),
            ("[[task]]\nkind = \"perplexity\"\ndata = \"x\"\nprompt = \"p\"\n", "unknown field `prompt`"),
            ("[[task]]\nkind = \"generation\"\ndata = \"x\"\nprompt = \"p\"\n", "missing field `reference`"),
            ("[[task]]\nkind = \"multiple_choice\"\ndata = \"x\"\nprompt = \"p\"\n", "choices: missing"),
            (
                "[[task]]\nkind = \"multiple_choice\"\ndata = \"x\"\nprompt = \"p\"\nchoices = [\"a\"]\n",
                "at least two choices",
            ),
            (
                "[[task]]\nkind = \"multiple_choice\"\ndata = \"x\"\nprompt = \"p\"\nchoices = [\"a\", \" \"]\n",
                "choice 1 is empty",
            ),
            (
                "[[task]]\nkind = \"multiple_choice\"\ndata = \"x\"\nprompt = \"p\"\nchoices = [\"a\", \"b\", \"a\"]\n",
                "choice 2 (\"a\") repeats",
            ),
            ("[[task]]\nkind = \"perplexity\"\ndata = \"x\"\nstride = 0\n", "--stride"),
            ("seed = 1\n", "missing field `task`"),
            ("task = []\n", "no [[task]]"),
            ("colour = 1\n[[task]]\nkind = \"perplexity\"\ndata = \"x\"\n", "unknown field `colour`"),
        ];
        for (text, want) in cases {
            let e = suite(text).err().unwrap_or_default();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        Ok(())
    }
}
