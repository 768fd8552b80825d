//! Inference throughput, batch 1, same shapes as `shared/bench/pytorch/bench_infer.py`:
//! prefill of a 512-token prompt (logits for the last position, and for all positions) and greedy
//! decode of 128 new tokens after a 64-token prompt, on `--threads` threads (default 2).
//! Not a test: run `cargo bench -p tuneguard-model --bench infer -- [--model PATH] [--reps N]`
//! (or `scripts/bench-infer-vs-pytorch.sh` to measure the PyTorch baseline right after it).
use std::time::Instant;

use tuneguard_model::chat::ChatMessage;
use tuneguard_model::generate::argmax;
use tuneguard_model::llama::{KvCache, LogitsFor};

const TEXT: &str = "Fine-tuning adapts a pretrained language model to a task with a small amount of \
labelled data. Low-rank adaptation freezes the base weights and learns two thin matrices per \
projection, so the optimizer state stays small and the adapter can be shipped on its own. The \
classic mistakes are overfitting a tiny data set, training on poisoned or biased rows, and \
forgetting what the base model knew; each of them can be measured before and after the run. \
Validation loss, perplexity and token accuracy are computed on held-out examples every few \
hundred steps, and the best checkpoint rather than the last one is kept.";

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = arg("--threads").map_or(Ok(2), |t| t.parse())?;
    let reps: usize = arg("--reps").map_or(Ok(3), |t| t.parse())?;
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;
    let path = match arg("--model") {
        Some(p) => p.into(),
        None => tuneguard_model::testutil::default_model_path(),
    };
    let t = Instant::now();
    let m = tuneguard_model::load(&path)?;
    let load_s = t.elapsed().as_secs_f64();
    // A real English token stream: the chat-templated text, repeated.
    let template = m.chat_template.as_ref().ok_or("the model has no chat template")?;
    let one = template
        .render(&[ChatMessage::new("user", "What is fine-tuning?"), ChatMessage::new("assistant", TEXT)], false)?;
    let mut stream = Vec::new();
    while stream.len() < 1024 {
        stream.extend(m.tokenizer.encode(&one, false)?);
    }
    let prompt = &stream[100..164];
    let long = &stream[300..812];

    let prefill = |which: LogitsFor| -> Result<f64, tuneguard_model::ModelError> {
        let mut cache = KvCache::new(&m.model.config);
        let t = Instant::now();
        m.model.forward(long, &mut cache, which)?;
        Ok(t.elapsed().as_secs_f64())
    };
    let decode = || -> Result<(f64, f64, Vec<u32>), tuneguard_model::ModelError> {
        let mut cache = KvCache::new(&m.model.config);
        let t = Instant::now();
        let logits = m.model.forward(prompt, &mut cache, LogitsFor::Last)?;
        let t_pre = t.elapsed().as_secs_f64();
        let mut ids = vec![argmax(&logits)];
        let t = Instant::now();
        for _ in 0..127 {
            let logits = m.model.forward(&ids[ids.len() - 1..], &mut cache, LogitsFor::Last)?;
            ids.push(argmax(&logits));
        }
        Ok((t_pre, t.elapsed().as_secs_f64(), ids))
    };
    if arg("--only").as_deref() == Some("prefill") {
        // For profiling the prefill alone.
        for _ in 0..reps {
            let s = prefill(LogitsFor::Last)?;
            println!("prefill {} tokens: {:.3} s ({:.1} tokens/s)", long.len(), s, long.len() as f64 / s);
        }
        return Ok(());
    }
    if std::env::args().any(|a| a == "--profile") {
        // Where the time goes: prefill, then decode, each averaged over `reps` runs.
        prefill(LogitsFor::Last)?;
        tuneguard_model::profile::enable(true);
        for (name, is_prefill) in [("prefill 512", true), ("decode 64+128", false)] {
            tuneguard_model::profile::reset();
            let t = Instant::now();
            for _ in 0..reps {
                if is_prefill {
                    prefill(LogitsFor::Last)?;
                } else {
                    decode()?;
                }
            }
            let total = t.elapsed().as_secs_f64() / reps as f64;
            let parts: Vec<String> = tuneguard_model::profile::report()
                .into_iter()
                .map(|(k, s)| format!("{k} {:.3}s ({:.0}%)", s / reps as f64, 100.0 * s / reps as f64 / total))
                .collect();
            println!("{name}: {total:.3} s per run: {}", parts.join(", "));
        }
        return Ok(());
    }
    // Warm-up, then the measured repetitions.
    prefill(LogitsFor::Last)?;
    prefill(LogitsFor::All)?;
    decode()?;
    let (mut pre_last, mut pre_all, mut dec, mut gen) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        pre_last.push(prefill(LogitsFor::Last)?);
        pre_all.push(prefill(LogitsFor::All)?);
        let (tp, td, _) = decode()?;
        dec.push(td);
        gen.push(tp + td);
    }
    let report = serde_json::json!({
        "bench": "infer", "engine": "tuneguard", "threads": threads, "reps": reps,
        "model": path.display().to_string(), "load_s": load_s,
        "prefill_len": long.len(),
        "prefill_tokens_per_s_last_logits": long.len() as f64 / median(&mut pre_last),
        "prefill_tokens_per_s_all_logits": long.len() as f64 / median(&mut pre_all),
        "prompt_tokens": prompt.len(), "new_tokens": 128,
        "decode_tokens_per_s": 127.0 / median(&mut dec),
        "generate_tokens_per_s_incl_prefill": 128.0 / median(&mut gen),
        "peak_rss_mib": tuneguard_model::testutil::peak_rss_mib(),
    });
    println!("{report}");
    Ok(())
}
