//! `tuneguard eval`: evaluation tasks on a model (+ adapter): `perplexity`, `choice`
//! (multiple choice / classification by log-likelihood), `generation`, or a `suite` file of
//! them. A table on stdout (or `--json`), an HTML page with `--output DIR`, and before/after
//! deltas with `--compare`.
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tuneguard_eval::suite::{
    read_suite, run_task, ChoiceTask, GenerationTask, PerplexityTask, Progress, TaskConfig, TaskResult,
};
use tuneguard_eval::EvalError;
use tuneguard_metrics::bootstrap::Bootstrap;
use tuneguard_metrics::info::Unit;

use crate::{eval_page, model_path};

#[derive(Args)]
pub struct EvalArgs {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Perplexity of a text file (JSONL rows joined with "\n\n", or a plain-text file), with
    /// sliding windows as in the transformers guide "Perplexity of fixed-length models".
    Perplexity(PerplexityArgs),
    /// Multiple choice / classification: the choice with the highest log-likelihood after the
    /// prompt (lm-evaluation-harness `acc` and `acc_norm`), per-class precision/recall/F1 and the
    /// confusion matrix.
    #[command(visible_alias = "multiple-choice", visible_alias = "classification")]
    Choice(ChoiceArgs),
    /// Greedy answers to prompts, scored against references with exact match, token F1 and
    /// ROUGE-L.
    Generation(GenerationArgs),
    /// Every task of a suite file (TOML `[[task]]` tables; see configs/eval/).
    Suite(SuiteArgs),
}

#[derive(Args)]
struct Common {
    /// GGUF file or Hugging Face model directory (default: models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    model: Option<PathBuf>,
    /// PEFT LoRA adapter directory to apply to the model, or a training run folder (its adapter/).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Also evaluate this and show the deltas: `base` (the model without adapter), a PEFT
    /// adapter directory or a training run folder.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Bootstrap resamples for the 95 % confidence intervals; 0 = none (default 1000, or the
    /// suite file's `bootstrap`).
    #[arg(long)]
    bootstrap: Option<usize>,
    /// Seed of the bootstrap resampling (default 0, or the suite file's `seed`).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write eval.json and index.html (an HTML page of the results) into DIR.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct PerplexityArgs {
    /// JSONL file (one object per line, text in --field) or plain-text file.
    data: PathBuf,
    /// JSONL field holding the text.
    #[arg(long, default_value = "text")]
    field: String,
    /// Tokens per window (at most the model's context length).
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// Tokens each window moves on; every token after the first window is predicted from at
    /// least window − stride tokens (default: half the window).
    #[arg(long)]
    stride: Option<usize>,
    /// Evaluate only the first N tokens of the text (0 = all).
    #[arg(long, default_value_t = 0)]
    max_tokens: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct ChoiceArgs {
    /// JSONL file, one question per line.
    data: PathBuf,
    /// Jinja template of the prompt over the row's fields, e.g.
    /// '{{text}}\nQuestion: Is this sentence positive or negative?\nAnswer:' (\n, \t and \\ are
    /// read as a newline, a tab and a backslash, as in a suite's TOML string).
    #[arg(long)]
    prompt: String,
    /// The same choices for every row, comma-separated (index 0 first): negative,positive.
    /// One of --choices and --choices-field is required.
    #[arg(long, value_delimiter = ',', conflicts_with = "choices_field")]
    choices: Option<Vec<String>>,
    /// The row field holding each row's list of choices.
    #[arg(long)]
    choices_field: Option<String>,
    /// The row field of the right choice (its index or its text).
    #[arg(long, default_value = "label")]
    label: String,
    /// Put between the prompt and each choice (lm-eval target_delimiter).
    #[arg(long, default_value = " ")]
    delimiter: String,
    /// The row field naming each item in the per-item JSON (default: its line).
    #[arg(long)]
    id_field: Option<String>,
    /// Only the first N rows (0 = all).
    #[arg(long, default_value_t = 0)]
    max_items: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct GenerationArgs {
    /// JSONL file, one prompt per line.
    data: PathBuf,
    /// Jinja template of the prompt over the row's fields, e.g. '{{instruction}}' (\n, \t and \\
    /// are read as a newline, a tab and a backslash).
    #[arg(long)]
    prompt: String,
    /// The row field of the reference answer (a string or a list of strings).
    #[arg(long)]
    reference: String,
    /// Send the prompt as raw text, not as a user message through the chat template.
    #[arg(long)]
    no_chat: bool,
    /// System message for chat prompts.
    #[arg(long)]
    system: Option<String>,
    /// Maximum new tokens per answer.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// The row field naming each item in the per-item JSON (default: its line).
    #[arg(long)]
    id_field: Option<String>,
    /// Only the first N rows (0 = all).
    #[arg(long, default_value_t = 0)]
    max_items: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct SuiteArgs {
    /// TOML suite file.
    suite: PathBuf,
    #[command(flatten)]
    common: Common,
}

pub fn run(args: EvalArgs) -> Result<()> {
    match args.task {
        Task::Perplexity(a) => {
            let t = PerplexityTask {
                name: None,
                data: a.data,
                field: a.field,
                window: a.window,
                stride: a.stride,
                max_tokens: a.max_tokens,
            };
            run_tasks(&a.common, vec![TaskConfig::Perplexity(t)], None)
        }
        Task::Choice(a) => {
            let t = ChoiceTask {
                name: None,
                data: a.data,
                prompt: unescape(&a.prompt),
                choices: a.choices,
                choices_field: a.choices_field,
                label: a.label,
                delimiter: unescape(&a.delimiter),
                id_field: a.id_field,
                max_items: a.max_items,
            };
            run_tasks(&a.common, vec![TaskConfig::MultipleChoice(t)], None)
        }
        Task::Generation(a) => {
            let t = GenerationTask {
                name: None,
                data: a.data,
                prompt: unescape(&a.prompt),
                reference: a.reference,
                chat: !a.no_chat,
                system: a.system,
                max_new_tokens: a.max_new_tokens,
                id_field: a.id_field,
                max_items: a.max_items,
            };
            run_tasks(&a.common, vec![TaskConfig::Generation(t)], None)
        }
        Task::Suite(a) => {
            let suite = read_suite(&a.suite)?;
            let defaults = (suite.bootstrap, suite.seed);
            run_tasks(&a.common, suite.task, Some(defaults))
        }
    }
}

/// What was evaluated and what it gave.
#[derive(Serialize)]
pub struct Evaluation {
    pub model: PathBuf,
    pub adapter: Option<PathBuf>,
    pub tasks: Vec<TaskResult>,
}

/// The `--json` and eval.json object.
#[derive(Serialize)]
pub struct EvalOutput {
    #[serde(flatten)]
    pub this: Evaluation,
    /// The `--compare` evaluation.
    pub compare: Option<Evaluation>,
}

fn run_tasks(c: &Common, tasks: Vec<TaskConfig>, suite_defaults: Option<(usize, u64)>) -> Result<()> {
    for t in &tasks {
        t.check()?; // bad settings before anything is loaded
        if !t.data().exists() {
            return Err(EvalError::Io {
                path: t.data().to_path_buf(),
                err: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            }
            .into());
        }
    }
    if let Some(dir) = &c.output {
        if dir.exists() && !dir.is_dir() {
            return Err(EvalError::Setting {
                flag: "--output",
                reason: format!("{} exists and is not a folder", dir.display()),
            }
            .into());
        }
    }
    if c.compare.as_deref() == Some(Path::new("base")) && c.adapter.is_none() {
        return Err(EvalError::Setting {
            flag: "--compare",
            reason: "`base` is the model without the adapter; give --adapter too (or --compare ADAPTER)".into(),
        }
        .into());
    }
    let (default_resamples, default_seed) = suite_defaults.unwrap_or((1000, 0));
    let resamples = c.bootstrap.unwrap_or(default_resamples);
    let bootstrap =
        (resamples > 0).then_some(Bootstrap { resamples, level: 0.95, seed: c.seed.unwrap_or(default_seed) });
    let model = model_path::resolve(c.model.as_deref())?;
    let adapter = c.adapter.as_deref().map(adapter_dir).transpose()?;
    let compare = match c.compare.as_deref() {
        None => None,
        Some(p) if p == Path::new("base") => Some(None),
        Some(p) => Some(Some(adapter_dir(p)?)),
    };
    let single = tasks.len() == 1 && compare.is_none();
    let this = evaluate(&model, adapter.as_deref(), &tasks, bootstrap)?;
    let compare = match compare {
        Some(a) => Some(evaluate(&model, a.as_deref(), &tasks, bootstrap)?),
        None => None,
    };
    let output = EvalOutput { this, compare };
    if let Some(dir) = &c.output {
        eval_page::write(dir, &output)?;
    }
    if c.json {
        let text = if single {
            // One task: its result as one flat object, with what it ran on.
            let mut v = serde_json::to_value(&output.this.tasks[0])?;
            v["model"] = output.this.model.display().to_string().into();
            v["adapter"] = output.this.adapter.as_ref().map(|p| p.display().to_string()).into();
            serde_json::to_string(&v)?
        } else {
            serde_json::to_string(&output)?
        };
        out!("{text}");
        return Ok(());
    }
    print_table(&output)?;
    if let Some(dir) = &c.output {
        out!("wrote {}", dir.join("index.html").display());
    }
    Ok(())
}

/// `\n`, `\t` and `\\` in a command-line string read as a newline, a tab and a backslash
/// (a shell's single quotes pass them literally); any other backslash stays as it is.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    out.push('\n');
                    chars.next();
                    continue;
                }
                Some('t') => {
                    out.push('\t');
                    chars.next();
                    continue;
                }
                Some('\\') => {
                    out.push('\\');
                    chars.next();
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// A PEFT adapter directory: `dir` itself, or a run folder's `adapter/`.
fn adapter_dir(p: &Path) -> Result<PathBuf> {
    if p.join("adapter_config.json").is_file() {
        return Ok(p.to_path_buf());
    }
    let inner = p.join("adapter");
    if inner.join("adapter_config.json").is_file() {
        return Ok(inner);
    }
    Err(EvalError::Setting {
        flag: "--adapter/--compare",
        reason: format!(
            "{} is neither a PEFT adapter directory (adapter_config.json) nor a run folder with adapter/",
            p.display()
        ),
    }
    .into())
}

fn evaluate(
    model: &Path,
    adapter: Option<&Path>,
    tasks: &[TaskConfig],
    bootstrap: Option<Bootstrap>,
) -> Result<Evaluation> {
    let m = tuneguard_model::load_with_adapter(model, adapter)?;
    let bar = Bar::new();
    let mut results = Vec::new();
    for t in tasks {
        results.push(run_task(&m, t, bootstrap, &bar)?);
    }
    Ok(Evaluation { model: model.to_path_buf(), adapter: adapter.map(Path::to_path_buf), tasks: results })
}

/// A progress bar on a terminal, nothing otherwise.
struct Bar(Option<ProgressBar>);

impl Bar {
    fn new() -> Self {
        Bar(std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template("{bar:30} {msg} {pos}/{len} [{elapsed_precise} < {eta_precise}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        }))
    }
}

impl Progress for Bar {
    fn start(&self, label: &str, total: u64) {
        if let Some(b) = &self.0 {
            b.reset();
            b.set_length(total);
            b.set_message(label.to_string());
        }
    }
    fn tick(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

/// A metric value as the table shows it: fractions in percent.
pub fn show(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Fraction => format!("{:.2} %", 100.0 * v),
        Unit::Perplexity => format!("{v:.3}"),
        Unit::NatsPerToken => format!("{v:.4}"),
    }
}

fn print_table(o: &EvalOutput) -> Result<()> {
    let label = |e: &Evaluation| match &e.adapter {
        Some(a) => format!("{} + {}", e.model.display(), a.display()),
        None => e.model.display().to_string(),
    };
    out!("model: {}", label(&o.this));
    if let Some(c) = &o.compare {
        out!("compare: {}", label(c));
    }
    for (i, t) in o.this.tasks.iter().enumerate() {
        out!("");
        out!(
            "{} ({}, {}: {} {}, {:.1} s, {:.1} {})",
            t.name,
            t.task,
            t.data.display(),
            t.rows,
            if t.rows == 1 { "row" } else { "rows" },
            t.seconds,
            t.throughput,
            t.throughput_unit
        );
        let before = o.compare.as_ref().map(|c| c.tasks[i].report.headlines());
        for (j, h) in t.report.headlines().iter().enumerate() {
            let ci = h.interval.map_or(String::new(), |iv| {
                format!("  95 % CI {} – {}", show(h.metric.unit, iv.low), show(h.metric.unit, iv.high))
            });
            let delta = before.as_ref().map_or(String::new(), |b| {
                let d = h.value - b[j].value;
                let shown =
                    if h.metric.unit == Unit::Fraction { format!("{:+.2} pt", 100.0 * d) } else { format!("{d:+.4}") };
                format!("  (compare {}, Δ {shown})", show(h.metric.unit, b[j].value))
            });
            out!("  {:<12} {:>10}{ci}{delta}", h.metric.name, show(h.metric.unit, h.value));
        }
        if let tuneguard_eval::suite::TaskReport::MultipleChoice(r) = &t.report {
            out!("  {:<16} {:>9} {:>9} {:>9} {:>8}", "class", "precision", "recall", "f1", "support");
            for (k, name) in r.classes.iter().enumerate() {
                out!(
                    "  {:<16} {:>9.4} {:>9.4} {:>9.4} {:>8}",
                    name,
                    r.precision_per_class[k],
                    r.recall_per_class[k],
                    r.f1_per_class[k],
                    r.support[k]
                );
            }
            out!("  confusion (rows: true class, columns: predicted): {:?}", r.confusion);
        }
    }
    Ok(())
}

/// Whether an error is bad input (exit 2).
pub fn is_bad_input(e: &anyhow::Error) -> bool {
    e.downcast_ref::<EvalError>().is_some()
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn escapes_of_a_command_line_prompt() {
        assert_eq!(unescape(r"{{text}}\nAnswer:\t\\x \q"), "{{text}}\nAnswer:\t\\x \\q");
        assert_eq!(unescape("real\nnewline"), "real\nnewline");
        assert_eq!(unescape(r"end\"), "end\\");
    }
}
