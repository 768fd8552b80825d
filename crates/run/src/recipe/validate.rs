//! The recipe's value checks: every float key against its range, and the keys whose valid
//! values depend on other keys. Each error names the key.
use super::{DistillOnSpec, ForgettingSection, Recipe, RecipeError, Result, ValSizeSpec};

/// The allowed values of a float key. Every range excludes NaN and ±inf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// (0, ∞)
    Positive,
    /// [0, ∞)
    NonNegative,
    /// [0, 1)
    ZeroToOneOpen,
    /// [0, 1]
    ZeroToOne,
    /// (0, 1]
    AboveZeroToOne,
    /// (0, 1)
    AboveZeroBelowOne,
    /// 0 (off), or [1, ∞)
    ZeroOrAtLeastOne,
}

impl Range {
    pub fn contains(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Range::Positive => v > 0.0,
                Range::NonNegative => v >= 0.0,
                Range::ZeroToOneOpen => (0.0..1.0).contains(&v),
                Range::ZeroToOne => (0.0..=1.0).contains(&v),
                Range::AboveZeroToOne => v > 0.0 && v <= 1.0,
                Range::AboveZeroBelowOne => v > 0.0 && v < 1.0,
                Range::ZeroOrAtLeastOne => v == 0.0 || v >= 1.0,
            }
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Range::Positive => "a finite number > 0",
            Range::NonNegative => "a finite number >= 0",
            Range::ZeroToOneOpen => "in [0, 1)",
            Range::ZeroToOne => "in [0, 1]",
            Range::AboveZeroToOne => "in (0, 1]",
            Range::AboveZeroBelowOne => "in (0, 1)",
            Range::ZeroOrAtLeastOne => "0 (off) or a finite number >= 1",
        })
    }
}

impl Recipe {
    /// The allowed range of every float key, checked by [`Recipe::validate`] (also listed in
    /// the README): a value outside it (NaN and ±inf included) is an error naming the key, the
    /// value and the range, given before the model is loaded.
    fn float_keys(&self) -> Vec<(&'static str, f64, String, Range)> {
        let (d, l, o, t, es) = (&self.data, &self.lora, &self.optim, &self.train, &self.early_stopping);
        // Each value is shown in its own type (an f32 as the f32 it is: 1e-8, not 9.99e-9).
        let f32k = |key, v: f32, range| (key, v as f64, v.to_string(), range);
        let f64k = |key, v: f64, range| (key, v, v.to_string(), range);
        let mut keys = vec![
            f32k("lora.alpha", l.alpha, Range::Positive),
            f32k("lora.dropout", l.dropout, Range::ZeroToOneOpen),
            f32k("optim.lr", o.lr, Range::Positive),
            f32k("optim.weight_decay", o.weight_decay, Range::NonNegative),
            f32k("optim.beta1", o.beta1, Range::ZeroToOneOpen),
            f32k("optim.beta2", o.beta2, Range::ZeroToOneOpen),
            f32k("optim.eps", o.eps, Range::Positive),
            f32k("optim.l1", o.l1, Range::NonNegative),
            f32k("optim.max_grad_norm", o.max_grad_norm, Range::NonNegative),
            f64k("train.divergence_factor", t.divergence_factor, Range::ZeroOrAtLeastOne),
            f32k("train.neftune_noise_alpha", t.neftune_noise_alpha, Range::NonNegative),
            f64k("train.loss_ema", t.loss_ema, Range::ZeroToOneOpen),
            f64k("early_stopping.min_delta", es.min_delta, Range::NonNegative),
            f64k("data.near_dup_threshold", d.near_dup_threshold, Range::AboveZeroToOne),
            f64k("forgetting.max_rise", self.forgetting.max_rise, Range::Positive),
            f64k("replay.ratio", self.replay.ratio, Range::ZeroToOneOpen),
            f64k("distill.lambda", self.distill.lambda, Range::NonNegative),
            f64k("distill.temperature", self.distill.temperature, Range::Positive),
            f64k("ewc.lambda", self.ewc.lambda, Range::NonNegative),
            f64k("l2sp.lambda", self.l2sp.lambda, Range::NonNegative),
        ];
        if let Some(f) = d.max_reject_fraction {
            keys.push(f64k("data.max_reject_fraction", f, Range::ZeroToOne));
        }
        keys
    }

    pub(super) fn validate(&self) -> Result<()> {
        let bad = |key: &str, reason: String| Err(RecipeError::Invalid { key: key.to_string(), reason });
        if let ValSizeSpec::Fraction(f) = self.data.val_size {
            if !Range::AboveZeroBelowOne.contains(f) {
                return bad(
                    "data.val_size",
                    format!("a fraction must be in (0, 1), got {f}; write a count as an integer"),
                );
            }
        }
        for (key, v, shown, range) in self.float_keys() {
            if !range.contains(v) {
                return bad(key, format!("must be {range}, got {shown}"));
            }
        }
        let f = &self.forgetting;
        if f.task.is_empty() && (f.stop || f.max_rise != ForgettingSection::default().max_rise) {
            return bad(
                "forgetting.task",
                "[forgetting] sets max_rise or stop but names no set; add [[forgetting.task]] tables".into(),
            );
        }
        for (i, t) in f.task.iter().enumerate() {
            if f.task[..i].iter().any(|o| o.name() == t.name()) {
                return bad(
                    "forgetting.task",
                    format!("two sets are named `{}`; give each a distinct `name`", t.name()),
                );
            }
        }
        for t in &self.forgetting.task {
            if matches!(t, tuneguard_eval::suite::TaskConfig::Generation(_)) {
                return bad(
                    "forgetting.task",
                    format!("`{}` is a generation task; use kind = \"perplexity\" or \"multiple_choice\"", t.name()),
                );
            }
            t.check().map_err(|e| RecipeError::Invalid {
                key: "forgetting.task".into(),
                reason: format!("`{}`: {e}", t.name()),
            })?;
            if !t.data().is_file() {
                return bad("forgetting.task", format!("`{}`: {} is not a file", t.name(), t.data().display()));
            }
        }
        self.validate_prevention()?;
        let o = &self.optim;
        // AdamW multiplies every weight by 1 − lr·weight_decay at each step: at 1 or above the
        // weights are zeroed or flip sign, and the loss turns into noise.
        let decay = o.lr as f64 * o.weight_decay as f64;
        if decay >= 1.0 {
            return bad(
                "optim.weight_decay",
                format!(
                    "{} × optim.lr {} = {decay} must be below 1 (each step multiplies the weights by 1 − lr × weight_decay)",
                    o.weight_decay, o.lr
                ),
            );
        }
        if self.lora.r == 0 {
            return bad("lora.r", "must be at least 1".into());
        }
        if self.data.max_len < 2 {
            return bad("data.max_len", format!("must be at least 2 tokens, got {}", self.data.max_len));
        }
        let es = &self.early_stopping;
        if es.patience == 0 {
            return bad("early_stopping.patience", "must be at least 1 evaluation".into());
        }
        if self.data.manifest.is_none()
            && (!self.data.trusted_keys.is_empty() || self.data.require_signature == Some(true))
        {
            return bad(
                "data.manifest",
                "trusted_keys and require_signature need a manifest (`tuneguard data lock`)".into(),
            );
        }
        // The audit's own float thresholds (near_duplicate_threshold, length_z) are checked here.
        if let Err(e) = self.audit.checks.resolve() {
            return Err(RecipeError::Invalid { key: "audit.checks".into(), reason: e.to_string() });
        }
        if self.augment.system_prompt_copies > 64 {
            return bad(
                "augment.system_prompt_copies",
                format!("{} copies of every example is too many (at most 64)", self.augment.system_prompt_copies),
            );
        }
        if self.augment.system_prompts.iter().any(|p| p.trim().is_empty()) {
            return bad("augment.system_prompts", "an empty system prompt is not a variation".into());
        }
        for (key, v) in [
            ("train.batch_size", self.train.batch_size),
            ("train.grad_accum", self.train.grad_accum),
            ("train.epochs", self.train.epochs),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        Ok(())
    }

    /// `[replay]`, `[distill]`, `[ewc]`, `[l2sp]`: the keys that need one another.
    fn validate_prevention(&self) -> Result<()> {
        let bad = |key: &str, reason: String| Err(RecipeError::Invalid { key: key.to_string(), reason });
        let (rp, kd, ewc) = (&self.replay, &self.distill, &self.ewc);
        match (&rp.data, rp.ratio > 0.0) {
            (None, true) => return bad("replay.data", "replay.ratio is set but no replay.data file is named".into()),
            (Some(_), false) => {
                return bad(
                    "replay.ratio",
                    "replay.data is named but replay.ratio is 0; set a fraction in (0, 1)".into(),
                )
            }
            (Some(p), true) if !p.is_file() => return bad("replay.data", format!("{} is not a file", p.display())),
            _ => {}
        }
        // General-domain rows must not be the task data: its validation rows would train.
        let same = |a: &std::path::Path, b: &std::path::Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b))
        {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        };
        let task_files: Vec<&std::path::Path> =
            std::iter::once(self.data.train.as_path()).chain(self.data.val_file.as_deref()).collect();
        for (key, general) in [("replay.data", rp.data.as_deref()), ("ewc.data", ewc.data.as_deref())] {
            if let Some(g) = general {
                if task_files.iter().any(|t| same(g, t)) {
                    return bad(
                        key,
                        format!(
                            "{} is the task's own data; general-domain rows must come from elsewhere (the validation rows would be trained on)",
                            g.display()
                        ),
                    );
                }
            }
        }
        if let Some(f) = ewc.fisher.as_ref().filter(|f| f.is_dir()) {
            return bad("ewc.fisher", format!("{} is a folder; name the Fisher's cache file", f.display()));
        }
        if kd.lambda > 0.0 && kd.on == DistillOnSpec::Replay && rp.ratio == 0.0 {
            return bad(
                "distill.on",
                "\"replay\" distils the replay rows, but [replay] is off; set replay.data and replay.ratio".into(),
            );
        }
        if ewc.lambda > 0.0 {
            match ewc.data.as_ref().or(rp.data.as_ref()) {
                None => {
                    return bad(
                        "ewc.data",
                        "EWC needs general-domain examples for the Fisher; name ewc.data (or replay.data)".into(),
                    )
                }
                Some(p) if !p.is_file() => return bad("ewc.data", format!("{} is not a file", p.display())),
                _ => {}
            }
            if ewc.examples == 0 {
                return bad("ewc.examples", "must be at least 1 example".into());
            }
        }
        let on = [("distill.lambda", kd.lambda), ("ewc.lambda", ewc.lambda), ("l2sp.lambda", self.l2sp.lambda)];
        if self.is_full() {
            if let Some((key, _)) = on.iter().find(|(_, l)| *l > 0.0) {
                return bad(
                    key,
                    "distillation, EWC and L2-SP are built for LoRA (the base is the weights with the adapter off); use train.method = \"lora\"".into(),
                );
            }
        }
        Ok(())
    }
}
