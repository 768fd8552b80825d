//! `tuneguard convert`: write a model (GGUF or HF directory, optionally with a LoRA adapter merged
//! in) as a float32 Hugging Face safetensors directory that transformers can load.
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::model_path;

#[derive(Args)]
pub struct ConvertArgs {
    /// GGUF file or Hugging Face model directory (default: models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    model: Option<PathBuf>,
    /// PEFT LoRA adapter to merge into the weights.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Output directory (must not exist).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct MergeArgs {
    /// Base model: GGUF file or Hugging Face directory (default: models/SmolLM2-135M-Instruct.Q4_1.gguf).
    #[arg(long)]
    model: Option<PathBuf>,
    /// PEFT LoRA adapter directory to merge.
    #[arg(long)]
    adapter: PathBuf,
    /// Output directory (must not exist).
    #[arg(long)]
    out: PathBuf,
}

impl From<MergeArgs> for ConvertArgs {
    fn from(m: MergeArgs) -> Self {
        ConvertArgs { model: m.model, adapter: Some(m.adapter), out: m.out }
    }
}

pub fn run(args: ConvertArgs) -> Result<()> {
    let path = model_path::resolve(args.model.as_deref())?;
    let m = tuneguard_model::load_with_adapter(&path, args.adapter.as_deref())?;
    tuneguard_model::save::save_hf_dir(&m, &args.out)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "wrote {} (float32 safetensors, config.json, tokenizer.json, tokenizer_config.json)",
        args.out.display()
    )?;
    out.flush()?;
    Ok(())
}
