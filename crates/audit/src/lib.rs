//! tuneguard-audit: the data guard run before any compute is spent. Row checks stream over the
//! data and quarantine what they reject; the pre-flight lint looks for the silent fine-tuning bugs
//! (masked end-of-turn token, examples with nothing supervised, a foreign chat template...).
pub mod checks;
pub mod error;
pub mod lint;

pub use error::{AuditError, Result};
