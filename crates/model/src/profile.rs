//! Wall-clock time per section of the forward pass, summed over calls, to show where a step's
//! time goes (`cargo bench ... -- --profile`). Off by default; when on, each section costs two
//! `Instant::now()` calls.
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Embed,
    Norm,
    Linear,
    Rope,
    Attention,
    Mlp,
    LmHead,
}

const SECTIONS: [Section; 7] =
    [Section::Embed, Section::Norm, Section::Linear, Section::Rope, Section::Attention, Section::Mlp, Section::LmHead];

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];

pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

pub fn reset() {
    NANOS.iter().for_each(|n| n.store(0, Ordering::Relaxed));
}

/// Runs `f`, adding its wall time to `section` when profiling is on.
#[inline]
pub fn timed<R>(section: Section, f: impl FnOnce() -> R) -> R {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let r = f();
    NANOS[section as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    r
}

/// (section name, seconds) for every section, in pipeline order.
pub fn report() -> Vec<(String, f64)> {
    SECTIONS
        .iter()
        .map(|&s| (format!("{s:?}").to_lowercase(), NANOS[s as usize].load(Ordering::Relaxed) as f64 / 1e9))
        .collect()
}
