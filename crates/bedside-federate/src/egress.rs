//! The site's egress filter: what an update may look like before it leaves the site.
//!
//! Applied to the update (local − global) across all arrays: L2-norm clipping, then
//! optional Gaussian noise of standard deviation `noise_multiplier × clip_norm` (the
//! Gaussian mechanism of DP-FedAvg; [`crate::privacy`] accounts for it across rounds), then
//! optional float16 quantisation of what is sent.

use serde::{Deserialize, Serialize};

use crate::npy::Tensor;

/// Egress settings (`[egress]` in site.toml).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Clip the update's L2 norm to this value (0: no clipping).
    pub clip_norm: f64,
    /// Gaussian noise multiplier (needs `clip_norm`; 0: no noise).
    pub noise_multiplier: f64,
    /// Send float16 instead of float32.
    pub fp16: bool,
    /// δ of the (ε, δ) guarantee the audit log reports when noise is on (0: 1e-5).
    pub delta: f64,
}

/// What the filter did (written to the audit log).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EgressReport {
    /// L2 norm of the update before clipping.
    pub update_norm: f64,
    /// Norm after clipping (before noise).
    pub clipped_norm: f64,
    /// Standard deviation of the noise added to each value.
    pub noise_sd: f64,
    /// Element type sent.
    pub dtype: &'static str,
    /// Privacy spent by the site so far, this update included (with noise only).
    pub privacy: Option<crate::privacy::PrivacySpent>,
}

/// Filters `local` against `global` in place.
pub fn apply(
    config: &EgressConfig,
    global: &[(String, Tensor)],
    local: &mut [(String, Tensor)],
    normal: &mut dyn FnMut() -> f64,
) -> EgressReport {
    let mut sq = 0.0f64;
    for (name, t) in local.iter() {
        let g = global.iter().find(|(k, _)| k == name).map(|(_, g)| &g.data);
        for (i, v) in t.data.iter().enumerate() {
            let base = g.and_then(|g| g.get(i)).copied().unwrap_or(0.0);
            let d = f64::from(*v) - f64::from(base);
            sq += d * d;
        }
    }
    let norm = sq.sqrt();
    let scale = if config.clip_norm > 0.0 && norm > config.clip_norm {
        config.clip_norm / norm
    } else {
        1.0
    };
    let noise_sd = if config.clip_norm > 0.0 {
        config.noise_multiplier * config.clip_norm
    } else {
        0.0
    };
    if scale != 1.0 || noise_sd > 0.0 {
        for (name, t) in local.iter_mut() {
            let g = global.iter().find(|(k, _)| k == name).map(|(_, g)| &g.data);
            for (i, v) in t.data.iter_mut().enumerate() {
                let base = f64::from(g.and_then(|g| g.get(i)).copied().unwrap_or(0.0));
                let mut d = (f64::from(*v) - base) * scale;
                if noise_sd > 0.0 {
                    d += noise_sd * normal();
                }
                *v = (base + d) as f32;
            }
        }
    }
    EgressReport {
        update_norm: norm,
        clipped_norm: norm * scale,
        noise_sd,
        dtype: if config.fp16 { "float16" } else { "float32" },
        privacy: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_bounds_the_update_norm() {
        let global = vec![("w".to_string(), Tensor::vector(vec![1.0, 1.0]))];
        let mut local = vec![("w".to_string(), Tensor::vector(vec![4.0, 5.0]))];
        let cfg = EgressConfig {
            clip_norm: 1.0,
            ..Default::default()
        };
        let r = apply(&cfg, &global, &mut local, &mut || 0.0);
        assert!((r.update_norm - 5.0).abs() < 1e-9);
        assert!((r.clipped_norm - 1.0).abs() < 1e-9);
        let d: Vec<f32> = local[0].1.data.iter().map(|v| v - 1.0).collect();
        assert!((d[0] - 0.6).abs() < 1e-6 && (d[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn noise_has_the_configured_scale() {
        let global = vec![("w".to_string(), Tensor::vector(vec![0.0; 4000]))];
        let mut local = global.clone();
        let cfg = EgressConfig {
            clip_norm: 2.0,
            noise_multiplier: 0.5,
            ..Default::default()
        };
        let mut rng = bedside_core::rng::Rng::seed_from(7);
        let r = apply(&cfg, &global, &mut local, &mut || rng.normal());
        assert_eq!(r.noise_sd, 1.0);
        let var: f64 = local[0]
            .1
            .data
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            / 4000.0;
        assert!((var - 1.0).abs() < 0.1, "{var}");
    }
}
