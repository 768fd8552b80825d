//! Agreement with PEFT (`shared/golden/peft_lora_r4`): from `adapter_init`, five AdamW steps on
//! the golden batch reproduce PEFT's loss trajectory (1e-3 abs) and pre-clip gradient norms
//! (1e-2 rel). Needs the default model (`scripts/fetch-default-model.sh`).
use serde_json::Value;
use tuneguard_model::testutil::{require_default_model, shared_dir};
use tuneguard_train::optim::{clip_grad_norm, AdamW, AdamWConfig};
use tuneguard_train::step::{count_supervised, loss_and_grads, Grads, Sequence};

fn golden() -> Value {
    let path = shared_dir().join("golden/peft_lora_r4/peft_lora_golden.json");
    serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file")).expect("golden JSON")
}

#[test]
fn five_steps_match_peft_trajectory() {
    let Some(model_path) = require_default_model() else { return };
    let adapter = shared_dir().join("golden/peft_lora_r4/adapter_init");
    let mut m = tuneguard_model::load_with_adapter(&model_path, Some(&adapter)).expect("load");
    let g = golden();
    let tr = &g["training"];
    let rows = |k: &str| -> Vec<Vec<i64>> {
        tr[k]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| r.as_array().expect("row").iter().map(|x| x.as_i64().expect("int")).collect())
            .collect()
    };
    let (ids, labels, mask) = (rows("input_ids"), rows("labels"), rows("attention_mask"));
    // Right padding: each row is its unmasked prefix (padding never reaches a supervised token).
    let seqs: Vec<(Vec<u32>, Vec<i64>)> = ids
        .iter()
        .zip(&labels)
        .zip(&mask)
        .map(|((i, l), mk)| {
            let n = mk.iter().filter(|&&x| x == 1).count();
            (i[..n].iter().map(|&x| x as u32).collect(), l[..n].to_vec())
        })
        .collect();
    let batch: Vec<Sequence> = seqs.iter().map(|(i, l)| Sequence { input_ids: i, labels: l }).collect();
    let n = count_supervised(&batch);
    let mut opt =
        AdamW::new(AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }).expect("opt");
    for want in tr["trajectory"].as_array().expect("trajectory") {
        let mut grads: Grads = Vec::new();
        let loss = loss_and_grads(&m.model, &batch, n, &mut grads).expect("step");
        let norm = clip_grad_norm(&mut grads, 1.0);
        let (wl, wn) = (want["loss"].as_f64().expect("loss"), want["grad_norm_before_clip"].as_f64().expect("norm"));
        eprintln!("step {}: loss {loss:.6} (PEFT {wl:.6}), grad norm {norm:.6} (PEFT {wn:.6})", want["step"]);
        assert!((loss - wl).abs() < 1e-3, "step {}: loss {loss} vs {wl}", want["step"]);
        assert!((norm - wn).abs() < 1e-2 * wn, "step {}: grad norm {norm} vs {wn}", want["step"]);
        opt.update(&mut m.model, &grads).expect("update");
    }
}
