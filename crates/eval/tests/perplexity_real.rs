//! Sliding-window perplexity on the real model and real text (WikiText-2 test), against an
//! independent computation: every scored token's NLL from its own forward pass over exactly
//! the context its window gives it.
use tuneguard_eval::perplexity::{perplexity, windows};
use tuneguard_eval::texts::read_texts;
use tuneguard_model::llama::{KvCache, LogitsFor};
use tuneguard_model::testutil::{repo_root, require_default_model};

type Res = Result<(), Box<dyn std::error::Error>>;

#[test]
fn windows_give_each_token_its_context() -> Res {
    let Some(model_path) = require_default_model() else { return Ok(()) };
    let m = tuneguard_model::load(&model_path)?;
    let data = repo_root().join("../shared/data/general_text/wikitext2_test.jsonl");
    let rows = read_texts(&data, "text")?;
    assert_eq!(rows.len(), 60, "the WikiText-2 test split has 60 articles");
    let mut tokens = m.tokenizer.encode(&rows.join("\n\n"), false)?;
    tokens.truncate(70);
    let (window, stride) = (24, 10);
    let r = perplexity(&m.model, &tokens, window, stride, None, &|| {})?;
    // Token p is predicted from tokens begin..p of the window that scores it.
    let v = m.model.config.vocab_size;
    let (mut nll, mut n) = (0.0, 0u64);
    for w in windows(tokens.len(), window, stride)? {
        for p in w.scored_from..w.end {
            let mut cache = KvCache::new(&m.model.config);
            let logits = m.model.forward(&tokens[w.begin..p], &mut cache, LogitsFor::Last)?;
            nll += tuneguard_model::ops::log_sum_exp(&logits[..v]) - logits[tokens[p] as usize] as f64;
            n += 1;
        }
    }
    assert_eq!(r.tokens_scored, 69, "every token but the first");
    assert_eq!(r.tokens_scored, n);
    let want = (nll / n as f64).exp();
    assert!((r.perplexity - want).abs() / want < 1e-4, "windows {} vs token by token {want}", r.perplexity);
    // Real text, a real model: neither a uniform guess (vocab 49152) nor a perfect one.
    assert!(r.perplexity > 2.0 && r.perplexity < 1000.0, "{}", r.perplexity);
    Ok(())
}
