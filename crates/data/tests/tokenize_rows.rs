//! Rows left out at tokenization are listed one by one (kind and token counts), a row the chat
//! template cannot render is one such row rather than the end of the run, and an over-long row
//! is cut before it is tokenized without changing what training keeps of it.
mod common;

use tuneguard_data::{load_file, ChatTokenizer, Dropped, Example, LoadOptions, Overflow, RejectKind, TokenizeOptions};
use tuneguard_model::chat::{ChatMessage, ChatTemplate};

fn seed_examples(n: usize) -> anyhow::Result<Vec<Example>> {
    let path = tuneguard_model::testutil::shared_dir().join("data/instruction/selfinstruct_seed_tasks.jsonl");
    let mut data = load_file(&path, &LoadOptions::default())?;
    data.examples.truncate(n);
    Ok(data.examples)
}

fn listed(dropped: &[Dropped]) -> Vec<(usize, RejectKind, &str)> {
    dropped.iter().map(|d| (d.index, d.kind, d.reason.as_str())).collect()
}

/// Regression: rows dropped for length or for having nothing supervised were counted but
/// listed nowhere. Each is listed with its kind and token counts.
#[test]
fn rows_dropped_at_tokenization_are_listed_with_their_token_counts() -> anyhow::Result<()> {
    let Some((tok, tmpl)) = common::default_tokenizer_and_template()? else { return Ok(()) };
    let ct = ChatTokenizer::new(&tok, &tmpl)?;
    let examples = seed_examples(12)?;
    let t = ct.tokenize_each(&examples, TokenizeOptions { max_len: 150, overflow: Overflow::Drop })?;
    assert_eq!(
        listed(&t.dropped),
        [
            (2, RejectKind::TooLong, "168 tokens, longer than max_len 150 (overflow = \"drop\")"),
            (3, RejectKind::TooLong, "236 tokens, longer than max_len 150 (overflow = \"drop\")"),
            (6, RejectKind::TooLong, "159 tokens, longer than max_len 150 (overflow = \"drop\")"),
        ]
    );
    assert_eq!((t.stats.kept, t.stats.dropped_too_long, t.examples.len()), (9, 3, 9));
    let t = ct.tokenize_each(&examples, TokenizeOptions { max_len: 60, overflow: Overflow::Truncate })?;
    let why = "no supervised token left after truncation to max_len 60: the prompt takes";
    assert_eq!(
        listed(&t.dropped),
        [
            (0, RejectKind::NoSupervisedTokens, format!("{why} 63 of its 150 tokens").as_str()),
            (4, RejectKind::NoSupervisedTokens, format!("{why} 101 of its 124 tokens").as_str()),
        ]
    );
    assert_eq!((t.stats.kept, t.stats.truncated, t.stats.dropped_no_supervised), (10, 10, 2));
    assert!(t.check().is_ok());
    Ok(())
}

/// meta-llama/Llama-2-7b-chat-hf's template: it raises unless user and assistant turns alternate.
const LLAMA2: &str = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/// Regression: one conversation the chat template refuses stopped the whole run ("example 5:
/// ..."). It is now that row's `template_error`; the others are kept. A template that renders no
/// example at all is still an error, naming the first.
#[test]
fn a_row_the_template_cannot_render_is_dropped_alone() -> anyhow::Result<()> {
    let Some((tok, _)) = common::default_tokenizer_and_template()? else { return Ok(()) };
    let llama2 = ChatTemplate::new(LLAMA2.to_string(), tok.bos_token(), tok.eos_token(), "llama2.jinja")?;
    let ct = ChatTokenizer::new(&tok, &llama2)?;
    let mut examples = seed_examples(6)?;
    // Row 4: two user turns in a row.
    let Example::Chat(m) = &examples[4] else { anyhow::bail!("a chat example") };
    examples[4] = Example::Chat(vec![m[0].clone(), ChatMessage::new("user", "Please answer."), m[1].clone()]);
    let t = ct.tokenize_each(&examples, TokenizeOptions { max_len: 512, overflow: Overflow::Drop })?;
    assert_eq!(t.dropped.len(), 1);
    assert_eq!((t.dropped[0].index, t.dropped[0].kind), (4, RejectKind::TemplateError));
    assert!(
        t.dropped[0].reason.contains("Conversation roles must alternate user/assistant"),
        "{}",
        t.dropped[0].reason
    );
    assert_eq!((t.stats.kept, t.stats.dropped_template_error), (5, 1));
    assert!(t.check().is_ok());
    // Every example refused: the template is at fault, and the error names the first example.
    let all = ct.tokenize_each(&examples[4..5], TokenizeOptions { max_len: 512, overflow: Overflow::Drop })?;
    match all.check() {
        Err(tuneguard_data::DataError::Tokenize { example: 0, reason }) => {
            assert!(reason.contains("Conversation roles must alternate"), "{reason}")
        }
        other => anyhow::bail!("expected a Tokenize error, got {other:?}"),
    }
    Ok(())
}

/// Regression: one 50 MB row made `train` peak at 13.3 GB, most of it the tokenizer's encoding
/// of the whole row. An example longer than `max_example_bytes` is cut before it is rendered
/// and tokenized; what training keeps of it (its first `max_len` tokens and labels) is the same,
/// under both overflow policies, and a shorter row is not touched.
#[test]
fn an_over_long_row_is_cut_before_tokenizing_and_keeps_its_first_tokens() -> anyhow::Result<()> {
    let Some((tok, tmpl)) = common::default_tokenizer_and_template()? else { return Ok(()) };
    let ct = ChatTokenizer::new(&tok, &tmpl)?;
    let max_len = 64;
    // 2 × 64 tokens × 162 bytes (SmolLM2's longest vocabulary entry).
    assert_eq!(ct.max_example_bytes(max_len), Some(20_736));
    let seed = seed_examples(175)?;
    for e in &seed {
        assert_eq!(ct.tokenize_bounded(e, 384)?, ct.tokenize(e)?, "rows under the limit are tokenized whole");
    }
    let Example::Chat(m) = &seed[3] else { anyhow::bail!("a chat example") };
    let long_reply = m[1].content.repeat(200_000 / m[1].content.len());
    let cases = [
        Example::Chat(vec![m[0].clone(), ChatMessage::new("assistant", long_reply.clone())]),
        Example::Chat(vec![ChatMessage::new("user", long_reply.clone()), m[1].clone()]),
        Example::Text(long_reply),
    ];
    for ex in &cases {
        assert!(ex.text_bytes() > 190_000);
        let full = ct.tokenize(ex)?;
        let cut = ct.tokenize_bounded(ex, max_len)?;
        assert!(cut.len() > max_len && cut.len() < full.len() / 5, "{} of {} tokens", cut.len(), full.len());
        assert_eq!(cut.input_ids[..max_len], full.input_ids[..max_len]);
        assert_eq!(cut.labels[..max_len], full.labels[..max_len]);
        for overflow in [Overflow::Truncate, Overflow::Drop] {
            let t = ct.tokenize_each(std::slice::from_ref(ex), TokenizeOptions { max_len, overflow })?;
            let mut want = full.clone();
            want.input_ids.truncate(max_len);
            want.labels.truncate(max_len);
            let kept = overflow == Overflow::Truncate && want.num_supervised() > 0;
            assert_eq!(t.examples, if kept { vec![want] } else { vec![] }, "{overflow:?}");
            if let Some(d) = t.dropped.first() {
                let kind =
                    if overflow == Overflow::Drop { RejectKind::TooLong } else { RejectKind::NoSupervisedTokens };
                assert_eq!(d.kind, kind);
                assert!(
                    d.reason.starts_with("at least ") || d.reason.contains("the prompt takes more than"),
                    "{}",
                    d.reason
                );
                assert!(d.reason.contains("bytes were cut to 20736 before tokenizing"), "{}", d.reason);
            }
        }
    }
    Ok(())
}
