//! The `[audit]` section of a recipe: what each check does and its thresholds.
//!
//! ```toml
//! [audit]
//! near_duplicate_threshold = 0.85
//! actions = { pii = "quarantine", near_duplicate = "warn", schema = "fail" }
//! ```
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Action, CheckId};
use crate::error::{AuditError, Result};

/// Check groups accepted as keys of `actions`; a check named on its own overrides its group.
pub const GROUPS: [&str; 3] = ["schema", "duplicates", "pii"];

/// Data-guard settings. Every field has a default; unknown keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Action per check id (see [`CheckId::name`]) or group (`schema`, `duplicates`, `pii`):
    /// `off` (not run), `warn` (kept, reported), `quarantine` (removed to `quarantine.jsonl`),
    /// `fail` (quarantined and the run stops). Schema checks allow only `quarantine` and `fail`.
    /// Unnamed checks: schema, `control_chars` and duplicates quarantine; `length_outlier` and
    /// PII warn.
    pub actions: BTreeMap<String, Action>,
    /// Jaccard similarity (fraction 0–1) of word shingles at or above which a row is a near
    /// duplicate of an earlier one.
    pub near_duplicate_threshold: f64,
    /// MinHash permutations per signature (8–1024); more permutations estimate Jaccard more
    /// precisely (standard error ≈ sqrt(J(1−J)/num_perm)) and cost 2 bytes each per kept row.
    pub num_perm: usize,
    /// Words per shingle (1–32) of whole rows; the rest of rows that share an instruction or
    /// system prompt is shingled in at most 3 words (see [`super::duplicates`]).
    pub shingle_words: usize,
    /// Seed of the MinHash hash functions.
    pub seed: u64,
    /// Modified z-score (Iglewicz & Hoaglin; of the log length, unitless) above which a row is a
    /// length outlier, > 0.
    pub length_z: f64,
    /// Findings listed per check in audit.json, and kept in memory for checks whose action is
    /// `warn`; counts stay exact, and every quarantined row is written to `quarantine.jsonl`.
    pub max_listed_per_check: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            actions: BTreeMap::new(),
            near_duplicate_threshold: 0.85,
            num_perm: 128,
            shingle_words: 5,
            seed: 0x7475_6e65_6775_6172,
            length_z: 3.5,
            max_listed_per_check: 1000,
        }
    }
}

/// The action of every check, resolved from [`AuditConfig::actions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actions([Action; CheckId::ALL.len()]);

impl Actions {
    pub fn get(&self, check: CheckId) -> Action {
        self.0[check as usize]
    }

    /// Whether any of `checks` runs.
    pub fn any_on(&self, checks: &[CheckId]) -> bool {
        checks.iter().any(|&c| self.get(c) != Action::Off)
    }
}

fn in_group(group: &str, c: CheckId) -> bool {
    match group {
        "schema" => c.is_schema(),
        "pii" => c.is_pii(),
        _ => matches!(c, CheckId::ExactDuplicate | CheckId::ConflictingAnswer | CheckId::NearDuplicate),
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> AuditError {
    AuditError::Config { key: format!("audit.{key}"), reason: reason.into() }
}

impl AuditConfig {
    /// Checks every value and resolves the action table.
    ///
    /// # Errors
    /// `Config` naming the key (`audit.actions.foo`, `audit.num_perm`...) and the problem.
    pub fn resolve(&self) -> Result<Actions> {
        let t = self.near_duplicate_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Err(invalid("near_duplicate_threshold", format!("{t} is not a fraction in (0, 1]")));
        }
        if !(8..=1024).contains(&self.num_perm) {
            return Err(invalid("num_perm", format!("{} is not between 8 and 1024", self.num_perm)));
        }
        if !(1..=32).contains(&self.shingle_words) {
            return Err(invalid("shingle_words", format!("{} is not between 1 and 32", self.shingle_words)));
        }
        if !(self.length_z.is_finite() && self.length_z > 0.0) {
            return Err(invalid("length_z", format!("{} is not a positive number", self.length_z)));
        }
        let mut table = CheckId::ALL.map(CheckId::default_action);
        // Groups first so that a check named on its own wins whatever the key order.
        for (key, &action) in self.actions.iter().filter(|(k, _)| GROUPS.contains(&k.as_str())) {
            for c in CheckId::ALL.into_iter().filter(|&c| in_group(key, c)) {
                table[c as usize] = action;
            }
        }
        for (key, &action) in self.actions.iter().filter(|(k, _)| !GROUPS.contains(&k.as_str())) {
            let Some(c) = CheckId::ALL.into_iter().find(|c| c.name() == key) else {
                let known: Vec<&str> = GROUPS.into_iter().chain(CheckId::ALL.map(CheckId::name)).collect();
                return Err(invalid(&format!("actions.{key}"), format!("unknown check; expected one of {known:?}")));
            };
            table[c as usize] = action;
        }
        for c in CheckId::ALL.into_iter().filter(|c| c.is_schema()) {
            let a = table[c as usize];
            if !a.removes_row() {
                let reason =
                    format!("`{}` for a schema check; such rows hold no example, use quarantine or fail", a.name());
                return Err(invalid(&format!("actions.{}", c.name()), reason));
            }
        }
        Ok(Actions(table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(actions: &[(&str, Action)]) -> AuditConfig {
        AuditConfig { actions: actions.iter().map(|(k, a)| (k.to_string(), *a)).collect(), ..Default::default() }
    }

    #[test]
    fn defaults_groups_and_overrides() -> Result<()> {
        let a = AuditConfig::default().resolve()?;
        let want = [
            (CheckId::InvalidJson, Action::Quarantine),
            (CheckId::ControlChars, Action::Quarantine),
            (CheckId::LengthOutlier, Action::Warn),
            (CheckId::NearDuplicate, Action::Quarantine),
            (CheckId::PiiCard, Action::Warn),
        ];
        for (c, action) in want {
            assert_eq!(a.get(c), action, "{c}");
        }
        let a = cfg(&[("pii", Action::Quarantine), ("pii_email", Action::Off), ("schema", Action::Fail)]).resolve()?;
        assert_eq!(a.get(CheckId::PiiIban), Action::Quarantine);
        assert_eq!(a.get(CheckId::PiiEmail), Action::Off);
        assert_eq!(a.get(CheckId::MissingField), Action::Fail);
        assert_eq!(a.get(CheckId::ExactDuplicate), Action::Quarantine);
        Ok(())
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases: Vec<(AuditConfig, &str)> = vec![
            (cfg(&[("pii_mail", Action::Warn)]), "audit.actions.pii_mail"),
            (cfg(&[("invalid_json", Action::Warn)]), "audit.actions.invalid_json"),
            (cfg(&[("schema", Action::Off)]), "audit.actions.invalid_utf8"),
            (AuditConfig { near_duplicate_threshold: 0.0, ..Default::default() }, "audit.near_duplicate_threshold"),
            (AuditConfig { num_perm: 4, ..Default::default() }, "audit.num_perm"),
            (AuditConfig { shingle_words: 0, ..Default::default() }, "audit.shingle_words"),
            (AuditConfig { length_z: f64::NAN, ..Default::default() }, "audit.length_z"),
        ];
        for (c, want) in cases {
            match c.resolve() {
                Err(AuditError::Config { key, .. }) => assert_eq!(key, want),
                other => panic!("{want}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn serde_rejects_unknown_keys_and_fills_defaults() -> std::result::Result<(), serde_json::Error> {
        let c: AuditConfig = serde_json::from_str(r#"{"actions":{"near_duplicate":"warn"},"length_z":5}"#)?;
        assert_eq!(c.length_z, 5.0);
        assert_eq!(c.num_perm, 128);
        assert_eq!(c.actions.get("near_duplicate"), Some(&Action::Warn));
        assert!(serde_json::from_str::<AuditConfig>(r#"{"lenght_z":5}"#).is_err());
        assert!(serde_json::from_str::<AuditConfig>(r#"{"actions":{"x":"maybe"}}"#).is_err());
        Ok(())
    }
}
