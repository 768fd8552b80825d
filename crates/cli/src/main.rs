//! `tuneguard`: fine-tune LLMs and guard the run. This binary only parses arguments, prints and
//! sets exit codes; the work lives in the library crates.
/// `println!` that returns the write error (a closed pipe) instead of panicking; main turns a
/// broken pipe into a quiet exit.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

mod audit;
mod audit_recipe;
mod convert;
mod data_cmd;
mod eval;
mod eval_page;
mod generate;
mod inspect;
mod model_path;
mod report;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tuneguard",
    version,
    about = "Fine-tune Llama-family LLMs and guard the run against the classic fine-tuning mistakes"
)]
struct Cli {
    /// Worker threads (model compute and data checks), 1-256 (default: all cores).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Log more (repeat for debug output); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt, streaming it to stdout.
    Generate(generate::GenerateArgs),
    /// Print a model's architecture, size, quantization, vocabulary and special tokens.
    Inspect(inspect::InspectArgs),
    /// Write a model as a float32 Hugging Face safetensors directory (merging a LoRA adapter).
    Convert(convert::ConvertArgs),
    /// Merge a LoRA adapter into the base model and write a float32 Hugging Face directory
    /// (the same as `convert --adapter`).
    Merge(convert::MergeArgs),
    /// Fine-tune from a recipe (LoRA or full): data guard first, validation with early stopping,
    /// checkpoints (`--resume`), then the best adapter, metrics and report.html.
    Train(train::TrainArgs),
    /// Write RUN_DIR/report.html: summary, loss/learning-rate/throughput charts, data, alarms.
    Report(report::ReportArgs),
    /// Data guard alone, on data files or a recipe: validate, find duplicates, conflicts and PII
    /// (and, for a recipe, leakage and the pre-flight lint); write audit.json and quarantine.jsonl.
    Audit(audit::AuditArgs),
    /// Data provenance: lock data files into a manifest, make keys, sign and verify it.
    Data(data_cmd::DataArgs),
    /// Evaluate a model (+ adapter): perplexity, multiple choice, generation, or a suite of them.
    Eval(eval::EvalArgs),
}

/// Exit code for bad input (unreadable model, bad arguments), as clap uses for usage errors.
const EXIT_BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n.into()).build_global() {
            eprintln!("error: cannot set {n} threads: {e}");
            return ExitCode::from(1);
        }
    }
    let result = match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Merge(args) => convert::run(args.into()),
        Command::Train(args) => train::run_cmd(args),
        Command::Report(args) => report::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Data(args) => data_cmd::run(args),
        Command::Eval(args) => eval::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`| head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            let bad_input = e.downcast_ref::<tuneguard_model::ModelError>().is_some()
                || e.downcast_ref::<tuneguard_run::recipe::RecipeError>().is_some()
                || e.downcast_ref::<tuneguard_audit::AuditError>().is_some()
                || e.downcast_ref::<tuneguard_run::RunError>().is_some()
                || e.downcast_ref::<tuneguard_data::provenance::ProvenanceError>().is_some()
                || e.downcast_ref::<tuneguard_report::ReportError>().is_some()
                || e.downcast_ref::<model_path::ModelPathError>().is_some()
                || eval::is_bad_input(&e);
            ExitCode::from(if bad_input { EXIT_BAD_INPUT } else { 1 })
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
