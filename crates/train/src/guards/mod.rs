//! Guards that watch a run: early stopping (stops it), the overfitting alarm (warns) and the
//! loss watchdog (stops a diverging run).
pub mod early_stopping;
pub mod overfitting;
pub mod watchdog;
