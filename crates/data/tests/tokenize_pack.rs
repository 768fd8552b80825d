//! Tokenizing real data with the default model's chat template, then padding and packing.
mod common;

use tuneguard_data::{
    collate_packed, collate_padded, load_file, num_supervised, plan_packing, ChatTokenizer, DataError, Example,
    LoadOptions, Overflow, TokenizeOptions, TokenizedExample, IGNORE_INDEX,
};
use tuneguard_model::chat::ChatMessage;

fn superni_examples(n: usize) -> anyhow::Result<Vec<Example>> {
    let path = tuneguard_model::testutil::shared_dir().join("data/instruction/superni_en_shared.jsonl");
    let mut data = load_file(&path, &LoadOptions::default())?;
    data.examples.truncate(n);
    Ok(data.examples)
}

/// Supervised tokens that count in a shifted loss: all but an example's first position.
fn effective_supervised(t: &TokenizedExample) -> usize {
    t.labels.iter().skip(1).filter(|&&l| l != IGNORE_INDEX).count()
}

#[test]
fn multi_turn_supervises_each_assistant_turn_through_im_end() -> anyhow::Result<()> {
    let Some((tok, tmpl)) = common::default_tokenizer_and_template()? else { return Ok(()) };
    let ct = ChatTokenizer::new(&tok, &tmpl)?;
    let ex = Example::Chat(vec![
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
        ChatMessage::new("assistant", "Hello there."),
        ChatMessage::new("user", "Bye"),
        ChatMessage::new("assistant", "Goodbye!"),
        ChatMessage::new("user", "A trailing user turn is cut off."),
    ]);
    let t = ct.tokenize(&ex)?;
    let sup: Vec<u32> = t.labels.iter().filter(|&&l| l != IGNORE_INDEX).map(|&l| l as u32).collect();
    assert_eq!(tok.decode(&sup, false)?, "Hello there.<|im_end|>Goodbye!<|im_end|>");
    let text = tok.decode(&t.input_ids, false)?;
    assert!(text.starts_with("<|im_start|>system\nBe brief.<|im_end|>\n"), "{text}");
    assert!(text.ends_with("<|im_start|>assistant\nGoodbye!<|im_end|>"), "{text}");
    // The newline after the first <|im_end|> is not supervised.
    let im_end = tok.token_to_id("<|im_end|>").unwrap_or(u32::MAX);
    let k = t.labels.iter().position(|&l| l == i64::from(im_end)).unwrap_or(0);
    assert_eq!(t.labels[k + 1], IGNORE_INDEX);
    Ok(())
}

#[test]
fn text_examples_are_fully_supervised_and_end_with_eos() -> anyhow::Result<()> {
    let Some((tok, tmpl)) = common::default_tokenizer_and_template()? else { return Ok(()) };
    let ct = ChatTokenizer::new(&tok, &tmpl)?;
    let t = ct.tokenize(&Example::Text("The quick brown fox".into()))?;
    assert_eq!(t.num_supervised(), t.len());
    assert_eq!(t.input_ids.last().copied(), tok.eos_id());
    Ok(())
}

#[test]
fn truncate_and_drop_policies_are_counted() -> anyhow::Result<()> {
    let Some((tok, tmpl)) = common::default_tokenizer_and_template()? else { return Ok(()) };
    let ct = ChatTokenizer::new(&tok, &tmpl)?;
    let examples = superni_examples(200)?;
    let full: Vec<usize> = examples.iter().map(|e| ct.tokenize(e).map(|t| t.len())).collect::<Result<_, _>>()?;
    let max_len = 128;
    let long = full.iter().filter(|&&n| n > max_len).count();
    assert!(long > 10 && long < 190, "fixture should mix lengths: {long} of 200 long");

    let (kept, stats) = ct.tokenize_all(&examples, TokenizeOptions { max_len, overflow: Overflow::Drop })?;
    assert_eq!(stats.dropped_too_long, long);
    assert_eq!(kept.len(), 200 - long);
    assert!(kept.iter().all(|t| t.len() <= max_len));

    let (kept, stats) = ct.tokenize_all(&examples, TokenizeOptions { max_len, overflow: Overflow::Truncate })?;
    assert_eq!(stats.truncated + stats.dropped_no_supervised, long);
    assert!(stats.dropped_no_supervised > 0, "long SuperNI prompts leave no response after truncation");
    assert_eq!(kept.len(), stats.kept);
    assert_eq!(stats.supervised_tokens, kept.iter().map(TokenizedExample::num_supervised).sum::<usize>());
    assert!(kept.iter().all(|t| t.len() <= max_len && t.num_supervised() > 0));

    let tiny = TokenizeOptions { max_len: 4, overflow: Overflow::Truncate };
    assert!(matches!(ct.tokenize_all(&examples[..3], tiny), Err(DataError::EmptyAfterTokenize { examples: 3, .. })));
    Ok(())
}

#[test]
fn packing_invariants_on_real_data() -> anyhow::Result<()> {
    let Some((tok, tmpl)) = common::default_tokenizer_and_template()? else { return Ok(()) };
    let ct = ChatTokenizer::new(&tok, &tmpl)?;
    let max_len = 256;
    let (exs, _) =
        ct.tokenize_all(&superni_examples(300)?, TokenizeOptions { max_len, overflow: Overflow::Truncate })?;
    let pad = tok.pad_id().unwrap_or(0);
    let plan = plan_packing(&exs, max_len)?;
    assert_eq!(plan, plan_packing(&exs, max_len)?, "deterministic");
    assert!(plan.len() < exs.len(), "packing saves rows: {} rows for {} examples", plan.len(), exs.len());
    let mut placed: Vec<usize> = plan.concat();
    placed.sort_unstable();
    assert_eq!(placed, (0..exs.len()).collect::<Vec<_>>(), "every example placed once");

    let batch = collate_packed(&exs, &plan, pad)?;
    assert!(batch.seq <= max_len);
    let want: usize = exs.iter().map(effective_supervised).sum();
    assert_eq!(num_supervised(&batch), want, "supervised tokens preserved");
    assert_eq!(num_supervised(&collate_padded(&exs, pad)), want, "same count when padded");
    assert_eq!(batch.num_tokens(), exs.iter().map(TokenizedExample::len).sum::<usize>());

    for (r, row) in plan.iter().enumerate() {
        let at = |v: &[u32], k: usize| v[r * batch.seq + k];
        let mut k = 0;
        for (s, &i) in row.iter().enumerate() {
            let ex = &exs[i];
            for j in 0..ex.len() {
                assert_eq!(at(&batch.segment_ids, k), s as u32 + 1, "segment ids distinct per example");
                assert_eq!(at(&batch.position_ids, k), j as u32, "positions restart per example");
                assert_eq!(at(&batch.input_ids, k), ex.input_ids[j]);
                k += 1;
            }
            let start = k - ex.len();
            assert_eq!(batch.labels[r * batch.seq + start], IGNORE_INDEX, "an example's first token is no target");
            if s > 0 {
                assert!(!batch.may_attend(r, k - 1, start - 1), "no attention into the previous example");
                assert!(batch.may_attend(r, k - 1, start));
            }
        }
        for rest in k..batch.seq {
            assert_eq!(at(&batch.segment_ids, rest), 0);
            assert_eq!(at(&batch.input_ids, rest), pad);
        }
    }
    Ok(())
}

#[test]
fn templates_unfit_for_masking_are_errors_naming_the_example() -> anyhow::Result<()> {
    let Some((tok, _)) = common::default_tokenizer_and_template()? else { return Ok(()) };
    let ex = Example::Chat(vec![ChatMessage::new("user", "Hi"), ChatMessage::new("assistant", "Hello")]);
    let cases = [
        // No end-of-turn text after the reply.
        (
            "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
            "does not end assistant message 1 with the end-of-turn token `<|im_end|>`",
        ),
        // The generation prompt differs from how a reply is rendered.
        (
            "{% for m in messages %}{{ m.role }}: {{ m.content }}<|im_end|>{% endfor %}{% if add_generation_prompt %}ASSISTANT: {% endif %}",
            "is not a prefix of the rendering through message 1",
        ),
    ];
    for (src, want) in cases {
        let tmpl = tuneguard_model::chat::ChatTemplate::new(src.to_string(), None, tok.eos_token(), "test")?;
        let ct = ChatTokenizer::new(&tok, &tmpl)?;
        match ct.tokenize_all(std::slice::from_ref(&ex), TokenizeOptions { max_len: 64, overflow: Overflow::Drop }) {
            Err(DataError::Tokenize { example: 0, reason }) => assert!(reason.contains(want), "{reason}"),
            other => anyhow::bail!("expected a Tokenize error, got {other:?}"),
        }
    }
    Ok(())
}
