//! Learning rate as a pure function of the step: a resumed run continues on exactly the
//! curve of an uninterrupted one, with no scheduler state to save.

use super::config::{ScheduleConfig, ScheduleKind};

/// Learning rate at step `step` (0-based, over all epochs) with `steps_per_epoch` steps in an
/// epoch, `epochs` epochs and peak rate `lr`.
pub fn learning_rate(
    schedule: &ScheduleConfig,
    lr: f64,
    step: usize,
    steps_per_epoch: usize,
    epochs: usize,
) -> f64 {
    let per_epoch = steps_per_epoch.max(1) as f64;
    let warmup = schedule.warmup_epochs as f64 * per_epoch;
    let t = step as f64;
    if t < warmup {
        return lr * (t + 1.0) / warmup;
    }
    match schedule.kind {
        ScheduleKind::Constant => lr,
        ScheduleKind::Step => {
            let epoch = (t / per_epoch).floor() as usize;
            lr * schedule
                .gamma
                .powi((epoch / schedule.step_epochs.max(1)) as i32)
        }
        ScheduleKind::Cosine => {
            let total = epochs as f64 * per_epoch - warmup;
            let progress = if total <= 1.0 {
                0.0
            } else {
                ((t - warmup) / (total - 1.0)).clamp(0.0, 1.0)
            };
            let floor = lr * schedule.min_lr_factor;
            floor + (lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_ends_at_the_floor() {
        let s = ScheduleConfig {
            kind: ScheduleKind::Cosine,
            warmup_epochs: 1,
            min_lr_factor: 0.1,
            ..ScheduleConfig::default()
        };
        assert!((learning_rate(&s, 1.0, 0, 4, 3) - 0.25).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 3, 4, 3) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 4, 4, 3) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&s, 1.0, 11, 4, 3) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn step_decays_every_step_epochs() {
        let s = ScheduleConfig {
            kind: ScheduleKind::Step,
            step_epochs: 2,
            gamma: 0.5,
            ..ScheduleConfig::default()
        };
        assert_eq!(learning_rate(&s, 1.0, 3, 2, 10), 1.0);
        assert_eq!(learning_rate(&s, 1.0, 4, 2, 10), 0.5);
        assert_eq!(learning_rate(&s, 1.0, 9, 2, 10), 0.25);
    }
}
