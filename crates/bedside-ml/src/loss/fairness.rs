//! Fairness penalties and gaps over any number of groups.
//!
//! `scores` are probabilities (or 0/1 predictions); groups are integer ids `0..G`. Unlike
//! FairTorch 0.1.2, whose demographic-parity constraint only involves group 0 when there are
//! more than two groups, every group present in the batch contributes here.
//!
//! - Penalties (smooth, for training): `Σ_g (E[f|g] − E[f])²`, and for equalized odds the same
//!   within each true class.
//! - Gaps (fairlearn's definitions): `max_g E[f|g] − min_g E[f|g]`; equalized odds
//!   `max(TPR gap, FPR gap)`.

use burn::tensor::Tensor;

use super::{check_len, check_non_empty, constant_like};
use crate::error::MlError;

/// Rows of a `[G, n]` averaging matrix: `1/n_g` for the members of each non-empty group
/// (restricted to `keep`).
fn group_means_matrix(groups: &[usize], keep: impl Fn(usize) -> bool) -> (Vec<f64>, usize) {
    let n = groups.len();
    let n_groups = groups.iter().copied().max().map_or(0, |g| g + 1);
    let mut rows = Vec::new();
    let mut count = 0;
    for g in 0..n_groups {
        let members: Vec<usize> = (0..n).filter(|&i| groups[i] == g && keep(i)).collect();
        if members.is_empty() {
            continue;
        }
        let mut row = vec![0.0; n];
        for &i in &members {
            row[i] = 1.0 / members.len() as f64;
        }
        rows.extend(row);
        count += 1;
    }
    (rows, count)
}

/// Per-group means `[G', 1]` of the groups present among the rows where `keep` holds, and
/// the overall mean of those rows `[1, 1]`.
fn group_means(
    scores: &Tensor<1>,
    groups: &[usize],
    keep: impl Fn(usize) -> bool + Copy,
) -> Option<(Tensor<2>, Tensor<2>)> {
    let [n] = scores.dims();
    let (rows, count) = group_means_matrix(groups, keep);
    let kept: Vec<usize> = (0..n).filter(|&i| keep(i)).collect();
    if count == 0 || kept.is_empty() {
        return None;
    }
    let mut overall = vec![0.0; n];
    for &i in &kept {
        overall[i] = 1.0 / kept.len() as f64;
    }
    let column = scores.clone().reshape([n, 1]);
    let means = constant_like(rows, [count, n], scores).matmul(column.clone());
    let mean = constant_like(overall, [1, n], scores).matmul(column);
    Some((means, mean))
}

fn check(scores: &Tensor<1>, groups: &[usize]) -> Result<usize, MlError> {
    let [n] = scores.dims();
    check_non_empty(n)?;
    check_len("groups", groups.len(), n)?;
    Ok(n)
}

/// Demographic-parity penalty `Σ_g (E[f|g] − E[f])²` over the groups present.
///
/// # Shapes
/// - scores: `[batch]`; output `[1]`
pub fn demographic_parity_penalty(
    scores: Tensor<1>,
    groups: &[usize],
) -> Result<Tensor<1>, MlError> {
    check(&scores, groups)?;
    match group_means(&scores, groups, |_| true) {
        Some((means, mean)) => Ok((means - mean).square().sum()),
        None => Ok(scores.sum().mul_scalar(0.0)),
    }
}

/// Equalized-odds penalty `Σ_y Σ_g (E[f|g, y] − E[f|y])²` over the classes and groups
/// present.
///
/// # Shapes
/// - scores: `[batch]`; output `[1]`
pub fn equalized_odds_penalty(
    scores: Tensor<1>,
    labels: &[bool],
    groups: &[usize],
) -> Result<Tensor<1>, MlError> {
    check(&scores, groups)?;
    check_len("labels", labels.len(), groups.len())?;
    let mut total = scores.clone().sum().mul_scalar(0.0);
    for class in [false, true] {
        if let Some((means, mean)) = group_means(&scores, groups, |i| labels[i] == class) {
            total = total + (means - mean).square().sum();
        }
    }
    Ok(total)
}

/// Largest minus smallest group mean (fairlearn's `demographic_parity_difference` when the
/// scores are 0/1 predictions).
///
/// # Shapes
/// - scores: `[batch]`; output `[1]`
pub fn demographic_parity_gap(scores: Tensor<1>, groups: &[usize]) -> Result<Tensor<1>, MlError> {
    check(&scores, groups)?;
    match group_means(&scores, groups, |_| true) {
        Some((means, _)) => Ok(means.clone().max().reshape([1]) - means.min().reshape([1])),
        None => Ok(scores.sum().mul_scalar(0.0)),
    }
}

/// `max(TPR gap, FPR gap)` between groups (fairlearn's `equalized_odds_difference`,
/// `agg='worst_case'`, when the scores are 0/1 predictions).
///
/// # Shapes
/// - scores: `[batch]`; output `[1]`
pub fn equalized_odds_gap(
    scores: Tensor<1>,
    labels: &[bool],
    groups: &[usize],
) -> Result<Tensor<1>, MlError> {
    check(&scores, groups)?;
    check_len("labels", labels.len(), groups.len())?;
    let mut gaps = Vec::new();
    for class in [true, false] {
        if let Some((means, _)) = group_means(&scores, groups, |i| labels[i] == class) {
            gaps.push(means.clone().max().reshape([1]) - means.min().reshape([1]));
        }
    }
    if gaps.is_empty() {
        return Ok(scores.sum().mul_scalar(0.0));
    }
    Ok(Tensor::cat(gaps, 0).max())
}
