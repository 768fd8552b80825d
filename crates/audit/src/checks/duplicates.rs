//! Exact duplicates, conflicting answers and near duplicates, each against the rows before.
//!
//! The compared text is [`example_text`] after [`normalize_text`] (NFKC, lowercase, whitespace
//! collapsed), as in the train/validation leakage check. The first occurrence is kept; later
//! rows are flagged and name it.
//! - exact: 128-bit XXH3 of the normalized text (collision chance ≈ n²/2¹²⁹, nil at any size);
//! - conflicting answer: chat rows whose normalized prompt (every message before the last
//!   assistant turn) equals an earlier row's while the last assistant turn differs;
//! - near: MinHash signatures over word shingles ([`tuneguard_data::minhash`], Broder 1997),
//!   LSH banding with capped buckets ([`super::bands`]), confirmed by the Jaccard estimated from
//!   the stored signatures — not the exact shingle Jaccard, which would need the earlier texts.
//!   Only signatures are stored, and only their low 16 bits (b-bit minwise hashing, P. Li &
//!   A. C. König, WWW 2010): two different 32-bit minima agree on 16 bits with probability
//!   2⁻¹⁶, which biases the estimate by at most (1 − J)·2⁻¹⁶ and halves the memory to
//!   2·num_perm bytes per kept row. The estimate's standard error is sqrt(J(1 − J)/num_perm)
//!   (0.032 at J = 0.85 with 128 permutations), so pairs within a few hundredths of the
//!   threshold may go either way.
//!
//! What a near duplicate is compared on depends on what the rows share. Templated data (Super-
//! NaturalInstructions, Alpaca-style task sets) repeats one long task definition over many rows
//! that differ in a short input and answer; compared whole, such rows look alike because of the
//! definition alone (on the 12,800 SuperNI rows of ../shared, 1,863 rows, 14.6 %, at 0.85; 1,862
//! of them shared the definition with the row they matched, and most differed in both input and
//! answer). So:
//! - rows with the same normalized *shared part* are compared on the rest (the parts that vary):
//!   the shared part is the instruction of instruction-format rows (the loader puts it at the
//!   start of the user turn and records its length) or the system message a chat opens with
//!   ([`tuneguard_data::parts`]); the rest is the context and the response, or the
//!   later messages;
//! - rows whose shared parts differ, or that have none (prompt/completion, chats without a
//!   system message, text), are compared whole, so a copy with a reworded instruction is found.
//!
//! The rest is short (tens of words), so it is shingled in word 3-grams (at most
//! [`REST_SHINGLE_WORDS`]; `shingle_words` when smaller), as in the train/validation leakage
//! check: one changed word among n removes up to 3 of n − 2 shingles (Jaccard ≥ 0.85 from about
//! 39 words on) where 5-word shingles would remove 5 of n − 4 (from about 66 words on). Shorter
//! shingles would also match the minimal pairs that templated sets hold on purpose (Winograd
//! schemas, contrast sets: one word changed, a different answer). So a one-word change is found
//! in a longer input or answer; in a short one it is a different example here, as it often is
//! ("2 + 3" and "2 + 4"). Signatures of the rest keep their low 8 bits (bias ≤ (1 − J)·2⁻⁸).
//! On that SuperNI sample, 7 rows (0.05 %) are then near duplicates: 3 by the rest, 4 by the
//! whole row (tasks whose definitions differ in a few words).
//!
//! The LSH bands are tuned for `threshold − LSH_MARGIN` so that pairs at the threshold are
//! nearly always candidates; among candidates at or above the threshold the earliest row is
//! named. Rows removed by any check are not indexed: a later copy of them is not a duplicate.
use std::collections::HashMap;

use tuneguard_data::leakage::example_text;
pub use tuneguard_data::SharedKind;
use tuneguard_data::{normalize_text, split_shared, Example, MinHasher, RowParts, Signature};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use super::bands::CappedLsh;
use super::report::RowRef;

/// See the module docs. At the default 0.85 and 128 permutations, datasketch's rule would give
/// (8, 16) bands/rows: a pair at exactly 0.85 a candidate 46 % of the time. Tuned for 0.65, the
/// bands are (16, 8): 1 − (1 − 0.85⁸)¹⁶ ≈ 0.994 at 0.85, 0.947 at 0.8, and 0.061 at 0.5.
pub const LSH_MARGIN: f64 = 0.2;

/// Keys of one row, computed in parallel before the sequential comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowKeys {
    /// Hash of the normalized text.
    pub text: u128,
    /// Hashes of the normalized prompt and answer (chat rows with a prompt only).
    pub prompt_answer: Option<(u128, u128)>,
    /// MinHash signature of the whole row (when near-duplicate detection is on); its low 16
    /// bits are stored.
    pub sig: Option<Signature>,
    /// The row's shared part and the signature of the rest (near-duplicate detection on, rows
    /// with a shared part only).
    pub shared: Option<Shared>,
}

/// A row's shared part, as a key, and the MinHash signature of the rest of the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    pub kind: SharedKind,
    /// 64-bit XXH3 of the normalized shared part, never 0 (0 is "none" in the index).
    pub key: u64,
    pub rest: Signature,
}

/// How a row repeats an earlier one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DupVerdict {
    Exact(RowRef),
    Conflict(RowRef),
    /// The earlier row, the estimated Jaccard, and the shared part when the two rows share it
    /// and the Jaccard is of the rest.
    Near(RowRef, f64, Option<SharedKind>),
}

/// Words per shingle, at most, for the rest of rows with a shared part (see the module docs).
pub const REST_SHINGLE_WORDS: usize = 3;

/// The MinHash functions of the near-duplicate check: over the whole row, and over the rest of
/// a row after its shared part (shingles of at most [`REST_SHINGLE_WORDS`] words).
#[derive(Debug, Clone)]
pub struct NearHashers {
    pub whole: MinHasher,
    pub rest: MinHasher,
}

impl NearHashers {
    pub fn new(num_perm: usize, shingle_words: usize, seed: u64) -> Self {
        NearHashers {
            whole: MinHasher::new(num_perm, shingle_words, seed),
            rest: MinHasher::new(num_perm, shingle_words.min(REST_SHINGLE_WORDS), seed),
        }
    }
}

/// The keys of `e`; `hashers` is `None` when near duplicates are not checked.
/// `instruction_len`: for instruction-format rows, the byte length of the instruction at the
/// start of the user turn.
pub fn row_keys(e: &Example, instruction_len: Option<usize>, hashers: Option<&NearHashers>) -> RowKeys {
    let text = normalize_text(&example_text(e));
    let prompt_answer = match e {
        Example::Chat(m) => m.iter().rposition(|m| m.role == "assistant").filter(|&i| i > 0).map(|i| {
            let prompt: Vec<String> = m[..i].iter().map(|m| format!("{}: {}", m.role, m.content)).collect();
            let prompt = normalize_text(&prompt.join("\n"));
            (xxh3_128(prompt.as_bytes()), xxh3_128(normalize_text(&m[i].content).as_bytes()))
        }),
        Example::Text(_) => None,
    };
    let sig = hashers.map(|h| h.whole.signature(&text));
    let shared = hashers.and_then(|h| {
        let RowParts { kind, shared: part, rest } = split_shared(e, instruction_len)?;
        let key = xxh3_64(normalize_text(part).as_bytes()).max(1);
        Some(Shared { kind, key, rest: h.rest.signature(&normalize_text(&rest.join("\n"))) })
    });
    RowKeys { text: xxh3_128(text.as_bytes()), prompt_answer, sig, shared }
}

/// Share of positions where `sig` and a stored signature agree on their low 16 bits.
pub fn estimated_jaccard(sig: &[u32], stored: &[u16]) -> f64 {
    let n = sig.len().min(stored.len());
    if n == 0 {
        return 0.0;
    }
    sig.iter().zip(stored).filter(|(&x, &y)| x as u16 == y).count() as f64 / n as f64
}

/// [`estimated_jaccard`] against a signature stored in its low 8 bits (the rests of rows): two
/// different minima agree with probability 2⁻⁸, a bias of at most (1 − J)·2⁻⁸ (0.0006 at
/// J = 0.85), for half the memory.
pub fn estimated_jaccard_8(sig: &[u32], stored: &[u8]) -> f64 {
    let n = sig.len().min(stored.len());
    if n == 0 {
        return 0.0;
    }
    sig.iter().zip(stored).filter(|(&x, &y)| x as u8 == y).count() as f64 / n as f64
}

/// Which duplicate checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DupChecks {
    pub exact: bool,
    pub conflict: bool,
    pub near: bool,
}

/// What the earlier rows left behind: hashes, and the signatures of the rows kept.
pub struct DupIndex {
    checks: DupChecks,
    threshold: f64,
    num_perm: usize,
    exact: HashMap<u128, RowRef>,
    prompts: HashMap<u128, (u128, RowRef)>,
    /// Whole-row signatures.
    lsh: CappedLsh,
    /// Whole-row signature of LSH id i at `sigs[i·num_perm..]`.
    sigs: Vec<u16>,
    ids: Vec<RowRef>,
    /// Shared-part key of id i (0: none).
    shared: Vec<u64>,
    /// Signatures of the rest of rows with a shared part, in the buckets of their key.
    rest_lsh: CappedLsh,
    /// Rest signature (low 8 bits) of rest id k at `rest_sigs[k·num_perm..]`, its row's id at
    /// `rest_ids[k]`.
    rest_sigs: Vec<u8>,
    rest_ids: Vec<u32>,
}

impl DupIndex {
    pub fn new(checks: DupChecks, num_perm: usize, threshold: f64) -> Self {
        DupIndex {
            checks,
            threshold,
            num_perm,
            exact: HashMap::new(),
            prompts: HashMap::new(),
            lsh: CappedLsh::new(num_perm, (threshold - LSH_MARGIN).max(0.05)),
            sigs: Vec::new(),
            ids: Vec::new(),
            shared: Vec::new(),
            rest_lsh: CappedLsh::new(num_perm, (threshold - LSH_MARGIN).max(0.05)),
            rest_sigs: Vec::new(),
            rest_ids: Vec::new(),
        }
    }

    /// The stored signature at `at` of `sigs`.
    fn stored<'s, T>(&self, sigs: &'s [T], at: u32) -> Option<&'s [T]> {
        let at = at as usize * self.num_perm;
        sigs.get(at..at + self.num_perm)
    }

    /// The earliest kept row that `keys` nearly repeats: among rows with the same shared part by
    /// the rest, among the others by the whole row.
    fn near(&self, sig: &Signature, shared: Option<&Shared>) -> Option<DupVerdict> {
        let mut found: Option<(u32, f64, Option<SharedKind>)> = None;
        if let Some(s) = shared {
            // Rest ids are given in row order, so the first match is the earliest row.
            found = self.rest_lsh.candidates_in(s.key, &s.rest.0).into_iter().find_map(|k| {
                let id = *self.rest_ids.get(k as usize)?;
                if self.shared.get(id as usize) != Some(&s.key) {
                    return None; // a band-key collision with another group
                }
                let j = estimated_jaccard_8(&s.rest.0, self.stored(&self.rest_sigs, k)?);
                (j >= self.threshold).then_some((id, j, Some(s.kind)))
            });
        }
        let key = shared.map_or(0, |s| s.key);
        let whole =
            self.lsh.candidates(&sig.0).into_iter().take_while(|&id| found.is_none_or(|f| id < f.0)).find_map(|id| {
                if key != 0 && self.shared.get(id as usize) == Some(&key) {
                    return None; // same shared part: compared on the rest above
                }
                let j = estimated_jaccard(&sig.0, self.stored(&self.sigs, id)?);
                (j >= self.threshold).then_some((id, j, None))
            });
        let (id, j, kind) = whole.or(found)?;
        Some(DupVerdict::Near(*self.ids.get(id as usize)?, j, kind))
    }

    /// The first check that `keys` fails, in the order exact, conflict, near.
    pub fn check(&self, keys: &RowKeys) -> Option<DupVerdict> {
        if self.checks.exact {
            if let Some(&first) = self.exact.get(&keys.text) {
                return Some(DupVerdict::Exact(first));
            }
        }
        if let (true, Some((p, a))) = (self.checks.conflict, keys.prompt_answer) {
            match self.prompts.get(&p) {
                Some(&(answer, first)) if answer != a => return Some(DupVerdict::Conflict(first)),
                _ => {}
            }
        }
        let sig = keys.sig.as_ref().filter(|_| self.checks.near)?;
        self.near(sig, keys.shared.as_ref())
    }

    /// Records a kept row. An exact repeat adds nothing; the near-duplicate index takes rows
    /// while its ids and entries fit in u32 (billions of rows).
    pub fn insert(&mut self, row: RowRef, keys: &RowKeys) {
        if self.exact.contains_key(&keys.text) {
            return;
        }
        self.exact.insert(keys.text, row);
        if let Some((p, a)) = keys.prompt_answer {
            self.prompts.entry(p).or_insert((a, row));
        }
        if let (true, Some(sig), Ok(id)) = (self.checks.near, &keys.sig, u32::try_from(self.ids.len())) {
            if self.lsh.insert(id, &sig.0) {
                self.sigs.extend(sig.0.iter().map(|&v| v as u16));
                self.ids.push(row);
                self.shared.push(keys.shared.as_ref().map_or(0, |s| s.key));
                if let (Some(s), Ok(k)) = (&keys.shared, u32::try_from(self.rest_ids.len())) {
                    if self.rest_lsh.insert_in(s.key, k, &s.rest.0) {
                        self.rest_sigs.extend(s.rest.0.iter().map(|&v| v as u8));
                        self.rest_ids.push(id);
                    }
                }
            }
        }
    }

    /// Rows in the near-duplicate index.
    pub fn near_len(&self) -> usize {
        self.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tuneguard_model::chat::ChatMessage;

    /// `n` words `{tag}0 {tag}1 ...`.
    fn words(tag: &str, n: usize) -> String {
        (0..n).map(|i| format!("{tag}{i}")).collect::<Vec<_>>().join(" ")
    }

    fn with_one_changed(text: &str) -> String {
        let mut w: Vec<&str> = text.split(' ').collect();
        let mid = w.len() / 2;
        w[mid] = "changed";
        w.join(" ")
    }

    /// An instruction-format example as the loader builds it, and its instruction length.
    fn instruction_row(instruction: &str, context: &str, response: &str) -> (Example, Option<usize>) {
        let user = format!("{instruction}\n\n{context}");
        (
            Example::Chat(vec![ChatMessage::new("user", user), ChatMessage::new("assistant", response)]),
            Some(instruction.len()),
        )
    }

    fn system_row(system: &str, user: &str, answer: &str) -> (Example, Option<usize>) {
        let m = [("system", system), ("user", user), ("assistant", answer)];
        (Example::Chat(m.iter().map(|(r, c)| ChatMessage::new(*r, *c)).collect()), None)
    }

    /// Each row's verdict against the rows before it (all kept), as (earlier row, shared kind).
    fn verdicts(rows: &[(Example, Option<usize>)]) -> Vec<Option<(usize, Option<SharedKind>)>> {
        let hashers = NearHashers::new(128, 5, 7);
        let mut index = DupIndex::new(DupChecks { exact: true, conflict: false, near: true }, 128, 0.85);
        rows.iter()
            .enumerate()
            .map(|(i, (e, ins))| {
                let keys = row_keys(e, *ins, Some(&hashers));
                let v = index.check(&keys).map(|v| match v {
                    DupVerdict::Near(of, _, kind) => (of.line, kind),
                    other => panic!("row {i}: {other:?}"),
                });
                index.insert(RowRef { file: 0, line: i }, &keys);
                v
            })
            .collect()
    }

    #[test]
    fn rows_that_share_an_instruction_are_compared_on_the_rest() {
        // A 200-word definition dominates rows whose input and answer have 50 words.
        let (ins, ctx) = (words("def", 200), words("input", 45));
        let rows = [
            instruction_row(&ins, &ctx, &words("answer", 5)),
            // Same definition, another input and answer: not a duplicate (whole rows: 0.6–0.7).
            instruction_row(&ins, &words("other", 45), &words("reply", 5)),
            // Same definition, one word of the input changed: a near duplicate of row 0.
            instruction_row(&ins, &with_one_changed(&ctx), &words("answer", 5)),
            // One word of the definition changed, the same input and answer: whole rows alike.
            instruction_row(&with_one_changed(&ins), &ctx, &words("answer", 5)),
            // Rows 4 and 5 share another definition; for row 5 no instruction is known (as for
            // prompt/completion data): compared whole, the definition makes it a near duplicate.
            instruction_row(&words("task", 300), &words("short", 10), "a"),
            (instruction_row(&words("task", 300), &words("brief", 10), "b").0, None),
        ];
        assert_eq!(
            verdicts(&rows),
            [None, None, Some((0, Some(SharedKind::Instruction))), Some((0, None)), None, Some((4, None))]
        );
    }

    #[test]
    fn chats_that_open_with_the_same_system_prompt_are_compared_on_the_rest() {
        let (sys, question) = (words("sys", 200), words("question", 80));
        let rows = [
            system_row(&sys, &question, "yes"),
            system_row(&sys, &words("other", 80), "yes"),
            system_row(&sys, &with_one_changed(&question), "yes"),
            system_row(&with_one_changed(&sys), &question, "yes"),
        ];
        assert_eq!(verdicts(&rows), [None, None, Some((0, Some(SharedKind::SystemPrompt))), Some((0, None))]);
    }
}
