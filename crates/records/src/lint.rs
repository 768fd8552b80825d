//! Findings of the pre-flight lint (tuneguard-audit's `lint`), listed in `summary.json`.

/// How bad a finding is. Ordered: `Error < Warning < Info`, so sorting puts errors first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The run would train something broken; fix before spending compute.
    Error,
    /// Likely a mistake, or a run that measures less than it should.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// `error`, `warning` or `info`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One finding. `message` and `fix` are single lines.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lint {
    /// Stable id, one of tuneguard-audit's `lint::ids::ALL`.
    pub id: &'static str,
    pub severity: Severity,
    /// What is wrong, with counts and the first affected example.
    pub message: String,
    /// What to change.
    pub fix: String,
}
