//! The forgetting-prevention loss terms on the real model, checked by central differences as the
//! backward pass is: distillation from the base (the adapter switched off), replay rows that are
//! distilled instead of trained on, EWC and L2-SP through `add_anchor_penalty`, and the Fisher
//! diagonal against the squared finite-difference gradient of a base weight. Needs the default
//! model (`scripts/fetch-default-model.sh`).
mod common;

use common::{central_difference, chat_example};
use tuneguard_model::llama::Llama;
use tuneguard_model::testutil::{require_default_model, shared_dir};
use tuneguard_train::anchor::{add_anchor_penalty, fisher_diagonal};
use tuneguard_train::distill::{Distill, DistillOn};
use tuneguard_train::step::{count_targets, loss_and_grads_with, Grads, Sequence, StepLoss, StepOptions};

/// The PEFT r = 4 adapter with every B set to small seeded values, so the tuned model differs
/// from the base (B = 0 at initialization).
fn tuned_model() -> Option<tuneguard_model::LoadedModel> {
    let model_path = require_default_model()?;
    let adapter = shared_dir().join("golden/peft_lora_r4/adapter_init");
    let mut m = tuneguard_model::load_with_adapter(&model_path, Some(&adapter)).expect("load");
    let mut state = 12345u64;
    for layer in &mut m.model.layers {
        for (_, lin) in layer.projections_mut() {
            if let Some(l) = lin.lora.as_mut() {
                for b in &mut l.b {
                    state = tuneguard_data::splitmix64(state);
                    *b = ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02;
                }
            }
        }
    }
    Some(m)
}

fn total(l: StepLoss) -> f64 {
    l.ce + l.distill
}

/// Checks the largest analytic gradient entries of layer 3's down_proj A and B against central
/// differences of `loss`.
fn check(m: &mut Llama, grads: &Grads, loss: impl Fn(&Llama) -> f64, what: &str) {
    for which in ["A", "B"] {
        let g = grads[3][6].as_ref().expect("grad");
        let gv = if which == "A" { &g.a } else { &g.b };
        let (i, &analytic) = gv.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).expect("nonempty");
        let bump = |model: &mut Llama, delta: f32| {
            let lora = model.layers[3].down_proj.lora.as_mut().expect("lora");
            let v = if which == "A" { &mut lora.a } else { &mut lora.b };
            v[i] += delta;
        };
        let numeric = central_difference(m, 1e-2, bump, &loss);
        eprintln!("{what} {which}[{i}]: analytic {analytic:.6e}, numeric {numeric:.6e}");
        assert!(
            (numeric - analytic as f64).abs() < 0.05 * analytic.abs() as f64 + 1e-5,
            "{what} {which}: {numeric} vs {analytic}"
        );
    }
}

#[test]
fn distillation_gradients_match_finite_differences() {
    let Some(mut m) = tuned_model() else { return };
    let (ids, labels) = chat_example(&m.tokenizer, "Name a colour.", "Red is a colour.");
    let (rids, rlabels) = {
        let ids = m
            .tokenizer
            .encode("The river flows north through the old town before it reaches the sea.", false)
            .expect("enc");
        let labels: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
        (ids, labels)
    };
    for on in [DistillOn::Supervised, DistillOn::Replay] {
        let batch = || {
            let mut replay = Sequence::new(&rids, &rlabels);
            replay.replay = true;
            vec![Sequence::new(&ids, &labels), replay]
        };
        let n = count_targets(&batch(), Some(on));
        let opts = StepOptions {
            distill: Some(Distill { lambda: 0.5, temperature: 2.0, on, n_norm: n.distilled }),
            ..Default::default()
        };
        let loss_of = |model: &Llama| {
            let mut g: Grads = Vec::new();
            total(loss_and_grads_with(model, &batch(), n.ce, &opts, &mut g).expect("loss"))
        };
        let mut grads: Grads = Vec::new();
        let l = loss_and_grads_with(&m.model, &batch(), n.ce, &opts, &mut grads).expect("grads");
        assert!(l.distill > 0.0, "the tuned model differs from the base");
        check(&mut m.model, &grads, loss_of, &format!("distill on {on:?}"));
    }
}

#[test]
fn distillation_against_an_unchanged_model_is_zero_and_replay_rows_leave_the_cross_entropy() {
    let Some(model_path) = require_default_model() else { return };
    let adapter = shared_dir().join("golden/peft_lora_r4/adapter_init");
    let mut m = tuneguard_model::load_with_adapter(&model_path, Some(&adapter)).expect("load");
    for layer in &mut m.model.layers {
        for (_, lin) in layer.projections_mut() {
            if let Some(l) = lin.lora.as_mut() {
                l.b.iter_mut().for_each(|b| *b = 0.0);
            }
        }
    }
    let (ids, labels) = chat_example(&m.tokenizer, "What is 2 + 3?", "2 + 3 equals 5.");
    let (rids, rlabels) = chat_example(&m.tokenizer, "Name a colour.", "Red.");
    let task = [Sequence::new(&ids, &labels)];
    let mut replay = Sequence::new(&rids, &rlabels);
    replay.replay = true;
    let batch = [Sequence::new(&ids, &labels), replay];
    let n = count_targets(&batch, Some(DistillOn::Replay));
    assert_eq!(n.ce, count_targets(&task, None).ce, "replay rows are distilled, not trained on");
    let opts = StepOptions {
        distill: Some(Distill { lambda: 1.0, temperature: 1.0, on: DistillOn::Replay, n_norm: n.distilled }),
        ..Default::default()
    };
    let mut g: Grads = Vec::new();
    let with = loss_and_grads_with(&m.model, &batch, n.ce, &opts, &mut g).expect("loss");
    let without = loss_and_grads_with(&m.model, &task, n.ce, &StepOptions::default(), &mut Vec::new()).expect("loss");
    assert!(with.distill.abs() < 1e-9, "B = 0: the tuned model is the base, KL {}", with.distill);
    assert!((with.ce - without.ce).abs() < 1e-9, "{} vs {}", with.ce, without.ce);
}

#[test]
fn anchor_penalties_match_finite_differences_on_the_model() {
    let Some(mut m) = tuned_model() else { return };
    let (ids, labels) = chat_example(&m.tokenizer, "Name a colour.", "Red is a colour.");
    let mut fisher = fisher_diagonal(&m.model, &[Sequence::new(&ids, &labels)], |_| {}).expect("fisher");
    fisher.normalize();
    for (name, f, lambda) in [("L2-SP", None, 50.0f32), ("EWC", Some(&fisher), 50.0)] {
        let loss_of = |model: &Llama| add_anchor_penalty(model, &mut Vec::new(), lambda, f);
        let mut grads: Grads = Vec::new();
        let p = add_anchor_penalty(&m.model, &mut grads, lambda, f);
        assert!(p > 0.0, "{name}");
        check(&mut m.model, &grads, loss_of, name);
    }
}

#[test]
fn fisher_is_the_squared_gradient_of_a_base_weight() {
    let Some(model_path) = require_default_model() else { return };
    let adapter = shared_dir().join("golden/peft_lora_r4/adapter_init");
    let mut m = tuneguard_model::load_with_adapter(&model_path, Some(&adapter)).expect("load");
    let t = &m.tokenizer;
    let examples = [chat_example(t, "Name a colour.", "Red is a colour."), chat_example(t, "What is 2 + 3?", "5.")];
    let seqs: Vec<Sequence> = examples.iter().map(|(i, l)| Sequence::new(i, l)).collect();
    let fisher = fisher_diagonal(&m.model, &seqs, |_| {}).expect("fisher");
    assert_eq!(fisher.examples, 2);
    let f = fisher.layers[3][6].as_ref().expect("down_proj is adapted");
    let (i, &fi) = f.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).expect("nonempty");
    // (1/N) Σ_n (∂ℓ_n/∂W_i)², each derivative by central differences of the base weight (the
    // packed quantized copy is dropped so the dense weight is what the forward pass reads).
    m.model.layers[3].down_proj.packed = None;
    m.model.layers[3].down_proj.prepacked = None;
    let mut want = 0.0;
    for s in &seqs {
        let loss_of = |model: &Llama| {
            let b = [Sequence::new(s.input_ids, s.labels)];
            let n = count_targets(&b, None).ce;
            loss_and_grads_with(model, &b, n, &StepOptions::default(), &mut Vec::new()).expect("loss").ce
        };
        let bump = |model: &mut Llama, d: f32| model.layers[3].down_proj.weight[i] += d;
        let g = central_difference(&mut m.model, 1e-2, bump, loss_of);
        want += g * g / seqs.len() as f64;
    }
    eprintln!("F[{i}] = {fi:.6e}, finite differences {want:.6e}");
    assert!((want - fi as f64).abs() < 0.1 * fi as f64, "{fi} vs {want}");
}
