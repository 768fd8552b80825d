//! `tuneguard train RECIPE [section.key=value ...]` (or `--resume OUT`): fine-tuning from a recipe.
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tuneguard_run::recipe::Recipe;
use tuneguard_run::{lock, resume, run, EvalRecord, Progress, RunConfig, RunError, StepMetrics, LOCK_FILE};

use crate::model_path;

#[derive(Args)]
pub struct TrainArgs {
    /// Recipe TOML file (see configs/quickstart.toml).
    #[arg(required_unless_present = "resume")]
    recipe: Option<PathBuf>,
    /// Overrides, `section.key=value` (e.g. `optim.lr=1e-4 train.max_steps=10`).
    overrides: Vec<String>,
    /// Replace a run already in the output folder.
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Continue the interrupted run in this output folder from its last checkpoint (its own
    /// config.toml is the recipe).
    #[arg(long, value_name = "OUT", conflicts_with = "recipe")]
    resume: Option<PathBuf>,
}

/// A bar on a terminal, plain lines otherwise (logs, CI).
struct Reporter {
    bar: Option<ProgressBar>,
}

impl Progress for Reporter {
    fn message(&mut self, text: &str) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }
    fn step(&mut self, m: &StepMetrics) {
        let text =
            format!("loss {:.4} lr {:.2e} grad norm {:.3} {:.0} tok/s", m.loss, m.lr, m.grad_norm, m.tokens_per_s);
        match &self.bar {
            Some(b) => {
                b.set_length(m.total_steps);
                b.set_position(m.step);
                b.set_message(text);
            }
            None => eprintln!("step {}/{}: {text}", m.step, m.total_steps),
        }
    }
    fn eval(&mut self, e: &EvalRecord) {
        let gap = e.gap.map_or(String::new(), |g| format!(" gap {g:+.4}"));
        let best = if e.is_best { " (best)" } else { "" };
        self.message(&format!(
            "eval step {}: val loss {:.4} perplexity {:.2} token accuracy {:.3}{gap}{best}",
            e.step, e.val_loss, e.val_perplexity, e.val_token_accuracy
        ));
    }
}

pub fn run_cmd(args: TrainArgs) -> Result<()> {
    // The run folder's lock is held until the report is written: a second run into the folder
    // is refused meanwhile. A resume takes it before reading config.toml (which a starting run
    // may not have written yet); a new run once the recipe and the model are known.
    let (recipe, held) = match (&args.resume, &args.recipe) {
        (Some(dir), _) => {
            let fail = |reason: &str| RunError::Resume { dir: dir.clone(), reason: reason.into() };
            if !args.overrides.is_empty() {
                return Err(
                    fail("--resume continues a run exactly as it was configured; overrides are not accepted").into()
                );
            }
            let config = dir.join("config.toml");
            let missing = || {
                fail(if dir.is_file() {
                    "it is a file, not a run folder"
                } else {
                    "no run here (config.toml is missing)"
                })
            };
            // Only a run folder gets locked (a lock file alone: a run that is starting).
            if !config.is_file() && !dir.join(LOCK_FILE).is_file() {
                return Err(missing().into());
            }
            let held = lock(dir)?;
            if !config.is_file() {
                return Err(missing().into());
            }
            let mut recipe = Recipe::load(&config, &[])?;
            // The folder given is the run, wherever it was moved or copied to.
            recipe.output.dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            (recipe, Some(held))
        }
        (None, Some(path)) => {
            let recipe = Recipe::load(path, &args.overrides)?;
            // The run writes its resolved recipe to OUT/config.toml: never over the recipe itself.
            let written = recipe.output.dir.join("config.toml");
            if let (Ok(a), Ok(b)) = (path.canonicalize(), written.canonicalize()) {
                if a == b {
                    let reason = format!(
                        "the run would write its config.toml over this recipe, {}; set output.dir to another folder",
                        path.display()
                    );
                    return Err(tuneguard_run::recipe::RecipeError::Invalid { key: "output.dir".into(), reason }.into());
                }
            }
            (recipe, None)
        }
        (None, None) => anyhow::bail!("give a recipe, or --resume OUT"),
    };
    let model = model_path::resolve(recipe.model.path.as_deref())?;
    let config = RunConfig::new(recipe, model);
    let held = match held {
        Some(h) => h,
        None => lock(&config.recipe.output.dir)?,
    };
    let command_line = command_line();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let mut reporter = Reporter { bar };
    let result = if args.resume.is_some() {
        resume(&config, &held, &command_line, &mut reporter)
    } else {
        run(&config, args.overwrite, &held, &command_line, &mut reporter)
    };
    if let Some(b) = &reporter.bar {
        b.finish_and_clear();
    }
    // The report also shows a run that stopped on an error (a diverged loss, a bad row...).
    let out = &config.recipe.output.dir;
    let refused = matches!(&result, Err(RunError::OutputExists(_) | RunError::Resume { .. }));
    if out.join("metrics.jsonl").exists() && !refused {
        match tuneguard_report::write_run_report(out) {
            Ok(p) => eprintln!("report: {}", p.display()),
            Err(e) => eprintln!("warning: no report: {e}"),
        }
    }
    let s = result?;
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    out!(
        "trained {} steps on {} examples ({} tokens, {:.0} tokens/s, {:.0} s)",
        s.steps,
        s.train_examples,
        s.tokens,
        s.tokens_per_s,
        s.seconds
    );
    out!(
        "held-out loss ({} examples): base {} -> fine-tuned {}",
        s.val_examples,
        fmt(s.val_loss_base),
        fmt(s.val_loss_final)
    );
    if let Some(es) = &s.early_stopping {
        out!("stopped at step {}: {}", es.stopped_step, es.stop_reason);
        if let (true, Some(step), Some(v)) = (es.restored_best, es.best_step, es.best_value) {
            out!("the written weights are step {step}'s, the best ({} {v:.4})", es.metric);
        }
    }
    for a in &s.alarms {
        out!("alarm at step {}: {}", a.step, a.message);
    }
    let written = if config.recipe.is_full() { "model" } else { "adapter" };
    out!("wrote {}", config.recipe.output.dir.join(written).display());
    drop(held);
    Ok(())
}

/// The command line as typed, with the program's file name (not its path) first, for the run's
/// record.
fn command_line() -> Vec<String> {
    let mut args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    let program = args
        .next()
        .map(|p| std::path::Path::new(&p).file_name().map_or(p.clone(), |n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "tuneguard".into());
    std::iter::once(program).chain(args).collect()
}
