//! HTML report of a training run: reads the run folder `tuneguard train` writes (`metrics.jsonl`,
//! `summary.json` as tuneguard-records' types, `config.toml`, optional `audit.json`) and renders one self-contained page with
//! the plots as inline SVG (plotters' SVG backend), no scripts, stylesheets or fonts fetched.
use std::path::{Path, PathBuf};

mod error;
mod page;
mod plot;
mod run;
#[cfg(test)]
mod tests;
#[doc(hidden)]
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;

pub use error::ReportError;

use error::Result;
use run::RunData;

/// The report of `run_dir` as an HTML document.
///
/// # Errors
/// `NotADirectory`; `Read` for a file that exists but cannot be read; `MalformedLine` (file:line)
/// for a `metrics.jsonl` line that is not a JSON object (or holds a field of the wrong type);
/// `MalformedJson` for a bad `summary.json` or `audit.json`. Missing files and keys only leave
/// sections out.
pub fn render_run_report(run_dir: &Path) -> Result<String> {
    page::page(&RunData::read(run_dir)?)
}

/// Writes the report to `run_dir/report.html` atomically (mode 0644) and returns that path.
/// A folder that holds none of `metrics.jsonl`, `summary.json` and `config.toml` is refused
/// and nothing is written: a report of it would be all "n/a".
///
/// # Errors
/// As [`render_run_report`], `NotARun` for such a folder, and `Write` when the folder is not
/// writable.
pub fn write_run_report(run_dir: &Path) -> Result<PathBuf> {
    RunData::require_run_folder(run_dir)?;
    let html = render_run_report(run_dir)?;
    let path = run_dir.join("report.html");
    write_atomic(&path, &html)?;
    Ok(path)
}

/// The loss chart (training and validation loss against step, best and stop markers) as a
/// standalone SVG document.
///
/// # Errors
/// As [`render_run_report`], and `NoSteps` when no loss was recorded.
pub fn loss_plot_svg(run_dir: &Path) -> Result<String> {
    let run = RunData::read(run_dir)?;
    let chart = plot::loss_chart(&run);
    if !run.has_steps() || !plot::has_points(&chart) {
        return Err(ReportError::NoSteps { path: run.metrics_path });
    }
    plot::render(&chart)
}

/// Writes [`loss_plot_svg`] to `out` atomically (mode 0644).
///
/// # Errors
/// As [`loss_plot_svg`], `NotARun` as [`write_run_report`], and `Write` naming `out`.
pub fn write_loss_plot_svg(run_dir: &Path, out: &Path) -> Result<()> {
    RunData::require_run_folder(run_dir)?;
    write_atomic(out, &loss_plot_svg(run_dir)?)
}

/// Writes through a temporary file in the same folder and a rename, so readers never see half a file.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    tuneguard_fs::write_bytes(path, text.as_bytes(), |p, err| ReportError::Write { path: p.to_path_buf(), err })
}
