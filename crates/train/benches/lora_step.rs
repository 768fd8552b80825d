//! LoRA training-step throughput, same shapes as `shared/bench/pytorch/bench_train.py --mode lora`:
//! r 16, alpha 32, all seven projections, AdamW, batch B × T tokens of real chat text, 2 threads.
//! Not a test: `cargo bench -p tuneguard-train --bench lora_step -- [--batch 4] [--seq 256] [--steps 3]
//! [--dropout-pct 5] [--full 1] [--distill 1]`. `--distill 1` adds distillation from the frozen base
//! (λ 1, T 2, on every supervised token): one more forward pass with the adapter off, and the KL
//! term on every position.
use std::time::Instant;

use tuneguard_model::chat::ChatMessage;
use tuneguard_train::distill::{Distill, DistillOn};
use tuneguard_train::init::init_lora;
use tuneguard_train::linear_grad::Dropout;
use tuneguard_train::optim::{clip_full_grad_norm, clip_grad_norm, prepare_full_finetune, AdamW, AdamWConfig};
use tuneguard_train::step::{
    count_supervised, loss_and_full_grads, loss_and_grads_with, FullGrads, Grads, Sequence, StepOptions,
};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (batch, seq, steps) = (arg("--batch", 4), arg("--seq", 256), arg("--steps", 3));
    // LoRA dropout in percent (bench_train.py uses 0.05: `--dropout-pct 5`).
    let dropout_p = arg("--dropout-pct", 0) as f32 / 100.0;
    rayon::ThreadPoolBuilder::new().num_threads(arg("--threads", 2)).build_global()?;
    let mut m = tuneguard_model::load(&tuneguard_model::testutil::default_model_path())?;
    let targets = tuneguard_model::llama::Projection::ALL;
    // `--full 1`: full fine-tuning (bench_train.py --mode full) instead of LoRA.
    let full = arg("--full", 0) == 1;
    let distill = arg("--distill", 0) == 1;
    let trainable = if full {
        prepare_full_finetune(&mut m.model);
        m.model.config.num_parameters()
    } else {
        init_lora(&mut m.model, 16, 32.0, &targets, 0)?
    };
    let template = m.chat_template.as_ref().ok_or("no chat template")?;
    let text = template.render(
        &[
            ChatMessage::new("user", "Explain what a learning rate schedule does."),
            ChatMessage::new("assistant", "A learning rate schedule changes the step size of the optimizer over the course of training: a short warm-up avoids large early updates, and a decay lets the weights settle into a minimum. Cosine decay and linear decay are common choices, and both are cheap to compute."),
        ],
        false,
    )?;
    let mut stream = Vec::new();
    while stream.len() < batch * seq * (steps + 1) {
        stream.extend(m.tokenizer.encode(&text, false)?);
    }
    let rows: Vec<(Vec<u32>, Vec<i64>)> = stream
        .chunks(seq)
        .take(batch * (steps + 1))
        .map(|c| (c.to_vec(), c.iter().map(|&x| x as i64).collect()))
        .collect();
    let mut opt = AdamW::new(AdamWConfig { lr: 2e-4, ..Default::default() })?;
    let mut times = Vec::new();
    for step in 0..=steps {
        let batch_rows: Vec<Sequence> =
            rows[step * batch..(step + 1) * batch].iter().map(|(i, l)| Sequence::new(i, l)).collect();
        let t = Instant::now();
        let mut grads: Grads = Vec::new();
        let loss = if full {
            let mut g = FullGrads::zeros(&m.model);
            let loss = loss_and_full_grads(&m.model, &batch_rows, count_supervised(&batch_rows), &mut g)?;
            clip_full_grad_norm(&mut g, 1.0);
            opt.update_full(&mut m.model, &mut g);
            loss
        } else {
            let n = count_supervised(&batch_rows);
            let opts = StepOptions {
                dropout: (dropout_p > 0.0).then_some(Dropout { p: dropout_p, seed: step as u64 }),
                distill: distill.then_some(Distill {
                    lambda: 1.0,
                    temperature: 2.0,
                    on: DistillOn::Supervised,
                    n_norm: n,
                }),
                ..Default::default()
            };
            let l = loss_and_grads_with(&m.model, &batch_rows, n, &opts, &mut grads)?;
            l.ce + l.distill
        };
        if !full {
            clip_grad_norm(&mut grads, 1.0);
            opt.update(&mut m.model, &grads)?;
        }
        let dt = t.elapsed().as_secs_f64();
        eprintln!("step {step}: loss {loss:.4}, {dt:.2} s");
        if step > 0 {
            times.push(dt); // step 0 is warm-up
        }
    }
    let per_step = times.iter().sum::<f64>() / times.len().max(1) as f64;
    println!(
        "{}",
        serde_json::json!({
            "bench": if full { "full_step" } else if distill { "lora_step_distill" } else { "lora_step" }, "engine": "tuneguard", "batch": batch, "seq": seq, "rank": 16, "lora_dropout": dropout_p,
            "trainable_params": trainable, "s_per_step": per_step,
            "tokens_per_s": (batch * seq) as f64 / per_step, "peak_rss_mib": tuneguard_model::testutil::peak_rss_mib(),
        })
    );
    Ok(())
}
