//! `tuneguard generate`: stream a continuation (or a chat reply) to stdout.
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use tuneguard_model::chat::ChatMessage;
use tuneguard_model::generate::{generate, GenerateOptions, StopReason};
use tuneguard_model::ModelError;

use crate::model_path;

#[derive(Args)]
pub struct GenerateArgs {
    /// GGUF file or Hugging Face model directory (default: models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    model: Option<PathBuf>,
    /// PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Render the prompt as a user message with the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message for --chat (default: whatever the template adds).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Maximum number of new tokens.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 means greedy decoding.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample only from the k most likely tokens (0 = no limit).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling: smallest token set with cumulative probability >= p (1 = off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    top_p: f32,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the token ids and timing to stderr after the text.
    #[arg(long)]
    stats: bool,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        stop_tokens: Vec::new(),
    };
    opts.validate()?;
    if args.temperature == 0.0 && (args.top_k != 0 || args.top_p != 1.0 || args.seed != 0) {
        tracing::warn!("--top-k, --top-p and --seed only matter when sampling (--temperature > 0); decoding greedily");
    }
    let path = model_path::resolve(args.model.as_deref())?;
    let t0 = Instant::now();
    let m = tuneguard_model::load_with_adapter(&path, args.adapter.as_deref())?;
    let load_s = t0.elapsed().as_secs_f64();
    let text = if args.chat {
        let template = m.chat_template.as_ref().ok_or_else(|| ModelError::ChatTemplate {
            path: m.location.path.clone(),
            reason: "the model has no chat template; drop --chat".into(),
        })?;
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(ChatMessage::new("system", s.clone()));
        }
        messages.push(ChatMessage::new("user", args.prompt.clone()));
        template.render(&messages, true)?
    } else {
        args.prompt.clone()
    };
    // A chat template writes its own special tokens into the text.
    let ids = m.tokenizer.encode(&text, !args.chat)?;
    let mut opts = opts;
    opts.stop_tokens = m.stop_tokens();
    let mut decoder = m.tokenizer.incremental_decoder(true);
    let mut out = std::io::stdout().lock();
    let mut write_err = None;
    let t1 = Instant::now();
    let g = generate(&m.model, &ids, &opts, |id| {
        let piece = match decoder.push(id) {
            Ok(p) => p,
            Err(e) => {
                write_err = Some(anyhow::Error::from(e));
                return ControlFlow::Break(());
            }
        };
        if let Some(p) = piece {
            if let Err(e) = out.write_all(p.as_bytes()).and_then(|_| out.flush()) {
                write_err = Some(e.into());
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = write_err {
        return Err(e);
    }
    if let Some(rest) = decoder.finish()? {
        out.write_all(rest.as_bytes())?;
    }
    writeln!(out)?;
    let gen_s = t1.elapsed().as_secs_f64();
    if g.stop == StopReason::ContextWindow {
        tracing::warn!("stopped at the context window of {} tokens", m.model.config.max_position_embeddings);
    }
    if args.stats {
        eprintln!(
            "prompt {} tokens, generated {} tokens in {gen_s:.2} s ({:.1} tokens/s incl. prefill), load {load_s:.2} s, stop: {:?}\nids: {:?}",
            g.prompt_tokens,
            g.tokens.len(),
            g.tokens.len() as f64 / gen_s,
            g.stop,
            g.tokens
        );
    }
    Ok(())
}
