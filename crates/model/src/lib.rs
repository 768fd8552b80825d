//! tuneguard-model: the Llama-family model engine.
pub mod error;
pub mod gguf;
pub mod quant;

pub use error::{ModelError, Result};
