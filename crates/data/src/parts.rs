//! The part of a row that many rows share, and the parts that vary.
//!
//! Templated data (Super-NaturalInstructions, Alpaca-style task sets) repeats one long task
//! definition over many rows that differ in a short input and answer; chat sets repeat one
//! system prompt. Compared whole, such rows look alike because of the shared part alone, so the
//! near-duplicate checks (the audit's `near_duplicate` and the train/validation leakage check)
//! compare rows that share it on the rest, and every other pair whole.
use crate::record::Example;

/// What kind of shared part a row has (a plain-data type of `summary.json`, defined in
/// tuneguard-records).
pub use tuneguard_records::SharedKind;

/// A row split into its shared part and the texts of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowParts<'a> {
    pub kind: SharedKind,
    pub shared: &'a str,
    pub rest: Vec<&'a str>,
}

/// The shared part of `e` and the texts of the rest: the first `instruction_len` bytes of the
/// user turn (instruction-format rows: the loader writes the instruction, then "\n\n" and the
/// context when there is one, and records the length in [`crate::LoadedData::instruction_lens`]),
/// else an opening system message followed by more turns. `None` for other rows
/// (prompt/completion, chats without a system message, text), and for a row cut inside its
/// instruction.
pub fn split_shared(e: &Example, instruction_len: Option<usize>) -> Option<RowParts<'_>> {
    let Example::Chat(m) = e else { return None };
    let (first, later) = m.split_first()?;
    let later = later.iter().map(|m| m.content.as_str());
    match instruction_len {
        Some(n) if first.role == "user" && first.content.is_char_boundary(n) => {
            let (shared, head) = first.content.split_at(n);
            Some(RowParts { kind: SharedKind::Instruction, shared, rest: std::iter::once(head).chain(later).collect() })
        }
        _ if first.role == "system" && m.len() > 1 => {
            Some(RowParts { kind: SharedKind::SystemPrompt, shared: first.content.as_str(), rest: later.collect() })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuneguard_model::chat::ChatMessage;

    fn chat(pairs: &[(&str, &str)]) -> Example {
        Example::Chat(pairs.iter().map(|(r, c)| ChatMessage::new(*r, *c)).collect())
    }

    #[test]
    fn instruction_system_prompt_or_none() {
        let ins = chat(&[("user", "Sum.\n\n2 3"), ("assistant", "5")]);
        let want = RowParts { kind: SharedKind::Instruction, shared: "Sum.", rest: vec!["\n\n2 3", "5"] };
        assert_eq!(split_shared(&ins, Some(4)), Some(want));
        // Cut inside the instruction (or past the end): no shared part.
        assert_eq!(split_shared(&chat(&[("user", "Su")]), Some(4)), None);
        assert_eq!(split_shared(&ins, None), None);
        let sys = chat(&[("system", "S"), ("user", "U"), ("assistant", "A")]);
        let want = RowParts { kind: SharedKind::SystemPrompt, shared: "S", rest: vec!["U", "A"] };
        assert_eq!(split_shared(&sys, None), Some(want));
        assert_eq!(split_shared(&chat(&[("system", "S")]), None), None);
        assert_eq!(split_shared(&Example::Text("t".into()), Some(1)), None);
    }
}
