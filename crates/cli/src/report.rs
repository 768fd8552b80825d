//! `tuneguard report RUN_DIR [--loss-svg PATH]`: the HTML report of a training run.
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct ReportArgs {
    /// Run folder written by `tuneguard train` (metrics.jsonl, summary.json, config.toml).
    run_dir: PathBuf,
    /// Also write the loss chart as a standalone SVG file here.
    #[arg(long, value_name = "PATH")]
    loss_svg: Option<PathBuf>,
}

/// Writes RUN_DIR/report.html (and the loss SVG if asked) and prints the written paths.
pub fn run(args: ReportArgs) -> Result<()> {
    let report = tuneguard_report::write_run_report(&args.run_dir)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report.display())?;
    if let Some(svg) = &args.loss_svg {
        tuneguard_report::write_loss_plot_svg(&args.run_dir, svg)?;
        writeln!(out, "{}", svg.display())?;
    }
    out.flush()?;
    Ok(())
}
