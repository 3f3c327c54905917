//! Concordance indices: Harrell's C, Uno's IPCW C (both O(n log n) with O(n²) references), and
//! Antolini's time-dependent concordance for predicted survival curves.

use serde::Serialize;

use super::check_survival;
use super::km::{CensoringDistribution, CensoringTies};
use crate::error::{EvalError, Result, check_finite, check_len};

/// Options shared by Harrell's and Uno's C.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConcordanceOptions {
    /// Risk scores closer than this count as tied (one half). scikit-survival: 1e-8 (default);
    /// lifelines compares exactly (0).
    pub tie_tolerance: f64,
    /// Uno's C only: truncation time τ; only pairs whose earlier time is `< τ` count.
    pub tau: Option<f64>,
    /// Uno's C only: how the censoring distribution orders tied events and censorings.
    pub censoring_ties: CensoringTies,
}

impl Default for ConcordanceOptions {
    fn default() -> Self {
        ConcordanceOptions {
            tie_tolerance: 1e-8,
            tau: None,
            censoring_ties: CensoringTies::EventsFirst,
        }
    }
}

/// A concordance index with its pair counts (scikit-survival's return tuple).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ConcordanceResult {
    /// The (weighted) concordance index.
    pub c_index: f64,
    /// Comparable pairs ordered correctly by the risk score.
    pub concordant: u64,
    /// Comparable pairs ordered wrongly.
    pub discordant: u64,
    /// Comparable pairs with tied risk scores.
    pub tied_risk: u64,
    /// Event–censoring pairs at the same time (comparable).
    pub tied_time: u64,
}

/// Fenwick tree of counts.
struct Fenwick {
    tree: Vec<u32>,
}

impl Fenwick {
    fn new(n: usize) -> Self {
        Fenwick {
            tree: vec![0; n + 1],
        }
    }
    fn add(&mut self, pos: usize) {
        let mut i = pos + 1;
        while i < self.tree.len() {
            self.tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    }
    /// Count of positions `< end`.
    fn prefix(&self, end: usize) -> u64 {
        let mut i = end;
        let mut s = 0u64;
        while i > 0 {
            s += u64::from(self.tree[i]);
            i &= i - 1;
        }
        s
    }
}

fn check_risk(time: &[f64], event: &[bool], risk: &[f64], tol: f64) -> Result<()> {
    check_survival(time, event)?;
    check_len("risk", risk.len(), time.len())?;
    check_finite("risk", risk)?;
    if !(tol >= 0.0 && tol.is_finite()) {
        return Err(EvalError::InvalidOption {
            option: "tie_tolerance",
            reason: format!("{tol} is not a finite non-negative number"),
        });
    }
    if time.len() > u32::MAX as usize {
        return Err(EvalError::InvalidOption {
            option: "time",
            reason: "more than 2^32 cases".into(),
        });
    }
    Ok(())
}

/// O(n log n) weighted concordance with scikit-survival's comparability rules.
/// `weight(i)` is the weight of pairs whose earlier member (an event) is `i`.
fn concordance_fast(
    time: &[f64],
    event: &[bool],
    risk: &[f64],
    weight: &dyn Fn(usize) -> f64,
    tol: f64,
) -> Result<ConcordanceResult> {
    let n = time.len();
    // Sort (value, index) pairs directly: indirect comparisons through the original slices
    // would miss the cache on every step at large n.
    let mut by_risk: Vec<(f64, u32)> = risk
        .iter()
        .enumerate()
        .map(|(i, &r)| (r, i as u32))
        .collect();
    by_risk.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut pos = vec![0u32; n];
    for (p, &(_, i)) in by_risk.iter().enumerate() {
        pos[i as usize] = p as u32;
    }
    // For each rank position, the range of positions whose scores are tied within `tol`
    // ([lo, hi)); both ends are non-decreasing in the position, so two pointers suffice.
    let mut lo_at = vec![0u32; n];
    let mut hi_at = vec![0u32; n];
    let (mut lo, mut hi) = (0usize, 0usize);
    for p in 0..n {
        let v = by_risk[p].0;
        while by_risk[lo].0 < v - tol {
            lo += 1;
        }
        while hi < n && by_risk[hi].0 <= v + tol {
            hi += 1;
        }
        lo_at[p] = lo as u32;
        hi_at[p] = hi as u32;
    }
    drop(by_risk);
    let mut by_time: Vec<(f64, u32)> = time
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i as u32))
        .collect();
    by_time.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));

    let mut tree = Fenwick::new(n);
    let mut inserted = 0u64;
    let (mut concordant, mut discordant, mut tied_risk, mut tied_time) = (0u64, 0u64, 0u64, 0u64);
    let (mut numerator, mut denominator) = (0.0f64, 0.0f64);
    let mut any_pair = false;
    let mut k = 0;
    while k < n {
        let t = by_time[k].0;
        let mut end = k;
        while end < n && by_time[end].0 == t {
            end += 1;
        }
        let group = &by_time[k..end];
        let mut censored_here = 0u64;
        for &(_, j) in group {
            let j = j as usize;
            if !event[j] {
                tree.add(pos[j] as usize);
                inserted += 1;
                censored_here += 1;
            }
        }
        for &(_, i) in group {
            let i = i as usize;
            if !event[i] {
                continue;
            }
            any_pair |= inserted > 0;
            let p = pos[i] as usize;
            let below = tree.prefix(lo_at[p] as usize);
            let ties = tree.prefix(hi_at[p] as usize) - below;
            let w = weight(i);
            numerator += w * (below as f64 + 0.5 * ties as f64);
            denominator += w * inserted as f64;
            concordant += below;
            tied_risk += ties;
            discordant += inserted - below - ties;
            tied_time += censored_here;
        }
        for &(_, i) in group {
            let i = i as usize;
            if event[i] {
                tree.add(pos[i] as usize);
                inserted += 1;
            }
        }
        k = end;
    }
    if !any_pair || denominator <= 0.0 {
        return Err(EvalError::Undefined {
            metric: "concordance index",
            reason: "no comparable pairs".into(),
        });
    }
    Ok(ConcordanceResult {
        c_index: numerator / denominator,
        concordant,
        discordant,
        tied_risk,
        tied_time,
    })
}

/// O(n²) reference implementation of the same definition, used to check the fast one.
fn concordance_reference(
    time: &[f64],
    event: &[bool],
    risk: &[f64],
    weight: &dyn Fn(usize) -> f64,
    tol: f64,
) -> Result<ConcordanceResult> {
    let n = time.len();
    let (mut concordant, mut discordant, mut tied_risk, mut tied_time) = (0u64, 0u64, 0u64, 0u64);
    let (mut numerator, mut denominator) = (0.0f64, 0.0f64);
    for i in 0..n {
        if !event[i] {
            continue;
        }
        let w = weight(i);
        for j in 0..n {
            let comparable = time[j] > time[i] || (time[j] == time[i] && !event[j]);
            if !comparable {
                continue;
            }
            if time[j] == time[i] {
                tied_time += 1;
            }
            denominator += w;
            if (risk[j] - risk[i]).abs() <= tol {
                tied_risk += 1;
                numerator += 0.5 * w;
            } else if risk[j] < risk[i] {
                concordant += 1;
                numerator += w;
            } else {
                discordant += 1;
            }
        }
    }
    if concordant + discordant + tied_risk == 0 || denominator <= 0.0 {
        return Err(EvalError::Undefined {
            metric: "concordance index",
            reason: "no comparable pairs".into(),
        });
    }
    Ok(ConcordanceResult {
        c_index: numerator / denominator,
        concordant,
        discordant,
        tied_risk,
        tied_time,
    })
}

/// Harrell's concordance index in O(n log n).
///
/// A pair is comparable when the earlier time is an event; two events at the same time are not
/// comparable, an event and a censoring at the same time are. Risk ties within
/// `options.tie_tolerance` count one half. Equals scikit-survival's `concordance_index_censored`
/// (and lifelines' `concordance_index(time, -risk, event)` when the tolerance is 0).
pub fn compute_harrell_c(
    time: &[f64],
    event: &[bool],
    risk: &[f64],
    options: &ConcordanceOptions,
) -> Result<ConcordanceResult> {
    check_risk(time, event, risk, options.tie_tolerance)?;
    concordance_fast(time, event, risk, &|_| 1.0, options.tie_tolerance)
}

/// O(n²) reference for [`compute_harrell_c`].
pub fn compute_harrell_c_reference(
    time: &[f64],
    event: &[bool],
    risk: &[f64],
    options: &ConcordanceOptions,
) -> Result<ConcordanceResult> {
    check_risk(time, event, risk, options.tie_tolerance)?;
    concordance_reference(time, event, risk, &|_| 1.0, options.tie_tolerance)
}

fn uno_weights(
    train_time: &[f64],
    train_event: &[bool],
    time: &[f64],
    event: &[bool],
    options: &ConcordanceOptions,
) -> Result<Vec<f64>> {
    let g = CensoringDistribution::fit(train_time, train_event, options.censoring_ties)?;
    let mut w = vec![0.0; time.len()];
    for i in 0..time.len() {
        if !event[i] || options.tau.is_some_and(|tau| time[i] >= tau) {
            continue;
        }
        let gi = g.survival_at(time[i])?;
        if gi <= 0.0 {
            return Err(EvalError::Undefined {
                metric: "Uno's C",
                reason: format!("censoring survival is zero at time {}", time[i]),
            });
        }
        w[i] = 1.0 / (gi * gi);
    }
    Ok(w)
}

/// Uno's IPCW concordance index in O(n log n).
///
/// Each comparable pair with earlier event `i` is weighted by `1 / G(Tᵢ)²`, with G the
/// Kaplan–Meier estimate of the censoring distribution fitted on `(train_time, train_event)`
/// (scikit-survival's convention; pass the test data to fit G on it instead). With `tau`, only
/// pairs with `Tᵢ < τ` count. Pair counts in the result are unweighted and include all
/// comparable pairs, as scikit-survival's `concordance_index_ipcw` reports them.
pub fn compute_uno_c(
    train_time: &[f64],
    train_event: &[bool],
    time: &[f64],
    event: &[bool],
    risk: &[f64],
    options: &ConcordanceOptions,
) -> Result<ConcordanceResult> {
    check_risk(time, event, risk, options.tie_tolerance)?;
    let w = uno_weights(train_time, train_event, time, event, options)?;
    concordance_fast(time, event, risk, &|i| w[i], options.tie_tolerance)
}

/// O(n²) reference for [`compute_uno_c`].
pub fn compute_uno_c_reference(
    train_time: &[f64],
    train_event: &[bool],
    time: &[f64],
    event: &[bool],
    risk: &[f64],
    options: &ConcordanceOptions,
) -> Result<ConcordanceResult> {
    check_risk(time, event, risk, options.tie_tolerance)?;
    let w = uno_weights(train_time, train_event, time, event, options)?;
    concordance_reference(time, event, risk, &|i| w[i], options.tie_tolerance)
}

/// Which of pycox's time-dependent concordance definitions to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub enum AntoliniVariant {
    /// Antolini et al. (2005): comparable if `Tᵢ < Tⱼ` and `i` had an event, or `Tᵢ = Tⱼ`,
    /// `i` an event and `j` censored; concordant if `Sᵢ(Tᵢ) < Sⱼ(Tᵢ)` (pycox `"antolini"`).
    #[default]
    Antolini,
    /// pycox's adjusted version (`"adj_antolini"`): ties in survival count one half and pairs
    /// tied in time with at least one event are comparable.
    Adjusted,
}

/// Antolini's time-dependent concordance for predicted survival curves.
///
/// `survival` is row-major `n × grid.len()`: `survival[i * g + k]` is subject `i`'s predicted
/// survival at `grid[k]` (grid increasing). Subject `i`'s curve is read at the last grid time
/// `<= Tᵢ` (the first grid time if `Tᵢ` precedes the grid), as pycox does. O(n²).
pub fn compute_antolini_concordance(
    time: &[f64],
    event: &[bool],
    grid: &[f64],
    survival: &[f64],
    variant: AntoliniVariant,
) -> Result<f64> {
    check_survival(time, event)?;
    let n = time.len();
    let g = grid.len();
    check_len("survival matrix", survival.len(), n * g)?;
    check_finite("survival", survival)?;
    if g == 0 {
        return Err(EvalError::Empty {
            context: " (time grid)".into(),
        });
    }
    let idx: Vec<usize> = time
        .iter()
        .map(|&t| super::step_index(grid, t).unwrap_or(0))
        .collect();
    let (mut conc, mut comp) = (0.0f64, 0.0f64);
    for i in 0..n {
        let k = idx[i];
        let s_i = survival[i * g + k];
        for j in 0..n {
            if j == i {
                continue;
            }
            let s_j = survival[j * g + k];
            let (ti, tj, di, dj) = (time[i], time[j], event[i], event[j]);
            match variant {
                AntoliniVariant::Antolini => {
                    let comparable = (ti < tj && di) || (ti == tj && di && !dj);
                    if comparable {
                        comp += 1.0;
                        if s_i < s_j {
                            conc += 1.0;
                        }
                    }
                }
                AntoliniVariant::Adjusted => {
                    let comparable = (ti < tj && di) || (ti == tj && (di || dj));
                    if !comparable {
                        continue;
                    }
                    comp += 1.0;
                    let half = |c: bool, tie: bool| {
                        f64::from(u8::from(c)) + 0.5 * f64::from(u8::from(tie))
                    };
                    conc += if ti < tj {
                        half(s_i < s_j, s_i == s_j)
                    } else if di && dj {
                        1.0 - 0.5 * f64::from(u8::from(s_i != s_j))
                    } else if di {
                        half(s_i < s_j, s_i == s_j)
                    } else {
                        half(s_i > s_j, s_i == s_j)
                    };
                }
            }
        }
    }
    if comp == 0.0 {
        return Err(EvalError::Undefined {
            metric: "Antolini's concordance",
            reason: "no comparable pairs".into(),
        });
    }
    Ok(conc / comp)
}
