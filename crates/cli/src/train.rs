//! `tuneguard train RECIPE [section.key=value ...]`: LoRA fine-tuning from a recipe.
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tuneguard_train::recipe::Recipe;
use tuneguard_train::run::{run, Progress, StepMetrics};

use crate::model_path;

#[derive(Args)]
pub struct TrainArgs {
    /// Recipe TOML file (see configs/quickstart.toml).
    recipe: PathBuf,
    /// Overrides, `section.key=value` (e.g. `optim.lr=1e-4 train.max_steps=10`).
    overrides: Vec<String>,
    /// Replace a run already in the output folder.
    #[arg(long)]
    overwrite: bool,
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
}

pub fn run_cmd(args: TrainArgs) -> Result<()> {
    let recipe = Recipe::load(&args.recipe, &args.overrides)?;
    let model = model_path::resolve(recipe.model.path.as_deref())?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template("{bar:30} step {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let mut reporter = Reporter { bar };
    let s = run(&recipe, &model, args.overwrite, &mut reporter)?;
    if let Some(b) = &reporter.bar {
        b.finish_and_clear();
    }
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    println!(
        "trained {} steps on {} examples ({} tokens, {:.0} tokens/s, {:.0} s)",
        s.steps, s.train_examples, s.tokens, s.tokens_per_s, s.seconds
    );
    println!(
        "held-out loss ({} examples): base {} -> fine-tuned {}",
        s.val_examples,
        fmt(s.val_loss_base),
        fmt(s.val_loss_final)
    );
    let written = if recipe.is_full() { "model" } else { "adapter" };
    println!("wrote {}", recipe.output.dir.join(written).display());
    Ok(())
}
