//! `tuneguard inspect`: describe a model without running it.
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tuneguard_model::engine::{inspect, ModelInfo};

use crate::model_path;

#[derive(Args)]
pub struct InspectArgs {
    /// GGUF file or Hugging Face model directory (default: models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let path = model_path::resolve(args.model.as_deref())?;
    let info = inspect(&path)?;
    let text = if args.json { serde_json::to_string_pretty(&info)? + "\n" } else { render(&info) };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn token(t: &Option<(u32, String)>) -> String {
    t.as_ref().map_or("-".into(), |(id, s)| format!("{s:?} ({id})"))
}

fn render(i: &ModelInfo) -> String {
    let c = &i.config;
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<22}{v}\n"));
    line("model", format!("{} ({:?}, {:.1} MB)", i.name, i.format, i.file_bytes as f64 / 1e6));
    line("path", i.path.display().to_string());
    line("architecture", format!("{} (model_type {})", c.architecture.name(), c.architecture.name()));
    line("parameters", format!("{} ({:.1} M)", i.parameters, i.parameters as f64 / 1e6));
    let types: Vec<String> =
        i.tensor_types.iter().map(|(k, (n, p))| format!("{k} x{n} ({:.1} M params)", *p as f64 / 1e6)).collect();
    line("tensor types", types.join(", "));
    line("layers", c.num_layers.to_string());
    line("hidden size", c.hidden_size.to_string());
    line("intermediate size", c.intermediate_size.to_string());
    line(
        "attention heads",
        format!("{} query, {} key/value (GQA), head dim {}", c.num_heads, c.num_kv_heads, c.head_dim),
    );
    line("context length", format!("{} tokens", c.max_position_embeddings));
    line("rope theta", c.rope_theta.to_string());
    line("rms norm eps", format!("{:e}", c.rms_norm_eps as f32));
    line("tied embeddings", c.tie_word_embeddings.to_string());
    line("vocab size", format!("{} (tokenizer), {} (model)", i.tokenizer_vocab_size, c.vocab_size));
    line("bos / eos / pad", format!("{} / {} / {}", token(&i.bos), token(&i.eos), token(&i.pad)));
    line("add bos token", i.add_bos_token.to_string());
    let specials: Vec<String> = i.special_tokens.iter().map(|(id, t)| format!("{t} ({id})")).collect();
    line("special tokens", format!("{}: {}", specials.len(), specials.join(" ")));
    line("chat template", i.chat_template.as_ref().map_or("none".into(), |t| format!("yes ({} chars)", t.len())));
    s
}
