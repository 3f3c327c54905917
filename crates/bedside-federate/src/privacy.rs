//! Differential-privacy accounting of the egress filter's Gaussian noise.
//!
//! Each reply releases the site's update clipped to an L2 ball of radius `clip_norm` around the
//! global model, plus Gaussian noise of standard deviation `noise_multiplier × clip_norm`. Two
//! site datasets, whatever their difference, give updates at most `2 × clip_norm` apart, so
//! each release is a Gaussian mechanism with effective noise multiplier
//! `z = noise_multiplier / 2` for the site's whole dataset (a site-level guarantee: the update
//! is not clipped per patient, so no tighter per-patient bound follows). `k` releases compose.
//!
//! Two figures are reported for `δ`:
//! - `epsilon_rdp`: Rényi-DP accounting (Mironov 2017: order-α RDP `k α / (2 z²)`) converted
//!   with the bound of Balle et al. 2020 over Opacus's default orders — the number Opacus's
//!   `RDPAccountant` prints for sample rate 1;
//! - `epsilon_exact`: the exact privacy curve of `k` composed Gaussian mechanisms, which is
//!   μ-Gaussian DP with `μ = √k / z` (Dong, Roth & Su 2019):
//!   `δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2)`, solved for ε.

use serde::Serialize;

/// Privacy spent after some releases.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PrivacySpent {
    /// Updates released so far.
    pub releases: u32,
    /// Noise multiplier relative to the sensitivity `2 × clip_norm`.
    pub effective_noise_multiplier: f64,
    /// δ of the guarantee.
    pub delta: f64,
    /// ε by RDP accounting (Opacus's convention).
    pub epsilon_rdp: f64,
    /// The RDP order that gave `epsilon_rdp`.
    pub rdp_order: f64,
    /// ε of the exact composition (Gaussian DP).
    pub epsilon_exact: f64,
}

/// Opacus's default RDP orders: 1.1, 1.2, …, 10.9, then 12, 13, …, 63.
fn orders() -> impl Iterator<Item = f64> {
    (1..100)
        .map(|x| 1.0 + f64::from(x) / 10.0)
        .chain((12..64).map(f64::from))
}

/// ε by RDP for `k` Gaussian mechanisms of noise multiplier `z`, and the best order.
pub fn epsilon_rdp(z: f64, k: u32, delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for a in orders() {
        let rdp = f64::from(k) * a / (2.0 * z * z);
        let eps = rdp - (delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

fn phi(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// δ at ε of a μ-GDP mechanism.
pub fn gdp_delta(mu: f64, eps: f64) -> f64 {
    phi(-eps / mu + mu / 2.0) - eps.exp() * phi(-eps / mu - mu / 2.0)
}

/// The exact ε at `delta` of `k` Gaussian mechanisms of noise multiplier `z`.
pub fn epsilon_exact(z: f64, k: u32, delta: f64) -> f64 {
    let mu = f64::from(k).sqrt() / z;
    if gdp_delta(mu, 0.0) <= delta {
        return 0.0;
    }
    // δ(ε) decreases in ε: bisect on [0, hi] after growing hi until δ(hi) ≤ delta.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while gdp_delta(mu, hi) > delta && hi < 1e6 {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if gdp_delta(mu, mid) > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Privacy spent after `releases` updates sent with noise multiplier `noise_multiplier`
/// (None without noise: then nothing bounds what an update reveals).
pub fn spent(noise_multiplier: f64, releases: u32, delta: f64) -> Option<PrivacySpent> {
    if noise_multiplier <= 0.0 || releases == 0 {
        return None;
    }
    let z = noise_multiplier / 2.0;
    let (epsilon_rdp, rdp_order) = epsilon_rdp(z, releases, delta);
    Some(PrivacySpent {
        releases,
        effective_noise_multiplier: z,
        delta,
        epsilon_rdp,
        rdp_order,
        epsilon_exact: epsilon_exact(z, releases, delta),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opacus 1.6 `RDPAccountant` (sample rate 1.0, default orders) and the exact Gaussian-DP
    /// curve solved with SciPy, from `tools/flower/privacy_goldens.py`.
    const GOLDEN: &str = include_str!("../tests/fixtures/privacy_goldens.json");

    #[test]
    fn matches_opacus_and_scipy() {
        let cases: serde_json::Value = serde_json::from_str(GOLDEN).expect("golden json");
        let cases = cases["cases"].as_array().expect("cases");
        assert!(cases.len() >= 6);
        for c in cases {
            let z = c["noise_multiplier"].as_f64().expect("z");
            let k = c["steps"].as_u64().expect("k") as u32;
            let delta = c["delta"].as_f64().expect("delta");
            let (rdp, _) = epsilon_rdp(z, k, delta);
            let opacus = c["opacus_epsilon"].as_f64().expect("opacus");
            assert!(
                (rdp - opacus).abs() <= 1e-9 * opacus.max(1.0),
                "{c}: rdp {rdp}"
            );
            let exact = epsilon_exact(z, k, delta);
            let scipy = c["exact_epsilon"].as_f64().expect("scipy");
            assert!(
                (exact - scipy).abs() <= 1e-6 * scipy.max(1.0),
                "{c}: exact {exact}"
            );
            // The exact curve is never looser than the RDP bound.
            assert!(exact <= rdp + 1e-9, "{c}");
        }
    }

    #[test]
    fn no_noise_no_guarantee_and_more_rounds_cost_more() {
        assert_eq!(spent(0.0, 3, 1e-5), None);
        let a = spent(2.0, 1, 1e-5).expect("noise");
        let b = spent(2.0, 10, 1e-5).expect("noise");
        assert_eq!(a.effective_noise_multiplier, 1.0);
        assert!(b.epsilon_rdp > a.epsilon_rdp && b.epsilon_exact > a.epsilon_exact);
        // At the solved ε the exact curve gives back δ.
        let mu = 10f64.sqrt() / 1.0;
        assert!((gdp_delta(mu, b.epsilon_exact) - 1e-5).abs() < 1e-9);
    }
}
