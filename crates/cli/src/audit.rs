//! `tuneguard audit DATA... [--out DIR]` or `tuneguard audit RECIPE.toml`: the data guard alone. Writes `audit.json` and
//! `quarantine.jsonl`, prints the counts per check; exit 1 when a check set to `fail` fired.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use tuneguard_audit::checks::{self, Action, AuditConfig, AuditOptions};
use tuneguard_audit::AuditError;
use tuneguard_data::{DataFormat, LoadOptions};

/// Exit codes, as `tuneguard audit --help` lists them.
const EXIT_CODES: &str = "\
Exit codes:
  0  nothing would stop training (rows may have been quarantined or warned about)
  1  training would stop: a check set to `fail` fired, no usable row is left, or (recipe) a lint
     error fired
  2  bad input: a missing or unreadable file, an invalid recipe or option";

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub struct AuditArgs {
    /// Data files (JSONL or CSV), audited together: a row is compared with the rows of earlier
    /// files too. Or one recipe (.toml): its data, split and lint, as `tuneguard train` checks
    /// them before training.
    #[arg(required = true, value_name = "DATA|RECIPE")]
    inputs: Vec<PathBuf>,
    /// Folder for audit.json and quarantine.jsonl (created if missing).
    #[arg(long, default_value = "tuneguard-audit")]
    out: PathBuf,
    /// Record format: instruction, alpaca, prompt_completion, messages or text (default: detected
    /// per file).
    #[arg(long)]
    format: Option<String>,
    /// Action of a check id or group (schema, duplicates, pii): CHECK=off|warn|quarantine|fail,
    /// e.g. `--action pii=quarantine --action near_duplicate=fail`. Repeatable.
    #[arg(long = "action", value_name = "CHECK=ACTION")]
    actions: Vec<String>,
}

fn data_format(name: &str) -> Result<DataFormat, AuditError> {
    Ok(match name {
        "instruction" => DataFormat::instruction(),
        "alpaca" => DataFormat::alpaca(),
        "prompt_completion" => DataFormat::prompt_completion(),
        "messages" => DataFormat::messages(),
        "text" => DataFormat::text(),
        _ => {
            return Err(AuditError::Config {
                key: "--format".into(),
                reason: format!("`{name}`; expected instruction, alpaca, prompt_completion, messages or text"),
            })
        }
    })
}

fn config(actions: &[String]) -> Result<AuditConfig, AuditError> {
    let mut cfg = AuditConfig::default();
    for a in actions {
        let bad = |reason: String| AuditError::Config { key: format!("--action {a}"), reason };
        let (check, action) = a.split_once('=').ok_or_else(|| bad("expected CHECK=ACTION".into()))?;
        let action: Action = serde_json::from_value(serde_json::Value::String(action.into()))
            .map_err(|_| bad(format!("`{action}` is not one of off, warn, quarantine, fail")))?;
        cfg.actions.insert(check.to_string(), action);
    }
    Ok(cfg)
}

/// A bad input path as an error: missing, or a folder.
fn check_input(path: &Path) -> Result<(), AuditError> {
    let reason = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => "is a folder; give data files (JSONL or CSV) or a recipe (.toml)",
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "does not exist",
        Err(err) => return Err(AuditError::Io { path: path.to_path_buf(), err }),
    };
    Err(AuditError::Input { path: path.to_path_buf(), reason: reason.into() })
}

pub fn run(args: AuditArgs) -> Result<()> {
    for input in &args.inputs {
        check_input(input)?;
    }
    if let Some(recipe) = args.inputs.iter().find(|p| p.extension().is_some_and(|e| e == "toml")) {
        if args.inputs.len() > 1 || args.format.is_some() || !args.actions.is_empty() {
            return Err(AuditError::Input {
                path: recipe.clone(),
                reason: "a recipe is audited alone, with its own [data] and [audit] settings".into(),
            }
            .into());
        }
        return crate::audit_recipe::run(recipe, &args.out);
    }
    let cfg = config(&args.actions)?;
    for input in &args.inputs {
        let input_at = std::fs::canonicalize(input).ok();
        let same = |p: &Path| input_at.is_some() && std::fs::canonicalize(p).ok() == input_at;
        if same(&args.out.join("audit.json")) || same(&args.out.join("quarantine.jsonl")) {
            return Err(AuditError::Input {
                path: input.clone(),
                reason: "is where the audit would write its output; choose another --out".into(),
            }
            .into());
        }
    }
    if args.out.exists() && !args.out.is_dir() {
        let err = std::io::Error::other("is a file, not a folder; give --out a folder");
        return Err(AuditError::Io { path: args.out.clone(), err }.into());
    }
    let format = args.format.as_deref().map(data_format).transpose()?;
    let opts = AuditOptions { load: LoadOptions { format, ..Default::default() }, ..Default::default() };
    let start = Instant::now();
    let report = checks::audit_files(&args.inputs, &cfg, &opts)?;
    let secs = start.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out).map_err(|err| AuditError::Io { path: args.out.clone(), err })?;
    let audit_json = args.out.join("audit.json");
    let quarantine = args.out.join("quarantine.jsonl");
    let quarantined = checks::write_audit_outputs(&args.out, &report)?;

    let r = report.rows;
    out!(
        "audited {} rows in {} file(s) ({secs:.1} s): {} clean, {} kept with warnings, {} quarantined",
        r.read,
        report.files.len(),
        r.clean,
        r.warned,
        r.quarantined
    );
    for shape in &report.shapes {
        out!("{}", shape.describe());
        if let Some(w) = shape.warning("--format") {
            eprintln!("warning: {w}");
        }
    }
    out!("{:<20} {:>9}  action", "check", "rows");
    for (check, c) in report.counts.iter().filter(|(_, c)| c.found > 0) {
        out!("{:<20} {:>9}  {}", check.name(), c.found, c.action.name());
    }
    if report.counts.values().all(|c| c.found == 0) {
        out!("(no check found anything)");
    }
    if let Some(l) = report.length {
        out!(
            "lengths: median {:.0} {}; outside {:.0}-{:.0} is an outlier (modified z > {})",
            l.median,
            l.unit,
            l.lower,
            l.upper,
            l.z
        );
    }
    let plural = if quarantined == 1 { "" } else { "s" };
    out!("wrote {} and {} ({quarantined} row{plural})", audit_json.display(), quarantine.display());
    if let Some(first) = report.failed() {
        bail!("audit failed: {first}");
    }
    if report.kept_rows() == 0 {
        bail!("no usable rows: training on these files would stop with an empty data set");
    }
    Ok(())
}
