//! `tuneguard eval`: evaluation tasks on a model (+ adapter). Today: `perplexity` of a text
//! file with sliding windows.
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tuneguard_eval::perplexity::{perplexity, windows};
use tuneguard_eval::texts::read_texts;
use tuneguard_eval::EvalError;
use tuneguard_metrics::bootstrap::Bootstrap;

use crate::model_path;

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
}

#[derive(Args)]
struct PerplexityArgs {
    /// JSONL file (one object per line, text in --field) or plain-text file.
    data: PathBuf,
    /// GGUF file or Hugging Face model directory (default: models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    model: Option<PathBuf>,
    /// PEFT LoRA adapter directory to apply to the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
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
    /// Bootstrap resamples (over windows) for the 95 % confidence interval; 0 = none.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    match args.task {
        Task::Perplexity(a) => run_perplexity(a),
    }
}

fn run_perplexity(a: PerplexityArgs) -> Result<()> {
    let stride = a.stride.unwrap_or((a.window / 2).max(1));
    windows(0, a.window, stride)?; // bad flags before anything is loaded
    let rows = read_texts(&a.data, &a.field)?;
    let path = model_path::resolve(a.model.as_deref())?;
    let m = tuneguard_model::load_with_adapter(&path, a.adapter.as_deref())?;
    let mut tokens = m.tokenizer.encode(&rows.join("\n\n"), false)?;
    if a.max_tokens > 0 {
        tokens.truncate(a.max_tokens);
    }
    let n_windows = windows(tokens.len(), a.window, stride)?.len();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(n_windows as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} window {pos}/{len} [{elapsed_precise} < {eta_precise}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let tick = || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    let bootstrap = (a.bootstrap > 0).then_some(Bootstrap { resamples: a.bootstrap, level: 0.95, seed: a.seed });
    let t0 = Instant::now();
    let r = perplexity(&m.model, &tokens, a.window, stride, bootstrap, &tick)?;
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let tokens_per_s = r.tokens_scored as f64 / seconds;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["task"] = "perplexity".into();
        v["data"] = a.data.display().to_string().into();
        v["rows"] = rows.len().into();
        v["model"] = path.display().to_string().into();
        v["adapter"] = a.adapter.as_ref().map(|p| p.display().to_string()).into();
        v["seconds"] = seconds.into();
        v["tokens_per_s"] = tokens_per_s.into();
        out!("{}", serde_json::to_string(&v)?);
        return Ok(());
    }
    let ci = r.interval.map_or(String::new(), |i| format!(" (95 % CI {:.3}–{:.3})", i.low, i.high));
    out!("{}: {} rows, {} tokens", a.data.display(), rows.len(), r.tokens);
    out!("perplexity {:.3}{ci}", r.perplexity);
    out!(
        "nll {:.4} nats/token over {} scored tokens; {} windows of {} tokens, stride {} ({:.1} s, {:.0} tokens/s)",
        r.nll,
        r.tokens_scored,
        r.windows,
        r.window,
        r.stride,
        seconds,
        tokens_per_s
    );
    Ok(())
}

/// Whether an error is bad input (exit 2).
pub fn is_bad_input(e: &anyhow::Error) -> bool {
    e.downcast_ref::<EvalError>().is_some()
}
