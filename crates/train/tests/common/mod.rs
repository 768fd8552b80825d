//! Helpers shared by the training tests.
#![allow(dead_code)] // each test binary uses its own subset

use tuneguard_model::llama::Llama;
use tuneguard_model::tokenizer::TextTokenizer;

/// A one-turn ChatML example, (ids, labels) with only the reply and its `<|im_end|>` supervised.
pub fn chat_example(t: &TextTokenizer, question: &str, answer: &str) -> (Vec<u32>, Vec<i64>) {
    let p = t.encode(&format!("<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"), false).expect("enc");
    let r = t.encode(&format!("{answer}<|im_end|>"), false).expect("enc");
    let labels = vec![-100i64; p.len()].into_iter().chain(r.iter().map(|&x| x as i64)).collect();
    (p.into_iter().chain(r).collect(), labels)
}

/// Central difference `(L(θ + ε) − L(θ − ε)) / 2ε` of `loss` for the parameter that `bump`
/// moves; the model is left as it was.
pub fn central_difference(
    model: &mut Llama,
    eps: f32,
    bump: impl Fn(&mut Llama, f32),
    loss: impl Fn(&Llama) -> f64,
) -> f64 {
    bump(model, eps);
    let up = loss(model);
    bump(model, -2.0 * eps);
    let down = loss(model);
    bump(model, eps);
    (up - down) / (2.0 * eps as f64)
}
