//! Full fine-tuning gradients on the real model, checked by central finite differences.
mod common;

use common::{central_difference, chat_example};
use tuneguard_model::llama::Llama;
use tuneguard_model::testutil::require_default_model;
use tuneguard_train::optim::{full_params, prepare_full_finetune};
use tuneguard_train::step::{count_supervised, loss_and_full_grads, FullGrads, Sequence};

#[test]
fn full_gradients_match_finite_differences() {
    let Some(model_path) = require_default_model() else { return };
    let mut m = tuneguard_model::load(&model_path).expect("load");
    prepare_full_finetune(&mut m.model);
    let t = &m.tokenizer;
    let (ids, labels) = chat_example(t, "Name a colour.", "Red is a colour.");
    let loss_of = |model: &Llama| {
        let batch = [Sequence::new(&ids, &labels)];
        let mut g = FullGrads::zeros(model);
        loss_and_full_grads(model, &batch, count_supervised(&batch), &mut g).expect("loss")
    };
    let batch = [Sequence::new(&ids, &labels)];
    let mut grads = FullGrads::zeros(&m.model);
    loss_and_full_grads(&m.model, &batch, count_supervised(&batch), &mut grads).expect("grads");
    let n_bufs = grads.buffers_mut().len();
    // (buffer index, name): layer 3's down_proj weight, layer 0's input norm, the embedding, the final norm.
    let per_layer = 7 + 2;
    let checks = [
        (3 * per_layer + 6, "layers.3.mlp.down_proj.weight"),
        (7, "layers.0.input_layernorm.weight"),
        (n_bufs - 2, "embed_tokens (tied)"),
        (n_bufs - 1, "norm"),
    ];
    for (buf, name) in checks {
        let (i, analytic) = {
            let mut bufs = grads.buffers_mut();
            let g = &mut bufs[buf];
            let (i, &a) = g.iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).expect("nonempty");
            (i, a)
        };
        let eps = 5e-3f32;
        let bump = |model: &mut Llama, delta: f32| full_params(model)[buf][i] += delta;
        let numeric = central_difference(&mut m.model, eps, bump, loss_of);
        eprintln!("{name}[{i}]: analytic {analytic:.6e}, numeric {numeric:.6e}");
        assert!(
            (numeric - analytic as f64).abs() < 0.05 * analytic.abs() as f64 + 1e-4,
            "{name}: {numeric} vs {analytic}"
        );
    }
}
