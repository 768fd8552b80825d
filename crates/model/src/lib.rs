//! tuneguard-model: the Llama-family model engine — GGUF and Hugging Face safetensors loading,
//! tokenizer, chat template, f32 forward pass with a KV cache, PEFT LoRA adapters and generation.
mod attention;
pub mod chat;
pub mod config;
pub mod engine;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod linear;
pub mod llama;
pub mod load;
pub mod lora;
pub mod ops;
pub mod profile;
pub mod quant;
pub mod rope;
pub mod save;
pub mod sgemm;
#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
pub mod tokenizer;

pub use engine::{load, load_with_adapter, LoadedModel, ModelFormat};
pub use error::{ModelError, Result};
