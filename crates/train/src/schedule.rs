//! Learning-rate schedules with linear warm-up, as transformers' `get_constant_schedule_with_warmup`,
//! `get_linear_schedule_with_warmup` and `get_cosine_schedule_with_warmup` (half a cosine period).
//! `step` counts optimizer steps from 0, as `LambdaLR` does: with warm-up the first step has lr 0.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    #[default]
    Constant,
    Linear,
    Cosine,
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "linear" => Ok(Schedule::Linear),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(format!("unknown schedule `{other}` (expected constant, linear or cosine)")),
        }
    }
}

/// Learning rate at optimizer step `step` of `total` (both in optimizer steps).
pub fn lr_at(base: f32, schedule: Schedule, warmup: u64, total: u64, step: u64) -> f32 {
    if step < warmup {
        return base * step as f32 / warmup.max(1) as f32;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = (step - warmup) as f64 / span;
    let factor = match schedule {
        Schedule::Constant => 1.0,
        Schedule::Linear => (1.0 - progress).max(0.0),
        Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    };
    (base as f64 * factor) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_by_hand() {
        // (schedule, warmup, total, step, expected lr for base 1.0)
        let cases = [
            (Schedule::Constant, 0, 10, 0, 1.0),
            (Schedule::Constant, 4, 10, 0, 0.0),
            (Schedule::Constant, 4, 10, 2, 0.5),
            (Schedule::Constant, 4, 10, 9, 1.0),
            (Schedule::Linear, 0, 10, 0, 1.0),
            (Schedule::Linear, 0, 10, 5, 0.5),
            (Schedule::Linear, 2, 10, 6, 0.5),
            (Schedule::Linear, 2, 10, 10, 0.0),
            (Schedule::Cosine, 0, 10, 0, 1.0),
            (Schedule::Cosine, 0, 10, 5, 0.5),
            (Schedule::Cosine, 2, 12, 12, 0.0),
            (Schedule::Cosine, 0, 4, 1, 0.853_553_4), // 0.5·(1 + cos(π/4))
        ];
        for (s, w, t, step, want) in cases {
            let got = lr_at(1.0, s, w, t, step);
            assert!((got - want).abs() < 1e-6, "{s:?} warmup {w} total {t} step {step}: {got} vs {want}");
        }
    }

    #[test]
    fn parses_names() {
        assert_eq!("cosine".parse::<Schedule>(), Ok(Schedule::Cosine));
        assert!("exp".parse::<Schedule>().is_err());
    }
}
