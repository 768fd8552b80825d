//! The training recipe: one TOML file per run, sections `[model] [data] [lora] [optim] [train]
//! [early_stopping] [augment] [audit] [output]`. Unknown keys and invalid values (every float is
//! checked against its range, NaN and ±inf included) are errors naming the key, so a bad value
//! stops the run before the model is loaded instead of turning the loss into NaN. Command-line
//! overrides are `section.key=value` with the value written as in TOML (`optim.lr=1e-4`,
//! `data.train="x.jsonl"`, bare strings are accepted too). A run folder's `config.toml` is a
//! recipe too, with the `[run]` record the run wrote.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use tuneguard_train::schedule::Schedule;

mod overrides;
mod prevention;
mod sections;
mod validate;
pub use prevention::*;
pub use sections::*;
pub use validate::Range;

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// Syntax errors and unknown keys (the message names the key and line).
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid recipe value `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

type Result<T> = std::result::Result<T, RecipeError>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    #[serde(default)]
    pub model: ModelSection,
    pub data: DataSection,
    #[serde(default)]
    pub lora: LoraSection,
    #[serde(default)]
    pub optim: OptimSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub early_stopping: EarlyStoppingSection,
    #[serde(default)]
    pub augment: AugmentSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default, skip_serializing_if = "ForgettingSection::is_default")]
    pub forgetting: ForgettingSection,
    #[serde(default, skip_serializing_if = "ReplaySection::is_default")]
    pub replay: ReplaySection,
    #[serde(default, skip_serializing_if = "DistillSection::is_default")]
    pub distill: DistillSection,
    #[serde(default, skip_serializing_if = "EwcSection::is_default")]
    pub ewc: EwcSection,
    #[serde(default, skip_serializing_if = "L2spSection::is_default")]
    pub l2sp: L2spSection,
    pub output: OutputSection,
    /// Written by a run into its `config.toml`; see [`RunRecord`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunRecord>,
}

impl Recipe {
    /// Reads `path`, applies `overrides`, checks every value, and makes relative paths relative
    /// to the recipe's folder.
    ///
    /// # Errors
    /// `Io`, `Parse` (syntax, unknown key, wrong type — naming the key) or `Invalid` (naming the key).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|err| RecipeError::Io { path: path.to_path_buf(), err })?;
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| RecipeError::Parse { path: path.to_path_buf(), reason: one_line(&e) })?;
        for o in overrides {
            overrides::set_override(&mut doc, o)?;
        }
        let origin =
            if overrides.is_empty() { String::new() } else { " (after the command-line overrides)".to_string() };
        let mut recipe: Recipe = toml::Value::Table(doc).try_into().map_err(|e: toml::de::Error| {
            RecipeError::Parse { path: path.to_path_buf(), reason: format!("{}{origin}", one_line(&e)) }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = lexical_normalize(&base.join(&*p));
            }
        };
        rel(&mut recipe.data.train);
        for p in recipe
            .data
            .val_file
            .iter_mut()
            .chain(recipe.data.manifest.iter_mut())
            .chain(recipe.data.chat_template.iter_mut())
        {
            rel(p);
        }
        recipe.data.trusted_keys.iter_mut().for_each(rel);
        recipe.forgetting.task.iter_mut().for_each(|t| rel(t.data_mut()));
        for p in recipe.replay.data.iter_mut().chain(recipe.ewc.data.iter_mut()).chain(recipe.ewc.fisher.iter_mut()) {
            rel(p);
        }
        rel(&mut recipe.output.dir);
        if let Some(p) = recipe.model.path.as_mut() {
            rel(p);
        }
        recipe.validate()?;
        Ok(recipe)
    }

    /// `data.max_len` against the model's context length (read from its header or config.json
    /// before any weight is decoded).
    ///
    /// # Errors
    /// `Invalid` naming `data.max_len` when it exceeds `context_length`.
    pub fn check_context_length(&self, context_length: usize, model: &Path) -> Result<()> {
        if self.data.max_len > context_length {
            return Err(RecipeError::Invalid {
                key: "data.max_len".into(),
                reason: format!(
                    "{} tokens exceed the context length of the model {} ({context_length} tokens)",
                    self.data.max_len,
                    model.display()
                ),
            });
        }
        Ok(())
    }

    /// A warning when every planned step is a warm-up step: the learning rate never reaches
    /// `optim.lr`, and a one-step run trains at lr 0 (it looks like a run that did nothing).
    pub fn warmup_warning(&self, total_steps: u64) -> Option<String> {
        let w = self.optim.warmup_steps;
        (w > 0 && w >= total_steps).then(|| {
            format!(
                "optim.warmup_steps = {w} is not below the run's {total_steps} optimizer steps: every step is a \
                 warm-up step, the learning rate never reaches optim.lr and the first step runs at lr 0; lower \
                 optim.warmup_steps or raise train.max_steps"
            )
        })
    }

    /// The recipe with every path made absolute (as written to a run's `config.toml`, so
    /// `--resume` works from any folder).
    pub fn absolutized(&self) -> Recipe {
        let mut r = self.clone();
        let abs = |p: &mut PathBuf| {
            if let Ok(a) = std::path::absolute(&*p) {
                *p = lexical_normalize(&a);
            }
        };
        abs(&mut r.data.train);
        abs(&mut r.output.dir);
        for p in r
            .data
            .val_file
            .iter_mut()
            .chain(r.model.path.iter_mut())
            .chain(r.data.manifest.iter_mut())
            .chain(r.data.chat_template.iter_mut())
        {
            abs(p);
        }
        r.data.trusted_keys.iter_mut().for_each(abs);
        r.forgetting.task.iter_mut().for_each(|t| abs(t.data_mut()));
        for p in r.replay.data.iter_mut().chain(r.ewc.data.iter_mut()).chain(r.ewc.fisher.iter_mut()) {
            abs(p);
        }
        r
    }

    /// sha256 of everything that decides the training result (the resolved recipe without its
    /// output folder): a resumed run must match the checkpoint's.
    pub fn training_fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut r = self.absolutized();
        r.output.dir = PathBuf::new();
        r.train.keep_checkpoints = 0;
        // Who started the run and when is not a setting (the model's hash is checked apart).
        r.run = None;
        hex::encode(Sha256::digest(r.to_toml().as_bytes()))
    }

    /// Full fine-tuning rather than LoRA.
    pub fn is_full(&self) -> bool {
        self.train.method == Method::Full
    }

    pub fn schedule(&self) -> Schedule {
        self.optim.schedule
    }

    /// The resolved recipe as TOML (every default written out).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Removes `.` and `name/..` pairs without touching the file system
/// (`configs/../runs/x` → `runs/x`), so paths print the way users wrote them.
pub(crate) fn lexical_normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn one_line(e: &toml::de::Error) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuneguard_model::llama::Projection;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("r.toml");
        std::fs::write(&p, text).expect("write");
        (dir, p)
    }

    const MINIMAL: &str = "[data]\ntrain = \"d.jsonl\"\n[output]\ndir = \"out\"\n";

    #[test]
    fn defaults_and_relative_paths() {
        let (dir, p) = write(MINIMAL);
        let r = Recipe::load(&p, &[]).expect("load");
        assert_eq!(r.data.train, dir.path().join("d.jsonl"));
        assert_eq!(r.lora.r, 16);
        assert_eq!(r.schedule(), Schedule::Cosine);
        let again: Recipe = toml::from_str(&r.to_toml()).expect("round trip");
        assert_eq!(again, r);
    }

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(lexical_normalize(Path::new("configs/../runs/q")), PathBuf::from("runs/q"));
        assert_eq!(lexical_normalize(Path::new("./a/./b")), PathBuf::from("a/b"));
        assert_eq!(lexical_normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(lexical_normalize(Path::new("a/..")), PathBuf::from("."));
    }

    #[test]
    fn overrides_apply() {
        let (_d, p) = write(MINIMAL);
        let r = Recipe::load(&p, &["optim.lr=1e-3".into(), "train.seed=7".into(), "output.dir=runs/x".into()])
            .expect("load");
        assert_eq!(r.optim.lr, 1e-3);
        assert_eq!(r.train.seed, 7);
        assert!(r.output.dir.ends_with("runs/x"));
    }

    #[test]
    fn a_misspelt_lora_target_is_an_error_not_left_out() {
        let (_d, p) = write(MINIMAL);
        let e =
            Recipe::load(&p, &["lora.target_modules=[\"q_proj\", \"qproj\"]".into()]).expect_err("typo").to_string();
        assert!(e.contains("target_modules") && e.contains("`qproj`") && e.contains("`down_proj`"), "{e}");
        let r = Recipe::load(&p, &["lora.target_modules=[\"self_attn.v_proj\", \"mlp.up_proj\"]".into()]);
        let targets = r.map(|r| r.lora.target_modules).ok();
        assert_eq!(targets, Some(vec![Projection::VProj, Projection::UpProj]));
    }

    #[test]
    fn errors_name_the_key() {
        let (_d, p) = write(&format!("{MINIMAL}[optim]\nlearning_rate = 1\n"));
        let e = Recipe::load(&p, &[]).expect_err("unknown key").to_string();
        assert!(e.contains("learning_rate"), "{e}");
        let (_d, p) = write(MINIMAL);
        for (o, key) in [
            ("optim.lr=0", "optim.lr"),
            ("optim.lr=-1", "optim.lr"),
            ("lora.r=0", "lora.r"),
            ("optim.schedule=\"exp\"", "optim.schedule"),
            ("augment.system_prompt_copies=1000", "augment.system_prompt_copies"),
            ("train.divergence_factor=nan", "train.divergence_factor"),
            ("data.val_size=1.5", "data.val_size"),
            ("early_stopping.metric=\"bleu\"", "early_stopping.metric"),
            ("early_stopping.direction=\"up\"", "early_stopping.direction"),
            ("early_stopping.patience=0", "early_stopping.patience"),
            ("optim.l1=-1", "optim.l1"),
            ("train.neftune_noise_alpha=-1", "train.neftune_noise_alpha"),
            ("audit.lint=\"maybe\"", "audit.lint"),
            ("optim.lr=1e400", "optim.lr"),
            ("train.max_steps=18446744073709551616", "train.max_steps"),
        ] {
            let e = Recipe::load(&p, &[o.into()]).expect_err(o).to_string();
            assert!(e.contains(key), "{o}: {e}");
        }
        // The metric and the direction list their values.
        let e = Recipe::load(&p, &["early_stopping.metric=bleu".into()]).expect_err("metric").to_string();
        assert!(e.contains("`bleu`") && e.contains("`val_loss`, `val_perplexity`, `val_token_accuracy`"), "{e}");
        let e = Recipe::load(&p, &["early_stopping.direction=up".into()]).expect_err("direction").to_string();
        assert!(e.contains("`up`") && e.contains("`minimize` or `maximize`"), "{e}");
        let e = Recipe::load(&p, &["lora.r=\"x\"".into()]).expect_err("type").to_string();
        assert!(e.contains('r'), "{e}");
    }

    /// Every float key: values out of its range (NaN and ±inf always) are errors naming the
    /// key, the value and the range; the edges of the range are accepted.
    #[test]
    fn every_float_key_is_checked_finite_and_in_range() {
        let (_d, p) = write(MINIMAL);
        // (key, rejected values, accepted values, range as printed)
        let cases: &[(&str, &[&str], &[&str], &str)] = &[
            ("lora.alpha", &["0", "-1"], &["1e-3", "1e4"], "a finite number > 0"),
            ("lora.dropout", &["1", "-0.1"], &["0", "0.99"], "in [0, 1)"),
            ("optim.lr", &["0", "-1"], &["1e-9", "1e6"], "a finite number > 0"),
            ("optim.weight_decay", &["-0.1"], &["0", "0.1"], "a finite number >= 0"),
            ("optim.beta1", &["1", "-0.1"], &["0", "0.99"], "in [0, 1)"),
            ("optim.beta2", &["1", "1.5"], &["0", "0.9999"], "in [0, 1)"),
            ("optim.eps", &["0", "-0.5"], &["1e-12", "1"], "a finite number > 0"),
            ("optim.l1", &["-0.001"], &["0", "1e-3"], "a finite number >= 0"),
            ("optim.max_grad_norm", &["-1"], &["0", "1e3"], "a finite number >= 0"),
            ("train.divergence_factor", &["-1", "0.5"], &["0", "1", "3"], "0 (off) or a finite number >= 1"),
            ("train.neftune_noise_alpha", &["-1"], &["0", "15"], "a finite number >= 0"),
            ("train.loss_ema", &["1", "-0.5"], &["0", "0.999"], "in [0, 1)"),
            ("early_stopping.min_delta", &["-0.001"], &["0", "0.5"], "a finite number >= 0"),
            ("data.near_dup_threshold", &["0", "1.01"], &["0.01", "1"], "in (0, 1]"),
            ("data.max_reject_fraction", &["-0.1", "1.5"], &["0", "1"], "in [0, 1]"),
        ];
        for (key, rejected, accepted, range) in cases {
            for v in rejected.iter().chain(&["nan", "inf", "-inf"]) {
                let o = format!("{key}={v}");
                let e = Recipe::load(&p, std::slice::from_ref(&o)).expect_err(&o).to_string();
                let shown = format!("got {}", if *v == "nan" { "NaN" } else { v });
                assert!(e.contains(&format!("`{key}`")) && e.contains(range) && e.ends_with(&shown), "{o}: {e}");
            }
            for v in *accepted {
                let o = format!("{key}={v}");
                Recipe::load(&p, std::slice::from_ref(&o)).unwrap_or_else(|e| panic!("{o}: {e}"));
            }
        }
        // A float too large for f32 reads as inf.
        let e = Recipe::load(&p, &["optim.lr=1e39".into()]).expect_err("1e39").to_string();
        assert!(e.contains("optim.lr") && e.contains("got inf"), "{e}");
        // The data and audit fractions with their own messages.
        for (o, key) in [
            ("data.val_size=nan", "data.val_size"),
            ("data.val_size=inf", "data.val_size"),
            ("audit.checks.near_duplicate_threshold=nan", "near_duplicate_threshold"),
            ("audit.checks.length_z=inf", "length_z"),
        ] {
            let e = Recipe::load(&p, &[o.into()]).expect_err(o).to_string();
            assert!(e.contains(key), "{o}: {e}");
        }
    }

    /// `optim.weight_decay=inf` used to pass and turn the loss into NaN; so does any decay that
    /// makes the per-step factor 1 − lr·wd zero or negative.
    #[test]
    fn weight_decay_inf_is_rejected() {
        let (_d, p) = write(MINIMAL);
        let e = Recipe::load(&p, &["optim.weight_decay=inf".into()]).expect_err("inf").to_string();
        assert_eq!(e, "invalid recipe value `optim.weight_decay`: must be a finite number >= 0, got inf");
        let e = Recipe::load(&p, &["optim.weight_decay=1e4".into()]).expect_err("lr·wd = 2").to_string();
        assert!(e.contains("optim.weight_decay") && e.contains("below 1"), "{e}");
        Recipe::load(&p, &["optim.weight_decay=4000".into()]).expect("lr·wd = 0.8");
    }

    #[test]
    fn max_len_above_the_context_length_is_an_error() {
        let (_d, p) = write(MINIMAL);
        let r = Recipe::load(&p, &["data.max_len=8193".into()]).expect("load");
        let e = r.check_context_length(8192, Path::new("m.gguf")).expect_err("too long").to_string();
        assert!(e.contains("data.max_len") && e.contains("8193") && e.contains("8192") && e.contains("m.gguf"), "{e}");
        r.check_context_length(8193, Path::new("m.gguf")).expect("fits");
    }

    #[test]
    fn warmup_not_below_the_planned_steps_is_a_warning() {
        let (_d, p) = write(MINIMAL);
        let r = Recipe::load(&p, &["optim.warmup_steps=2".into()]).expect("load");
        let w = r.warmup_warning(2).expect("warm-up as long as the run");
        assert!(w.contains("optim.warmup_steps = 2") && w.contains("lr 0"), "{w}");
        assert!(r.warmup_warning(1).is_some());
        assert!(r.warmup_warning(3).is_none());
        let r = Recipe::load(&p, &[]).expect("load");
        assert!(r.warmup_warning(1).is_none(), "no warm-up, no warning");
    }

    /// config.toml's `[run]` reads back, and is not part of what a resume compares.
    #[test]
    fn run_record_round_trips_and_is_not_a_setting() {
        let (_d, p) = write(MINIMAL);
        let r = Recipe::load(&p, &[]).expect("load");
        let mut recorded = r.clone();
        recorded.run = Some(RunRecord {
            tool_version: "0.1.0".into(),
            started: "2025-01-01T00:00:00Z".into(),
            command_line: vec!["tuneguard".into(), "train".into(), "r.toml".into()],
            model_path: "/models/m.gguf".into(),
            model_sha256: "ab".repeat(32),
        });
        let text = recorded.to_toml();
        assert!(text.contains("[run]") && text.contains("model_sha256"), "{text}");
        assert_eq!(toml::from_str::<Recipe>(&text).expect("round trip"), recorded);
        assert_eq!(recorded.training_fingerprint(), r.training_fingerprint());
        assert!(!r.to_toml().contains("[run]"), "a recipe without a record writes none");
    }
}
