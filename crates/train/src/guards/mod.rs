//! Guards that watch a run and can stop it.
pub mod early_stopping;
