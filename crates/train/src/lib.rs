//! tuneguard-train: LoRA training over the tuneguard-model Llama with a hand-written backward
//! pass (no autograd graph: only the LoRA matrices get gradients, frozen weights get none).
pub mod anchor;
pub mod block;
pub mod checkpoint;
pub mod distill;
pub mod error;
pub mod eval;
pub mod guards;
pub mod init;
pub mod linear_grad;
pub mod optim;
pub mod regularize;
pub mod schedule;
pub mod step;
pub mod tensor_ops;

pub use error::{Result, TrainError};
