//! Row checks with quarantine: every row of the data files is validated, compared with the rows
//! before it, and either kept, kept with a warning, or quarantined — never dropped silently.
//!
//! | check id | what it finds | default action |
//! |---|---|---|
//! | `invalid_utf8`, `invalid_json`, `not_an_object`, `duplicate_key`, `missing_field`, `empty_field`, `wrong_type`, `bad_role`, `no_assistant_turn`, `assistant_first`, `invalid_csv`, `field_count`, `unknown_format` | schema problems, as found by the loader ([`tuneguard_data::load_reader`]) | quarantine |
//! | `control_chars` | C0/C1 control characters other than tab/newline/CR, U+FEFF, bidi overrides | quarantine |
//! | `length_outlier` | robust z-score of the log length above `length_z` ([`length`]) | warn |
//! | `exact_duplicate` | same normalized text as an earlier row | quarantine |
//! | `conflicting_answer` | same normalized prompt as an earlier row, different answer | quarantine |
//! | `near_duplicate` | estimated Jaccard ≥ `near_duplicate_threshold` with an earlier row: of the rest when both share an instruction or opening system message, else of the whole rows ([`duplicates`]) | quarantine |
//! | `pii_email`, `pii_phone`, `pii_card`, `pii_iban` | personal data ([`pii`]) | warn |
//!
//! Each data file streams twice at most: once for the checks, once more only to copy the raw
//! text of quarantined rows into `quarantine.jsonl` ([`write_audit_outputs`] writes it and
//! `audit.json` as one pair).
pub mod bands;
pub mod config;
pub mod control;
pub mod duplicates;
pub mod length;
mod local;
pub mod pii;
pub mod quarantine;
pub mod report;
mod run;
mod stream;

use serde::{Deserialize, Serialize};
use tuneguard_data::RejectKind;

pub use config::AuditConfig;
pub use quarantine::{write_audit_json, write_audit_outputs, write_quarantine};
pub use report::{AuditReport, CheckCounts, Finding, RowCounts, RowRef, SourcedExample};
pub use run::{audit_files, AuditOptions, LengthFn};

/// Defines [`CheckId`]: the loader's schema problems (from
/// [`tuneguard_data::with_schema_kinds`], the list [`RejectKind`] is made from), then the
/// audit's own checks.
macro_rules! check_id {
    ($($(#[$doc:meta])* $kind:ident = $name:literal,)*) => {
        /// A check's stable id, as written in reports and in the recipe's `[audit.actions]`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum CheckId {
            $($(#[$doc])* $kind,)*
            ControlChars,
            LengthOutlier,
            ExactDuplicate,
            ConflictingAnswer,
            NearDuplicate,
            PiiEmail,
            PiiPhone,
            PiiCard,
            PiiIban,
        }

        impl CheckId {
            /// Every check, in report order.
            pub const ALL: [CheckId; [$($name),*].len() + 9] = [
                $(CheckId::$kind,)*
                CheckId::ControlChars,
                CheckId::LengthOutlier,
                CheckId::ExactDuplicate,
                CheckId::ConflictingAnswer,
                CheckId::NearDuplicate,
                CheckId::PiiEmail,
                CheckId::PiiPhone,
                CheckId::PiiCard,
                CheckId::PiiIban,
            ];

            /// Stable snake_case id.
            pub fn name(self) -> &'static str {
                match self {
                    $(CheckId::$kind => $name,)*
                    CheckId::ControlChars => "control_chars",
                    CheckId::LengthOutlier => "length_outlier",
                    CheckId::ExactDuplicate => "exact_duplicate",
                    CheckId::ConflictingAnswer => "conflicting_answer",
                    CheckId::NearDuplicate => "near_duplicate",
                    CheckId::PiiEmail => "pii_email",
                    CheckId::PiiPhone => "pii_phone",
                    CheckId::PiiCard => "pii_card",
                    CheckId::PiiIban => "pii_iban",
                }
            }

            /// The schema check of a row the loader rejected; `None` for the kinds of
            /// tokenization ([`RejectKind::is_tokenization`]), which the loader never gives.
            pub fn of_reject(kind: RejectKind) -> Option<CheckId> {
                Some(match kind {
                    $(RejectKind::$kind => CheckId::$kind,)*
                    RejectKind::TooLong
                    | RejectKind::NoSupervisedTokens
                    | RejectKind::TemplateError
                    | RejectKind::TooShort => return None,
                })
            }
        }
    };
}

tuneguard_data::with_schema_kinds!(check_id);

/// What a finding does to its row and to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The check does not run.
    Off,
    /// The row is kept and the finding reported.
    Warn,
    /// The row goes to `quarantine.jsonl` instead of training.
    Quarantine,
    /// The row is quarantined and the run stops before training ([`AuditReport::failed`]).
    Fail,
}

impl Action {
    /// Whether the row is removed from the data.
    pub fn removes_row(self) -> bool {
        matches!(self, Action::Quarantine | Action::Fail)
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Off => "off",
            Action::Warn => "warn",
            Action::Quarantine => "quarantine",
            Action::Fail => "fail",
        }
    }
}

impl CheckId {
    /// Schema checks come from the loader: their rows hold no usable example, so they can only
    /// be quarantined or fail the run.
    pub fn is_schema(self) -> bool {
        self < CheckId::ControlChars
    }

    pub fn is_pii(self) -> bool {
        self >= CheckId::PiiEmail
    }

    /// The action used when the configuration does not name the check.
    pub fn default_action(self) -> Action {
        if self.is_pii() || self == CheckId::LengthOutlier {
            Action::Warn
        } else {
            Action::Quarantine
        }
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_serde_and_reject_kind_names() -> Result<(), serde_json::Error> {
        for c in CheckId::ALL {
            assert_eq!(serde_json::to_value(c)?, c.name());
        }
        let kinds = [
            RejectKind::InvalidUtf8,
            RejectKind::InvalidJson,
            RejectKind::NotAnObject,
            RejectKind::DuplicateKey,
            RejectKind::MissingField,
            RejectKind::EmptyField,
            RejectKind::WrongType,
            RejectKind::BadRole,
            RejectKind::NoAssistantTurn,
            RejectKind::AssistantFirst,
            RejectKind::InvalidCsv,
            RejectKind::FieldCount,
            RejectKind::UnknownFormat,
        ];
        for k in kinds {
            let Some(c) = CheckId::of_reject(k) else { panic!("{k:?} has no check") };
            assert_eq!(c.name(), k.name());
            assert!(c.is_schema() && !c.is_pii());
        }
        assert_eq!(CheckId::ALL.iter().filter(|c| c.is_schema()).count(), kinds.len());
        for k in [RejectKind::TooLong, RejectKind::NoSupervisedTokens, RejectKind::TemplateError] {
            assert!(k.is_tokenization() && CheckId::of_reject(k).is_none());
        }
        assert!(kinds.iter().all(|k| !k.is_tokenization()));
        assert_eq!(RejectKind::SCHEMA, kinds, "the loader's kinds, from the one list");
        assert_eq!(CheckId::ALL.iter().filter(|c| c.is_pii()).count(), 4);
        Ok(())
    }
}
