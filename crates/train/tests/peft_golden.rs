//! Agreement with PEFT (`shared/golden/peft_lora_r4`): from `adapter_init`, five AdamW steps on
//! the golden batch reproduce PEFT's loss trajectory (1e-3 abs) and pre-clip gradient norms
//! (1e-2 rel). Needs the default model (`scripts/fetch-default-model.sh`).
mod common;

use common::{central_difference, chat_example};
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
    let batch: Vec<Sequence> = seqs.iter().map(|(i, l)| Sequence::new(i, l)).collect();
    let n = count_supervised(&batch);
    let mut opt =
        AdamW::new(AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }).expect("opt");
    for want in tr["trajectory"].as_array().expect("trajectory") {
        let mut grads: Grads = Vec::new();
        let loss = loss_and_grads(&m.model, &batch, n, None, &mut grads).expect("step");
        let norm = clip_grad_norm(&mut grads, 1.0);
        let (wl, wn) = (want["loss"].as_f64().expect("loss"), want["grad_norm_before_clip"].as_f64().expect("norm"));
        eprintln!("step {}: loss {loss:.6} (PEFT {wl:.6}), grad norm {norm:.6} (PEFT {wn:.6})", want["step"]);
        assert!((loss - wl).abs() < 1e-3, "step {}: loss {loss} vs {wl}", want["step"]);
        assert!((norm - wn).abs() < 1e-2 * wn, "step {}: grad norm {norm} vs {wn}", want["step"]);
        opt.update(&mut m.model, &grads).expect("update");
    }
    // The weights after five steps agree with the adapter PEFT saved. Adam divides by √v, so
    // parameters whose gradient is ~0 move by amplified rounding noise; compare the whole
    // update instead: ‖ours − PEFT‖ relative to ‖PEFT − init‖.
    let dir = |name: &str| shared_dir().join("golden/peft_lora_r4").join(name);
    let init = tuneguard_model::lora::LoraAdapter::load(&dir("adapter_init")).expect("adapter_init");
    let after = tuneguard_model::lora::LoraAdapter::load(&dir("adapter_after_5_steps")).expect("adapter_after_5_steps");
    let (mut diff, mut update, mut worst) = (0f64, 0f64, 0f32);
    for ((layer, module), w) in &after.weights {
        let (_, lin) = m.model.layers[*layer].projections().into_iter().find(|(n, _)| n == module).expect("module");
        let ours = lin.lora.as_ref().expect("lora");
        let w0 = &init.weights[&(*layer, module.clone())];
        for ((a, b), c) in ours.a.iter().chain(&ours.b).zip(w.a.iter().chain(&w.b)).zip(w0.a.iter().chain(&w0.b)) {
            diff += ((a - b) as f64).powi(2);
            update += ((b - c) as f64).powi(2);
            worst = worst.max((a - b).abs());
        }
    }
    let rel = (diff / update).sqrt();
    eprintln!("after 5 steps: ‖ours − PEFT‖ / ‖PEFT update‖ = {rel:.2e}, max |Δ| = {worst:.2e}");
    assert!(rel < 1e-3, "LoRA weights after 5 steps differ from PEFT's by {rel} of the update");
}

#[test]
fn accumulating_micro_batches_equals_one_batch() {
    let Some(model_path) = require_default_model() else { return };
    let adapter = shared_dir().join("golden/peft_lora_r4/adapter_init");
    let m = tuneguard_model::load_with_adapter(&model_path, Some(&adapter)).expect("load");
    // Four real chat examples of different lengths, supervised on the assistant part.
    let t = &m.tokenizer;
    let seqs: Vec<(Vec<u32>, Vec<i64>)> = ["Name a colour.", "What is 2 + 3?", "Say hi.", "Spell cat."]
        .iter()
        .zip(["Red.", "2 + 3 equals 5.", "Hi!", "C-A-T."])
        .map(|(q, a)| chat_example(t, q, a))
        .collect();
    let batch: Vec<Sequence> = seqs.iter().map(|(i, l)| Sequence::new(i, l)).collect();
    let n = count_supervised(&batch);
    let mut whole: Grads = Vec::new();
    let loss_whole = loss_and_grads(&m.model, &batch, n, None, &mut whole).expect("batch");
    let mut acc: Grads = Vec::new();
    let mut loss_acc = 0.0;
    for seq in &batch {
        loss_acc += loss_and_grads(&m.model, std::slice::from_ref(seq), n, None, &mut acc).expect("micro-batch");
    }
    assert!((loss_whole - loss_acc).abs() < 1e-6, "{loss_whole} vs {loss_acc}");
    let flat = |g: &Grads| -> Vec<f32> {
        g.iter().flatten().flatten().flat_map(|x| x.a.iter().chain(&x.b).copied()).collect()
    };
    let (a, b) = (flat(&whole), flat(&acc));
    assert_eq!(a.len(), b.len());
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "accumulated gradients differ by {worst}");
}

#[test]
fn lora_dropout_gradients_match_finite_differences() {
    use tuneguard_train::linear_grad::Dropout;
    let Some(model_path) = require_default_model() else { return };
    let adapter = shared_dir().join("golden/peft_lora_r4/adapter_init");
    let mut m = tuneguard_model::load_with_adapter(&model_path, Some(&adapter)).expect("load");
    let t = &m.tokenizer;
    let (ids, labels) = chat_example(t, "Name a colour.", "Red is a colour.");
    let dropout = Some(Dropout { p: 0.3, seed: 11 });
    let loss_of = |m: &tuneguard_model::llama::Llama| {
        let batch = [Sequence::new(&ids, &labels)];
        let mut g: Grads = Vec::new();
        loss_and_grads(m, &batch, count_supervised(&batch), dropout, &mut g).expect("loss")
    };
    let batch = [Sequence::new(&ids, &labels)];
    let mut grads: Grads = Vec::new();
    loss_and_grads(&m.model, &batch, count_supervised(&batch), dropout, &mut grads).expect("grads");
    // The largest gradient entries of layer 3's down_proj A and B, checked by central differences.
    for which in ["A", "B"] {
        let g = grads[3][6].as_ref().expect("grad");
        let gv = if which == "A" { &g.a } else { &g.b };
        let (i, &analytic) = gv.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).expect("nonempty");
        let eps = 1e-2f32;
        let bump = |model: &mut tuneguard_model::llama::Llama, delta: f32| {
            let lora = model.layers[3].down_proj.lora.as_mut().expect("lora");
            let v = if which == "A" { &mut lora.a } else { &mut lora.b };
            v[i] += delta;
        };
        let numeric = central_difference(&mut m.model, eps, bump, loss_of);
        eprintln!("lora_{which}[{i}]: analytic {analytic:.6e}, numeric {numeric:.6e}");
        assert!(
            (numeric - analytic as f64).abs() < 0.05 * analytic.abs() as f64 + 1e-5,
            "{which}: {numeric} vs {analytic}"
        );
    }
}

#[test]
fn a_packed_row_equals_its_examples_as_separate_rows() {
    use tuneguard_train::step::Packing;
    let Some(model_path) = require_default_model() else { return };
    let adapter = shared_dir().join("golden/peft_lora_r4/adapter_init");
    let m = tuneguard_model::load_with_adapter(&model_path, Some(&adapter)).expect("load");
    let t = &m.tokenizer;
    let examples: Vec<(Vec<u32>, Vec<i64>)> = [("Name a colour.", "Red."), ("What is 2 + 3?", "2 + 3 equals 5.")]
        .iter()
        .map(|(q, a)| chat_example(t, q, a))
        .collect();
    let separate: Vec<Sequence> = examples.iter().map(|(i, l)| Sequence::new(i, l)).collect();
    let ids: Vec<u32> = examples.iter().flat_map(|(i, _)| i.clone()).collect();
    let labels: Vec<i64> = examples.iter().flat_map(|(_, l)| l.clone()).collect();
    let positions: Vec<u32> = examples.iter().flat_map(|(i, _)| 0..i.len() as u32).collect();
    let segments: Vec<u32> =
        examples.iter().enumerate().flat_map(|(s, (i, _))| std::iter::repeat_n(s as u32 + 1, i.len())).collect();
    let packed = [Sequence {
        input_ids: &ids,
        labels: &labels,
        packing: Some(Packing { position_ids: &positions, segment_ids: &segments }),
        replay: false,
    }];
    let n = count_supervised(&separate);
    assert_eq!(n, count_supervised(&packed), "the first label of each example is ignored in both");
    let (mut ga, mut gb): (Grads, Grads) = (Vec::new(), Vec::new());
    let la = loss_and_grads(&m.model, &separate, n, None, &mut ga).expect("separate");
    let lb = loss_and_grads(&m.model, &packed, n, None, &mut gb).expect("packed");
    assert!((la - lb).abs() < 1e-5, "loss {la} vs {lb}");
    let flat = |g: &Grads| -> Vec<f32> {
        g.iter().flatten().flatten().flat_map(|x| x.a.iter().chain(&x.b).copied()).collect()
    };
    let worst = flat(&ga).iter().zip(&flat(&gb)).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "gradients differ by {worst}");
}
