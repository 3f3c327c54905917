//! Survival losses: Cox partial likelihood and pycox's discrete-time losses.
//!
//! Conventions (they change the numbers):
//! - Cox: `risk` is the log hazard ratio `η`; ties in time handled exactly by Breslow's or
//!   Efron's approximation (not pycox's order-dependent cumulative sum); the loss divides
//!   the negative log-likelihood by the number of events.
//! - Discrete time (pycox 0.3): `phi` `[batch, bins]` are logits, `bins_index` the bin of each
//!   subject's time. Logistic hazard: `h = sigmoid(phi)`. PMF and DeepHit: `softmax([phi, 0])`
//!   (the padded zero logit is "after the last bin"). DeepHit total `α·nll + (1 − α)·rank`.

use burn::tensor::Tensor;
use burn::tensor::activation::{relu, softmax};

use super::{check_len, check_non_empty, constant_like};
use crate::error::MlError;

/// How tied event times enter the Cox partial likelihood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CoxTies {
    /// Every tied event sees the full risk set.
    Breslow,
    /// Efron's correction: the tied events' own hazard is removed in steps of `1/m`.
    Efron,
}

fn check_survival(n: usize, durations: &[f64], events: &[bool]) -> Result<(), MlError> {
    check_non_empty(n)?;
    check_len("durations", durations.len(), n)?;
    check_len("events", events.len(), n)?;
    if let Some(i) = durations.iter().position(|d| !d.is_finite()) {
        return Err(MlError::InvalidInput {
            message: format!("duration at row {i} is not finite"),
        });
    }
    Ok(())
}

/// Cox partial log-likelihood (a sum over events; higher is better).
///
/// `ℓ = Σ_events η_i − Σ_{distinct event times t} Σ_{l<m_t} log(Σ_{j∈R(t)} e^{η_j} − c_l Σ_{i∈D(t)} e^{η_i})`
/// with `c_l = 0` (Breslow) or `l/m_t` (Efron), `R(t)` = subjects with duration ≥ t and
/// `D(t)` the `m_t` events at t. Stabilised by the (detached) maximum of `η`.
///
/// # Shapes
/// - risk: `[batch]`; output `[1]`
pub fn cox_partial_log_likelihood(
    risk: Tensor<1>,
    durations: &[f64],
    events: &[bool],
    ties: CoxTies,
) -> Result<Tensor<1>, MlError> {
    let [n] = risk.dims();
    check_survival(n, durations, events)?;
    let mut event_times: Vec<f64> = durations
        .iter()
        .zip(events)
        .filter(|(_, e)| **e)
        .map(|(d, _)| *d)
        .collect();
    event_times.sort_by(f64::total_cmp);
    event_times.dedup();
    // One row per event: the coefficients of e^{η_j} in its log-denominator.
    let mut rows: Vec<f64> = Vec::new();
    let mut n_rows = 0usize;
    for &t in &event_times {
        let tied: Vec<usize> = (0..n).filter(|&i| events[i] && durations[i] == t).collect();
        let m = tied.len();
        for l in 0..m {
            let c = match ties {
                CoxTies::Breslow => 0.0,
                CoxTies::Efron => l as f64 / m as f64,
            };
            let start = rows.len();
            rows.extend(durations.iter().map(|&d| if d >= t { 1.0 } else { 0.0 }));
            for &i in &tied {
                rows[start + i] -= c;
            }
            n_rows += 1;
        }
    }
    let event_mask: Vec<f64> = events.iter().map(|&e| f64::from(u8::from(e))).collect();
    let event_mask = constant_like(event_mask, [n], &risk);
    let numerator = (risk.clone() * event_mask).sum();
    if n_rows == 0 {
        return Ok(numerator);
    }
    let shift = risk.clone().detach().max();
    let weights = constant_like(rows, [n_rows, n], &risk);
    let exp = (risk - shift.clone()).exp().reshape([n, 1]);
    let log_denominators = weights.matmul(exp).log().sum().reshape([1]);
    Ok(numerator - log_denominators - shift.mul_scalar(n_rows as f64))
}

/// Cox loss: negative partial log-likelihood divided by the number of events (0 events: the
/// loss is 0 with no gradient signal).
///
/// # Shapes
/// - risk: `[batch]`; output `[1]`
pub fn cox_loss(
    risk: Tensor<1>,
    durations: &[f64],
    events: &[bool],
    ties: CoxTies,
) -> Result<Tensor<1>, MlError> {
    let n_events = events.iter().filter(|e| **e).count().max(1);
    Ok(cox_partial_log_likelihood(risk, durations, events, ties)?
        .neg()
        .div_scalar(n_events as f64))
}

fn check_discrete(
    phi: &Tensor<2>,
    bins_index: &[usize],
    events: &[bool],
) -> Result<[usize; 2], MlError> {
    let [n, m] = phi.dims();
    check_non_empty(n)?;
    check_len("bins_index", bins_index.len(), n)?;
    check_len("events", events.len(), n)?;
    if let Some(i) = bins_index.iter().position(|&b| b >= m) {
        return Err(MlError::InvalidInput {
            message: format!(
                "bin index {} at row {i} is not below {m} bins",
                bins_index[i]
            ),
        });
    }
    Ok([n, m])
}

/// `[n, width]` matrix with `f(i, j)` entries.
fn host_matrix(n: usize, width: usize, f: impl Fn(usize, usize) -> f64) -> Vec<f64> {
    (0..n)
        .flat_map(|i| (0..width).map(move |j| (i, j)))
        .map(|(i, j)| f(i, j))
        .collect()
}

/// Discrete-time logistic-hazard negative log-likelihood (pycox `nll_logistic_hazard`):
/// mean over subjects of the binary cross-entropy of `sigmoid(phi)` summed over bins
/// `0..=bin`, with target 1 only at the bin of an event.
///
/// # Shapes
/// - phi: `[batch, bins]`; output `[1]`
pub fn nll_logistic_hazard(
    phi: Tensor<2>,
    bins_index: &[usize],
    events: &[bool],
) -> Result<Tensor<1>, MlError> {
    let [n, m] = check_discrete(&phi, bins_index, events)?;
    let target = host_matrix(n, m, |i, j| {
        f64::from(u8::from(events[i] && j == bins_index[i]))
    });
    let at_risk = host_matrix(n, m, |i, j| f64::from(u8::from(j <= bins_index[i])));
    let target = constant_like(target, [n, m], &phi);
    let at_risk = constant_like(at_risk, [n, m], &phi);
    // BCE with logits, stable form: max(x, 0) − x y + log(1 + e^{−|x|}).
    let bce = relu(phi.clone()) - phi.clone() * target + phi.abs().neg().exp().log1p();
    Ok((bce * at_risk).sum().div_scalar(n as f64))
}

/// Append the zero logit "after the last bin" (pycox `pad_col`).
fn pad_zero_column(phi: Tensor<2>) -> Tensor<2> {
    let [n, _] = phi.dims();
    let zeros = constant_like(vec![0.0; n], [n, 1], &phi);
    Tensor::cat(vec![phi, zeros], 1)
}

/// pycox's epsilon inside the logarithms of `nll_pmf`.
const PMF_EPSILON: f64 = 1e-7;

/// PMF negative log-likelihood (pycox `nll_pmf`): `pmf = softmax([phi, 0])`; an event
/// contributes `−log pmf[bin]`, a censored subject `−log(1 − cdf[bin])`.
///
/// # Shapes
/// - phi: `[batch, bins]`; output `[1]`
pub fn nll_pmf(
    phi: Tensor<2>,
    bins_index: &[usize],
    events: &[bool],
) -> Result<Tensor<1>, MlError> {
    let [n, m] = check_discrete(&phi, bins_index, events)?;
    let padded = pad_zero_column(phi);
    let width = m + 1;
    let at_bin = constant_like(
        host_matrix(n, width, |i, j| f64::from(u8::from(j == bins_index[i]))),
        [n, width],
        &padded,
    );
    let event = constant_like(
        events.iter().map(|&e| f64::from(u8::from(e))).collect(),
        [n, 1],
        &padded,
    );
    let gamma = padded.clone().detach().max_dim(1); // [n, 1]
    let cumsum = (padded.clone() - gamma.clone()).exp().cumsum(1);
    let total = cumsum.clone().slice([0..n, m..width]); // [n, 1]
    let phi_at = (padded * at_bin.clone()).sum_dim(1); // [n, 1]
    let part1 = (phi_at - gamma) * event.clone();
    let part2 = relu(total.clone()).add_scalar(PMF_EPSILON).log().neg();
    let cdf_at = (cumsum * at_bin).sum_dim(1);
    let part3 = relu(total - cdf_at).add_scalar(PMF_EPSILON).log() * event.neg().add_scalar(1.0);
    Ok((part1 + part2 + part3).sum().neg().div_scalar(n as f64))
}

/// MTLR negative log-likelihood (pycox `nll_mtlr`): `phi` reverse-cumulated over bins, then
/// [`nll_pmf`].
///
/// # Shapes
/// - phi: `[batch, bins]`; output `[1]`
pub fn nll_mtlr(
    phi: Tensor<2>,
    bins_index: &[usize],
    events: &[bool],
) -> Result<Tensor<1>, MlError> {
    let total = phi.clone().sum_dim(1);
    let reversed = total - phi.clone().cumsum(1) + phi;
    nll_pmf(reversed, bins_index, events)
}

/// DeepHit's comparable-pair matrix (pycox `pair_rank_mat`): entry `(i, j)` is 1 when
/// subject i has an event and `bin_i < bin_j`, or `bin_i == bin_j` and j is censored.
pub fn pair_rank_matrix(bins_index: &[usize], events: &[bool]) -> Vec<Vec<f64>> {
    let n = bins_index.len().min(events.len());
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let (ti, tj) = (bins_index[i], bins_index[j]);
                    let comparable = events[i] && (ti < tj || (ti == tj && !events[j]));
                    f64::from(u8::from(comparable))
                })
                .collect()
        })
        .collect()
}

/// DeepHit ranking loss (pycox `rank_loss_deephit_single`): mean over all pairs of
/// `rank_ij · exp(−(F_i(T_i) − F_j(T_i)) / σ)`, `F` the CDF of `softmax([phi, 0])`.
///
/// # Shapes
/// - phi: `[batch, bins]`; output `[1]`
pub fn deephit_rank_loss(
    phi: Tensor<2>,
    bins_index: &[usize],
    events: &[bool],
    sigma: f64,
) -> Result<Tensor<1>, MlError> {
    let [n, m] = check_discrete(&phi, bins_index, events)?;
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(MlError::InvalidInput {
            message: format!("DeepHit sigma must be positive, got {sigma}"),
        });
    }
    let width = m + 1;
    let pmf = softmax(pad_zero_column(phi), 1);
    let cdf = pmf.cumsum(1); // [n, m+1]
    let at_bin = constant_like(
        host_matrix(n, width, |i, j| f64::from(u8::from(j == bins_index[i]))),
        [n, width],
        &cdf,
    );
    // cdf_at_times[a, b] = F_a(T_b)
    let cdf_at_times = cdf.clone().matmul(at_bin.clone().transpose());
    let own = (cdf * at_bin).sum_dim(1); // [n, 1]: F_i(T_i)
    let diff = own - cdf_at_times.transpose(); // [i, j] = F_i(T_i) − F_j(T_i)
    let rank = constant_like(pair_rank_matrix(bins_index, events).concat(), [n, n], &diff);
    Ok((rank * diff.div_scalar(-sigma).exp()).mean())
}

/// DeepHit (single risk) loss with pycox's convention: `α · nll_pmf + (1 − α) · rank`.
///
/// # Shapes
/// - phi: `[batch, bins]`; output `[1]`
pub fn deephit_loss(
    phi: Tensor<2>,
    bins_index: &[usize],
    events: &[bool],
    alpha: f64,
    sigma: f64,
) -> Result<Tensor<1>, MlError> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(MlError::InvalidInput {
            message: format!("DeepHit alpha must lie in [0, 1], got {alpha}"),
        });
    }
    let nll = nll_pmf(phi.clone(), bins_index, events)?;
    let rank = deephit_rank_loss(phi, bins_index, events, sigma)?;
    Ok(nll.mul_scalar(alpha) + rank.mul_scalar(1.0 - alpha))
}
