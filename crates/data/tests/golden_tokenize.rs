//! The loss mask must match what transformers + the model's chat template produced for the PEFT
//! golden batch (`shared/golden/peft_lora_r4/peft_lora_golden.json`, key `training`).
mod common;

use tuneguard_data::{collate_padded, ChatTokenizer, Example, TokenizedExample, IGNORE_INDEX};
use tuneguard_model::chat::ChatMessage;

struct Golden {
    examples: Vec<Example>,
    input_ids: Vec<Vec<u32>>,
    labels: Vec<Vec<i64>>,
}

fn golden() -> anyhow::Result<Golden> {
    let path = tuneguard_model::testutil::shared_dir().join("golden/peft_lora_r4/peft_lora_golden.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let t = &v["training"];
    let pairs: Vec<(String, String)> = serde_json::from_value(t["examples"].clone())?;
    let examples = pairs
        .into_iter()
        .map(|(u, a)| Example::Chat(vec![ChatMessage::new("user", u), ChatMessage::new("assistant", a)]))
        .collect();
    Ok(Golden {
        examples,
        input_ids: serde_json::from_value(t["input_ids"].clone())?,
        labels: serde_json::from_value(t["labels"].clone())?,
    })
}

#[test]
fn golden_batch_tokens_and_labels_match_transformers() -> anyhow::Result<()> {
    let Some((tok, tmpl)) = common::default_tokenizer_and_template()? else { return Ok(()) };
    let g = golden()?;
    let ct = ChatTokenizer::new(&tok, &tmpl)?;
    assert_eq!(ct.end_of_turn(), "<|im_end|>");
    let pad = 2u32;
    let mut tokenized: Vec<TokenizedExample> = Vec::new();
    for (i, ex) in g.examples.iter().enumerate() {
        let t = ct.tokenize(ex)?;
        let n = t.len();
        assert_eq!(t.input_ids, g.input_ids[i][..n], "input_ids row {i}");
        assert_eq!(t.labels, g.labels[i][..n], "labels row {i}");
        assert!(g.input_ids[i][n..].iter().all(|&id| id == pad), "rest of row {i} is padding");
        assert!(g.labels[i][n..].iter().all(|&l| l == IGNORE_INDEX), "rest of row {i} is unsupervised");
        // Supervision ends with <|im_end|> (id 2) on the last token.
        assert_eq!(t.labels.last(), Some(&2));
        tokenized.push(t);
    }
    // Right-padded collation reproduces the whole golden batch.
    let batch = collate_padded(&tokenized, pad);
    assert_eq!(batch.batch, 2);
    assert_eq!(batch.seq, g.input_ids[0].len());
    assert_eq!(batch.input_ids, g.input_ids.concat());
    assert_eq!(batch.labels, g.labels.concat());
    Ok(())
}
