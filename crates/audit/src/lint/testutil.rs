//! Synthetic inputs for the lint unit tests, tokenized with the default model's real tokenizer.
use tuneguard_data::tokenize::{Overflow, TokenizeOptions, TokenizedExample};
use tuneguard_data::IGNORE_INDEX;
use tuneguard_model::gguf::GgufFile;
use tuneguard_model::tokenizer::TextTokenizer;

use super::prepare::{Ctx, Item, Outcome};

/// The default model's tokenizer, or `None` when the test should be skipped.
pub(crate) fn tokenizer() -> Option<TextTokenizer> {
    let path = tuneguard_model::testutil::require_default_model()?;
    let gguf = GgufFile::open(&path).expect("open the default model");
    Some(TextTokenizer::from_gguf(&gguf).expect("tokenizer of the default model"))
}

/// A SmolLM2 context: end-of-turn = eos = pad = `<|im_end|>` (id 2), max_len 64, truncate.
pub(crate) fn ctx(tok: &TextTokenizer) -> Ctx<'_> {
    Ctx {
        tokenizer: tok,
        eot_text: "<|im_end|>".into(),
        eot_id: Some(2),
        eos_id: Some(2),
        pad_id: Some(2),
        opts: TokenizeOptions { max_len: 64, overflow: Overflow::Truncate },
        lines: None,
        path: None,
    }
}

/// Concatenated `(text, supervised)` parts.
pub(crate) fn parts(tok: &TextTokenizer, parts: &[(&str, bool)]) -> TokenizedExample {
    let mut t = TokenizedExample { input_ids: Vec::new(), labels: Vec::new() };
    for (text, sup) in parts {
        let ids = tok.encode(text, false).expect("encode");
        t.labels.extend(ids.iter().map(|&i| if *sup { i64::from(i) } else { IGNORE_INDEX }));
        t.input_ids.extend(ids);
    }
    t
}

/// A chat item with the given replies.
pub(crate) fn chat_item(index: usize, tokens: TokenizedExample, outcome: Outcome, replies: &[&str]) -> Item {
    Item {
        index,
        full_len: tokens.len(),
        first_supervised: tokens.labels.iter().position(|&l| l != IGNORE_INDEX),
        tokens,
        outcome,
        replies: replies.iter().map(|r| r.to_string()).collect(),
        chat: true,
    }
}

/// The usual single-turn chat parts with the reply and its end-of-turn supervised as given.
pub(crate) fn turn(reply: &str, eot_supervised: bool) -> Vec<(&str, bool)> {
    vec![
        ("<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n", false),
        (reply, true),
        ("<|im_end|>", eot_supervised),
    ]
}

/// Quickstart-like settings over no examples: vocab 49152, max_len 64 (truncate), no packing,
/// pad = eos = 2, batch 4.
pub(crate) fn input(tok: &TextTokenizer) -> super::LintInput<'_> {
    super::LintInput {
        tokenizer: tok,
        model_vocab_size: 49152,
        model_chat_template: None,
        data_chat_template: None,
        end_of_turn: None,
        train: &[],
        train_lines: None,
        train_path: None,
        val: &[],
        tokenize: TokenizeOptions { max_len: 64, overflow: Overflow::Truncate },
        packing: false,
        packing_uses_masks: true,
        pad_token_id: Some(2),
        batch_size: 4,
    }
}
