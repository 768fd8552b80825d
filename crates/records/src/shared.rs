//! What kind of shared part a row has (tuneguard-data's `parts`).

/// What kind of shared part a row has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedKind {
    /// The instruction of an instruction-format row.
    Instruction,
    /// The system message a chat opens with.
    SystemPrompt,
}

impl SharedKind {
    pub fn name(self) -> &'static str {
        match self {
            SharedKind::Instruction => "instruction",
            SharedKind::SystemPrompt => "system prompt",
        }
    }

    /// What follows the shared part: the parts compared when two rows share it.
    pub fn rest_name(self) -> &'static str {
        match self {
            SharedKind::Instruction => "input and answer",
            SharedKind::SystemPrompt => "turns after the system prompt",
        }
    }
}
