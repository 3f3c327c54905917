//! Agreement between readers, and between an AI and readers: Cohen's and Fleiss' kappa for
//! labels, intraclass correlation and Bland–Altman for measurements, Dice and IoU for masks,
//! and an AI-versus-clinician comparison against a reference.
//!
//! Conventions, chosen so that the numbers match the usual references:
//!
//! - **Cohen's kappa** equals scikit-learn's `cohen_kappa_score`: categories are indexed in the
//!   order given (for weighted kappa the index, not the label's value, sets the distance), and
//!   the weights are `|i − j|` or `(i − j)²`. The standard error is Fleiss, Cohen & Everitt
//!   (1969) as in statsmodels' `cohens_kappa` (`std_kappa`, and `std_kappa0` under κ = 0); the
//!   interval is the normal interval `κ ± z·SE`.
//! - **Fleiss' kappa** equals statsmodels' `fleiss_kappa(method="fleiss")` when every subject
//!   has the same number of ratings. Missing ratings are allowed (statsmodels does not allow
//!   them): each subject's agreement uses its own number of ratings `nᵢ`, category shares pool
//!   all ratings, and subjects with fewer than two ratings are left out. The standard error
//!   under κ = 0 (Fleiss, Nee & Landis 1979) is given only for a constant number of ratings;
//!   the interval is a subject-level bootstrap.
//! - **ICC** follows Shrout & Fleiss (1979) and McGraw & Wong (1996) as pingouin's
//!   `intraclass_corr` computes them (two-way ANOVA mean squares, F-test intervals, the
//!   Satterthwaite degrees of freedom for ICC(2,·)); targets with a missing rating are left
//!   out (pingouin's `nan_policy="omit"`).
//! - **Bland–Altman** differences are `a − b`; limits `bias ± z·sd`; the intervals of the bias
//!   and of each limit use Student's t with n − 1 degrees of freedom and the limit's standard
//!   error `sd·√(1/n + z²/(2(n − 1)))` (Bland & Altman 1999, section 5.1).
//! - **Dice/IoU** count non-zero pixels as foreground. A frame empty in both masks counts as
//!   perfect agreement (1) by default, or is skipped ([`EmptyFrames`]); pooled values sum the
//!   counts over all frames (scikit-learn's `f1_score`/`jaccard_score` on the flattened masks).

mod dist;
pub mod report;

use serde::Serialize;

use crate::bootstrap::{BootstrapOptions, Clusters, Estimate, bootstrap_ci, bootstrap_ci_many};
use crate::error::{EvalError, Result, check_finite, check_len};
use crate::regression::compute_bland_altman;
use crate::stats::{chi2_sf, normal_critical};

fn check_confidence(confidence: f64) -> Result<()> {
    if !(0.0 < confidence && confidence < 1.0) {
        return Err(EvalError::InvalidOption {
            option: "confidence",
            reason: format!("{confidence} is not in (0, 1)"),
        });
    }
    Ok(())
}

/// Two-sided p-value of a standard normal statistic.
fn normal_p(z: f64) -> f64 {
    chi2_sf(z * z, 1.0)
}

/// Weighting of disagreements in Cohen's kappa.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KappaWeights {
    /// Every disagreement counts fully (nominal categories).
    #[default]
    None,
    /// Disagreement weight `|i − j|` (ordinal categories).
    Linear,
    /// Disagreement weight `(i − j)²`.
    Quadratic,
}

impl std::str::FromStr for KappaWeights {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "unweighted" => Ok(Self::None),
            "linear" => Ok(Self::Linear),
            "quadratic" => Ok(Self::Quadratic),
            _ => Err(format!("`{s}`: expected none, linear or quadratic")),
        }
    }
}

/// Cohen's kappa with its standard errors and normal interval.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct CohenKappa {
    /// Items rated by both readers.
    pub n: usize,
    /// Weighting used.
    pub weights: KappaWeights,
    /// Kappa.
    pub kappa: f64,
    /// (Weighted) observed agreement.
    pub observed_agreement: f64,
    /// (Weighted) agreement expected by chance.
    pub expected_agreement: f64,
    /// Asymptotic standard error (Fleiss, Cohen & Everitt 1969).
    pub se: f64,
    /// Standard error under κ = 0, used for the test.
    pub se_null: f64,
    /// z statistic `κ / se_null`.
    pub z: f64,
    /// Two-sided p-value of κ = 0.
    pub p_value: f64,
    /// Lower limit `κ − z·se`.
    pub lower: f64,
    /// Upper limit `κ + z·se`.
    pub upper: f64,
}

/// Cohen's kappa from a `k × k` contingency table (rows: reader A, columns: reader B).
pub fn cohen_kappa_from_table(
    table: &[Vec<f64>],
    weights: KappaWeights,
    confidence: f64,
) -> Result<CohenKappa> {
    check_confidence(confidence)?;
    let k = table.len();
    for row in table {
        check_len("contingency table row", row.len(), k)?;
        check_finite("contingency table", row)?;
    }
    let n: f64 = table.iter().flatten().sum();
    if k < 2 || n <= 0.0 {
        return Err(EvalError::Undefined {
            metric: "Cohen's kappa",
            reason: "needs at least two categories and one rated item".into(),
        });
    }
    let span = (k - 1) as f64;
    let w = |i: usize, j: usize| -> f64 {
        let d = i.abs_diff(j) as f64;
        match weights {
            KappaWeights::None => f64::from(u8::from(i == j)),
            KappaWeights::Linear => 1.0 - d / span,
            KappaWeights::Quadratic => 1.0 - (d / span).powi(2),
        }
    };
    let p = |i: usize, j: usize| table[i][j] / n;
    let row: Vec<f64> = (0..k).map(|i| (0..k).map(|j| p(i, j)).sum()).collect();
    let col: Vec<f64> = (0..k).map(|j| (0..k).map(|i| p(i, j)).sum()).collect();
    let (mut po, mut pe) = (0.0, 0.0);
    for (i, &ri) in row.iter().enumerate() {
        for (j, &cj) in col.iter().enumerate() {
            po += w(i, j) * p(i, j);
            pe += w(i, j) * ri * cj;
        }
    }
    if pe >= 1.0 {
        return Err(EvalError::Undefined {
            metric: "Cohen's kappa",
            reason: "chance agreement is 1 (both readers used one category)".into(),
        });
    }
    let kappa = (po - pe) / (1.0 - pe);
    // w̄ᵢ. and w̄.ⱼ of Fleiss, Cohen & Everitt (1969).
    let w_row: Vec<f64> = (0..k)
        .map(|i| (0..k).map(|j| col[j] * w(i, j)).sum())
        .collect();
    let w_col: Vec<f64> = (0..k)
        .map(|j| (0..k).map(|i| row[i] * w(i, j)).sum())
        .collect();
    let (mut a, mut a0) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            a += p(i, j) * (w(i, j) - (w_row[i] + w_col[j]) * (1.0 - kappa)).powi(2);
            a0 += row[i] * col[j] * (w(i, j) - (w_row[i] + w_col[j])).powi(2);
        }
    }
    let fac = 1.0 / ((1.0 - pe).powi(2) * n);
    let var = ((a - (kappa - pe * (1.0 - kappa)).powi(2)) * fac).max(0.0);
    let var0 = ((a0 - pe * pe) * fac).max(0.0);
    let (se, se_null) = (var.sqrt(), var0.sqrt());
    let z_crit = normal_critical(confidence);
    let z = kappa / se_null;
    Ok(CohenKappa {
        n: n.round() as usize,
        weights,
        kappa,
        observed_agreement: po,
        expected_agreement: pe,
        se,
        se_null,
        z,
        p_value: normal_p(z),
        lower: kappa - z_crit * se,
        upper: kappa + z_crit * se,
    })
}

/// Cohen's kappa of two readers' category codes (`0..n_categories`, same items in the same
/// order). The code order is the ordinal order for weighted kappa.
pub fn cohen_kappa(
    a: &[usize],
    b: &[usize],
    n_categories: usize,
    weights: KappaWeights,
    confidence: f64,
) -> Result<CohenKappa> {
    check_len("reader B", b.len(), a.len())?;
    let mut table = vec![vec![0.0; n_categories]; n_categories];
    for (row, (&x, &y)) in a.iter().zip(b).enumerate() {
        if x >= n_categories || y >= n_categories {
            return Err(EvalError::InvalidOption {
                option: "category code",
                reason: format!("row {row} has a code outside 0..{n_categories}"),
            });
        }
        table[x][y] += 1.0;
    }
    cohen_kappa_from_table(&table, weights, confidence)
}

/// Fleiss' kappa for many readers.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleissKappa {
    /// Subjects used (those with at least two ratings).
    pub subjects: usize,
    /// Ratings used.
    pub ratings: usize,
    /// Fewest ratings of a subject used.
    pub min_raters: usize,
    /// Most ratings of a subject.
    pub max_raters: usize,
    /// Mean per-subject agreement P̄.
    pub observed_agreement: f64,
    /// Chance agreement Σ pⱼ².
    pub expected_agreement: f64,
    /// Share of all ratings in each category.
    pub category_shares: Vec<f64>,
    /// Kappa.
    pub kappa: f64,
    /// Standard error under κ = 0 (Fleiss, Nee & Landis 1979); NaN unless every subject has
    /// the same number of ratings.
    pub se_null: f64,
    /// z statistic `κ / se_null`.
    pub z: f64,
    /// Two-sided p-value of κ = 0.
    pub p_value: f64,
}

/// Fleiss' kappa from a subjects × categories table of rating counts.
pub fn fleiss_kappa(counts: &[Vec<u32>]) -> Result<FleissKappa> {
    let k = counts.first().map_or(0, Vec::len);
    for row in counts {
        check_len("category counts", row.len(), k)?;
    }
    let used: Vec<&Vec<u32>> = counts
        .iter()
        .filter(|r| r.iter().map(|&c| c as u64).sum::<u64>() >= 2)
        .collect();
    if used.is_empty() || k < 2 {
        return Err(EvalError::Undefined {
            metric: "Fleiss' kappa",
            reason: "needs two categories and a subject with at least two ratings".into(),
        });
    }
    let raters: Vec<f64> = used
        .iter()
        .map(|r| r.iter().map(|&c| c as f64).sum())
        .collect();
    let total: f64 = raters.iter().sum();
    let shares: Vec<f64> = (0..k)
        .map(|j| used.iter().map(|r| r[j] as f64).sum::<f64>() / total)
        .collect();
    let p_bar = used
        .iter()
        .zip(&raters)
        .map(|(r, &m)| {
            let sq: f64 = r.iter().map(|&c| (c as f64) * (c as f64)).sum();
            (sq - m) / (m * (m - 1.0))
        })
        .sum::<f64>()
        / used.len() as f64;
    let pe: f64 = shares.iter().map(|p| p * p).sum();
    if pe >= 1.0 {
        return Err(EvalError::Undefined {
            metric: "Fleiss' kappa",
            reason: "every rating is in one category".into(),
        });
    }
    let kappa = (p_bar - pe) / (1.0 - pe);
    let min_r = raters.iter().copied().fold(f64::INFINITY, f64::min);
    let max_r = raters.iter().copied().fold(0.0, f64::max);
    let se_null = if min_r == max_r {
        let (m, s) = (max_r, used.len() as f64);
        let pq: f64 = shares.iter().map(|p| p * (1.0 - p)).sum();
        let pqqp: f64 = shares.iter().map(|p| p * (1.0 - p) * (1.0 - 2.0 * p)).sum();
        (2.0f64).sqrt() / (pq * (s * m * (m - 1.0)).sqrt()) * (pq * pq - pqqp).max(0.0).sqrt()
    } else {
        f64::NAN
    };
    let z = kappa / se_null;
    Ok(FleissKappa {
        subjects: used.len(),
        ratings: total as usize,
        min_raters: min_r as usize,
        max_raters: max_r as usize,
        observed_agreement: p_bar,
        expected_agreement: pe,
        category_shares: shares,
        kappa,
        se_null,
        z,
        p_value: if z.is_finite() { normal_p(z) } else { f64::NAN },
    })
}

/// Fleiss' kappa with a percentile bootstrap interval that resamples subjects.
pub fn fleiss_kappa_ci(
    counts: &[Vec<u32>],
    options: &BootstrapOptions,
) -> Result<(FleissKappa, Estimate)> {
    let point = fleiss_kappa(counts)?;
    let clusters = Clusters::singletons(counts.len());
    let est = bootstrap_ci(point.kappa, &clusters, options, |s| {
        let rows: Vec<Vec<u32>> = s.indices.iter().map(|&i| counts[i].clone()).collect();
        fleiss_kappa(&rows).ok().map(|f| f.kappa)
    })?;
    Ok((point, est))
}

/// One intraclass correlation coefficient with its F test and interval.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IccRow {
    /// Shrout–Fleiss name: `ICC(1,1)`, `ICC(2,1)`, `ICC(3,1)`, `ICC(1,k)`, `ICC(2,k)`, `ICC(3,k)`.
    pub form: String,
    /// McGraw–Wong name (pingouin's `Type`): `ICC(1,1)`, `ICC(A,1)`, `ICC(C,1)`, … .
    pub mcgraw_wong: String,
    /// What it measures.
    pub description: String,
    /// The coefficient.
    pub icc: f64,
    /// F statistic.
    pub f: f64,
    /// Numerator degrees of freedom.
    pub df1: f64,
    /// Denominator degrees of freedom.
    pub df2: f64,
    /// p-value of the F test of ICC = 0.
    pub p_value: f64,
    /// Lower confidence limit.
    pub lower: f64,
    /// Upper confidence limit.
    pub upper: f64,
}

/// The six ICC forms from one two-way ANOVA.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Icc {
    /// Targets (rated items) used.
    pub targets: usize,
    /// Raters.
    pub raters: usize,
    /// Targets left out because a rating was missing.
    pub targets_dropped: usize,
    /// Between-targets mean square.
    pub ms_rows: f64,
    /// Between-raters mean square.
    pub ms_columns: f64,
    /// Residual mean square.
    pub ms_error: f64,
    /// Within-targets mean square.
    pub ms_within: f64,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// ICC(1,1), ICC(2,1), ICC(3,1), ICC(1,k), ICC(2,k), ICC(3,k).
    pub rows: Vec<IccRow>,
}

/// Intraclass correlations of a targets × raters matrix (`ratings[t][r]`; NaN = missing).
pub fn icc(ratings: &[Vec<f64>], confidence: f64) -> Result<Icc> {
    check_confidence(confidence)?;
    let k = ratings.first().map_or(0, Vec::len);
    for row in ratings {
        check_len("ratings per target", row.len(), k)?;
    }
    let complete: Vec<&Vec<f64>> = ratings
        .iter()
        .filter(|r| r.iter().all(|v| v.is_finite()))
        .collect();
    let n = complete.len();
    if n < 2 || k < 2 {
        return Err(EvalError::Undefined {
            metric: "ICC",
            reason: format!(
                "needs at least two targets rated by every one of at least two raters ({n} complete targets, {k} raters)"
            ),
        });
    }
    let (nf, kf) = (n as f64, k as f64);
    let grand = complete.iter().flat_map(|r| r.iter()).sum::<f64>() / (nf * kf);
    let row_means: Vec<f64> = complete
        .iter()
        .map(|r| r.iter().sum::<f64>() / kf)
        .collect();
    let col_means: Vec<f64> = (0..k)
        .map(|j| complete.iter().map(|r| r[j]).sum::<f64>() / nf)
        .collect();
    let ss_rows = kf * row_means.iter().map(|m| (m - grand).powi(2)).sum::<f64>();
    let ss_cols = nf * col_means.iter().map(|m| (m - grand).powi(2)).sum::<f64>();
    let ss_total: f64 = complete
        .iter()
        .flat_map(|r| r.iter())
        .map(|v| (v - grand).powi(2))
        .sum();
    let ss_error = (ss_total - ss_rows - ss_cols).max(0.0);
    let (df_r, df_c, df_e) = (nf - 1.0, kf - 1.0, (nf - 1.0) * (kf - 1.0));
    let msr = ss_rows / df_r;
    let msc = ss_cols / df_c;
    let mse = ss_error / df_e;
    let msw = (ss_cols + ss_error) / (nf * (kf - 1.0));
    if msw <= 0.0 || mse <= 0.0 {
        return Err(EvalError::Undefined {
            metric: "ICC",
            reason: "the ratings have no within-target variation".into(),
        });
    }

    let icc1 = (msr - msw) / (msr + (kf - 1.0) * msw);
    let icc2 = (msr - mse) / (msr + (kf - 1.0) * mse + kf * (msc - mse) / nf);
    let icc3 = (msr - mse) / (msr + (kf - 1.0) * mse);
    let icc1k = (msr - msw) / msr;
    let icc2k = (msr - mse) / (msr + (msc - mse) / nf);
    let icc3k = (msr - mse) / msr;

    let q = 1.0 - (1.0 - confidence) / 2.0;
    let df_w = nf * (kf - 1.0);
    let f1 = msr / msw;
    let f3 = msr / mse;
    let f1l = f1 / dist::f_quantile(q, df_r, df_w);
    let f1u = f1 * dist::f_quantile(q, df_w, df_r);
    let f3l = f3 / dist::f_quantile(q, df_r, df_e);
    let f3u = f3 * dist::f_quantile(q, df_e, df_r);
    let single = |fl: f64| (fl - 1.0) / (fl + kf - 1.0);
    let fj = msc / mse;
    let vn = df_e * (kf * icc2 * fj + nf * (1.0 + (kf - 1.0) * icc2) - kf * icc2).powi(2);
    let vd = df_r * kf * kf * icc2 * icc2 * fj * fj
        + (nf * (1.0 + (kf - 1.0) * icc2) - kf * icc2).powi(2);
    let v = vn / vd;
    let f2u = dist::f_quantile(q, df_r, v);
    let f2l = dist::f_quantile(q, v, df_r);
    let l2 = nf * (msr - f2u * mse) / (f2u * (kf * msc + (kf * nf - kf - nf) * mse) + nf * msr);
    let u2 = nf * (f2l * msr - mse) / (kf * msc + (kf * nf - kf - nf) * mse + nf * f2l * msr);
    let avg = |x: f64| x * kf / (1.0 + x * (kf - 1.0));
    let p1 = dist::f_sf(f1, df_r, df_w);
    let p3 = dist::f_sf(f3, df_r, df_e);

    let row = |form: &str, mw: &str, desc: &str, icc, f, df2, p, lower, upper| IccRow {
        form: form.into(),
        mcgraw_wong: mw.into(),
        description: desc.into(),
        icc,
        f,
        df1: df_r,
        df2,
        p_value: p,
        lower,
        upper,
    };
    let rows = vec![
        row(
            "ICC(1,1)",
            "ICC(1,1)",
            "one-way random effects, absolute agreement, single rater",
            icc1,
            f1,
            df_w,
            p1,
            single(f1l),
            single(f1u),
        ),
        row(
            "ICC(2,1)",
            "ICC(A,1)",
            "two-way random effects, absolute agreement, single rater",
            icc2,
            f3,
            df_e,
            p3,
            l2,
            u2,
        ),
        row(
            "ICC(3,1)",
            "ICC(C,1)",
            "two-way mixed effects, consistency, single rater",
            icc3,
            f3,
            df_e,
            p3,
            single(f3l),
            single(f3u),
        ),
        row(
            "ICC(1,k)",
            "ICC(1,k)",
            "one-way random effects, absolute agreement, mean of k raters",
            icc1k,
            f1,
            df_w,
            p1,
            1.0 - 1.0 / f1l,
            1.0 - 1.0 / f1u,
        ),
        row(
            "ICC(2,k)",
            "ICC(A,k)",
            "two-way random effects, absolute agreement, mean of k raters",
            icc2k,
            f3,
            df_e,
            p3,
            avg(l2),
            avg(u2),
        ),
        row(
            "ICC(3,k)",
            "ICC(C,k)",
            "two-way mixed effects, consistency, mean of k raters",
            icc3k,
            f3,
            df_e,
            p3,
            1.0 - 1.0 / f3l,
            1.0 - 1.0 / f3u,
        ),
    ];
    Ok(Icc {
        targets: n,
        raters: k,
        targets_dropped: ratings.len() - n,
        ms_rows: msr,
        ms_columns: msc,
        ms_error: mse,
        ms_within: msw,
        confidence,
        rows,
    })
}

/// Bland–Altman agreement of two methods with intervals.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct BlandAltmanCi {
    /// Pairs.
    pub n: usize,
    /// Mean of `a − b`.
    pub bias: f64,
    /// Sample standard deviation of the differences.
    pub sd: f64,
    /// Interval of the bias.
    pub bias_lower: f64,
    /// Interval of the bias.
    pub bias_upper: f64,
    /// `bias − z·sd`.
    pub lower_limit: f64,
    /// Interval of the lower limit.
    pub lower_limit_ci: (f64, f64),
    /// `bias + z·sd`.
    pub upper_limit: f64,
    /// Interval of the upper limit.
    pub upper_limit_ci: (f64, f64),
    /// Multiplier of the limits (1.96 for 95 %).
    pub z: f64,
    /// Student t quantile used for the intervals.
    pub t: f64,
    /// Confidence level of limits and intervals.
    pub confidence: f64,
}

/// Bland–Altman bias and limits of agreement of `a − b`, each with its interval.
pub fn bland_altman(a: &[f64], b: &[f64], confidence: f64) -> Result<BlandAltmanCi> {
    check_confidence(confidence)?;
    let ba = compute_bland_altman(b, a, confidence)?;
    let n = a.len() as f64;
    let t = dist::t_quantile(1.0 - (1.0 - confidence) / 2.0, n - 1.0);
    let se_bias = ba.sd / n.sqrt();
    let se_limit = ba.sd * (1.0 / n + ba.z * ba.z / (2.0 * (n - 1.0))).sqrt();
    Ok(BlandAltmanCi {
        n: a.len(),
        bias: ba.bias,
        sd: ba.sd,
        bias_lower: ba.bias - t * se_bias,
        bias_upper: ba.bias + t * se_bias,
        lower_limit: ba.lower_limit,
        lower_limit_ci: (ba.lower_limit - t * se_limit, ba.lower_limit + t * se_limit),
        upper_limit: ba.upper_limit,
        upper_limit_ci: (ba.upper_limit - t * se_limit, ba.upper_limit + t * se_limit),
        z: ba.z,
        t,
        confidence,
    })
}

/// What a frame empty in both masks counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmptyFrames {
    /// Perfect agreement: Dice = IoU = 1.
    #[default]
    One,
    /// Left out of the per-frame mean.
    Skip,
}

/// Overlap counts of one frame.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct FrameOverlap {
    /// Frame index (0-based).
    pub frame: usize,
    /// Foreground pixels of mask A.
    pub a: u64,
    /// Foreground pixels of mask B.
    pub b: u64,
    /// Pixels foreground in both.
    pub intersection: u64,
    /// `2|A∩B| / (|A| + |B|)`; NaN when both are empty and empty frames are skipped.
    pub dice: f64,
    /// `|A∩B| / |A∪B|`.
    pub iou: f64,
}

/// Dice and IoU of two stacks of binary masks.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MaskAgreement {
    /// Per-frame overlaps.
    pub frames: Vec<FrameOverlap>,
    /// Frames in the per-frame means.
    pub frames_used: usize,
    /// Frames empty in both masks.
    pub frames_both_empty: usize,
    /// Mean per-frame Dice.
    pub mean_dice: f64,
    /// Mean per-frame IoU.
    pub mean_iou: f64,
    /// Dice of all pixels pooled.
    pub pooled_dice: f64,
    /// IoU of all pixels pooled.
    pub pooled_iou: f64,
}

/// Per-frame and aggregated Dice/IoU of masks `a` and `b` (frames of `frame_len` pixels each,
/// concatenated; non-zero = foreground).
pub fn mask_agreement(
    a: &[u8],
    b: &[u8],
    frame_len: usize,
    empty: EmptyFrames,
) -> Result<MaskAgreement> {
    check_len("mask B", b.len(), a.len())?;
    if frame_len == 0 || a.is_empty() || !a.len().is_multiple_of(frame_len) {
        return Err(EvalError::InvalidOption {
            option: "frame_len",
            reason: format!(
                "masks of {} pixels do not split into frames of {frame_len}",
                a.len()
            ),
        });
    }
    let mut frames = Vec::with_capacity(a.len() / frame_len);
    let (mut sa, mut sb, mut si) = (0u64, 0u64, 0u64);
    for (f, (fa, fb)) in a.chunks(frame_len).zip(b.chunks(frame_len)).enumerate() {
        let (mut na, mut nb, mut ni) = (0u64, 0u64, 0u64);
        for (&x, &y) in fa.iter().zip(fb) {
            let (x, y) = (x != 0, y != 0);
            na += u64::from(x);
            nb += u64::from(y);
            ni += u64::from(x && y);
        }
        sa += na;
        sb += nb;
        si += ni;
        let (dice, iou) = overlap(na, nb, ni, empty);
        frames.push(FrameOverlap {
            frame: f,
            a: na,
            b: nb,
            intersection: ni,
            dice,
            iou,
        });
    }
    let used: Vec<&FrameOverlap> = frames.iter().filter(|f| f.dice.is_finite()).collect();
    let mean = |g: fn(&FrameOverlap) -> f64| {
        if used.is_empty() {
            f64::NAN
        } else {
            used.iter().map(|f| g(f)).sum::<f64>() / used.len() as f64
        }
    };
    let (pooled_dice, pooled_iou) = overlap(sa, sb, si, empty);
    Ok(MaskAgreement {
        frames_used: used.len(),
        frames_both_empty: frames.iter().filter(|f| f.a == 0 && f.b == 0).count(),
        mean_dice: mean(|f| f.dice),
        mean_iou: mean(|f| f.iou),
        pooled_dice,
        pooled_iou,
        frames,
    })
}

fn overlap(a: u64, b: u64, i: u64, empty: EmptyFrames) -> (f64, f64) {
    if a + b == 0 {
        return match empty {
            EmptyFrames::One => (1.0, 1.0),
            EmptyFrames::Skip => (f64::NAN, f64::NAN),
        };
    }
    let dice = 2.0 * i as f64 / (a + b) as f64;
    let iou = i as f64 / (a + b - i) as f64;
    (dice, iou)
}

/// The metric by which the AI and each reader are compared with the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "metric")]
pub enum ReaderMetric {
    /// Share of items where the rating equals the reference.
    Accuracy,
    /// Cohen's kappa (unweighted) with the reference.
    Kappa,
    /// Share of reference-positive items rated positive (`positive` is the positive code).
    Sensitivity {
        /// Code of the positive category.
        positive: f64,
    },
    /// Share of reference-negative items rated negative.
    Specificity {
        /// Code of the positive category.
        positive: f64,
    },
    /// Mean absolute error (measurements).
    Mae,
    /// Root mean squared error (measurements).
    Rmse,
}

impl ReaderMetric {
    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::Kappa => "kappa",
            Self::Sensitivity { .. } => "sensitivity",
            Self::Specificity { .. } => "specificity",
            Self::Mae => "mae",
            Self::Rmse => "rmse",
        }
    }

    /// Whether larger values are better.
    pub fn higher_is_better(&self) -> bool {
        !matches!(self, Self::Mae | Self::Rmse)
    }

    /// The metric of `rated` against `reference` over `rows` (repeats allowed); `None` when
    /// undefined (no rows, one class only).
    pub fn compute(&self, reference: &[f64], rated: &[f64], rows: &[usize]) -> Option<f64> {
        if rows.is_empty() {
            return None;
        }
        let n = rows.len() as f64;
        match *self {
            Self::Accuracy => {
                Some(rows.iter().filter(|&&i| rated[i] == reference[i]).count() as f64 / n)
            }
            Self::Sensitivity { positive } | Self::Specificity { positive } => {
                let want_pos = matches!(self, Self::Sensitivity { .. });
                let (mut hit, mut total) = (0usize, 0usize);
                for &i in rows {
                    if (reference[i] == positive) == want_pos {
                        total += 1;
                        hit += usize::from((rated[i] == positive) == want_pos);
                    }
                }
                (total > 0).then(|| hit as f64 / total as f64)
            }
            Self::Kappa => {
                let mut codes: Vec<f64> = rows
                    .iter()
                    .flat_map(|&i| [reference[i], rated[i]])
                    .collect();
                codes.sort_by(f64::total_cmp);
                codes.dedup();
                let idx = |v: f64| codes.iter().position(|&c| c == v).unwrap_or(0);
                let k = codes.len();
                if k < 2 {
                    return None;
                }
                let mut table = vec![vec![0.0; k]; k];
                for &i in rows {
                    table[idx(reference[i])][idx(rated[i])] += 1.0;
                }
                cohen_kappa_from_table(&table, KappaWeights::None, 0.95)
                    .ok()
                    .map(|c| c.kappa)
            }
            Self::Mae => Some(
                rows.iter()
                    .map(|&i| (rated[i] - reference[i]).abs())
                    .sum::<f64>()
                    / n,
            ),
            Self::Rmse => Some(
                (rows
                    .iter()
                    .map(|&i| (rated[i] - reference[i]).powi(2))
                    .sum::<f64>()
                    / n)
                    .sqrt(),
            ),
        }
    }
}

/// The AI and one reader on the items both rated.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReaderComparison {
    /// Reader name.
    pub reader: String,
    /// Items with a reference, an AI rating and this reader's rating.
    pub n: usize,
    /// The reader's metric against the reference.
    pub reader_metric: Estimate,
    /// The AI's metric on the same items.
    pub ai_metric: Estimate,
    /// AI minus reader (paired bootstrap: both from the same resampled items).
    pub difference: Estimate,
}

/// The AI-versus-clinician comparison.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AiVsReaders {
    /// The metric.
    pub metric: ReaderMetric,
    /// Whether larger is better for this metric.
    pub higher_is_better: bool,
    /// Items with a reference and an AI rating.
    pub n: usize,
    /// The AI on all those items.
    pub ai_overall: Estimate,
    /// One row per reader.
    pub readers: Vec<ReaderComparison>,
}

/// Compares the AI and every reader with the reference. Values are numbers (category codes
/// for labels); NaN marks a missing rating. `patients` (one per item) makes the bootstrap
/// resample patients instead of items.
pub fn compare_ai_with_readers(
    reference: &[f64],
    ai: &[f64],
    readers: &[(String, Vec<f64>)],
    metric: ReaderMetric,
    patients: Option<&[String]>,
    options: &BootstrapOptions,
) -> Result<AiVsReaders> {
    let n = reference.len();
    check_len("AI predictions", ai.len(), n)?;
    for (_, r) in readers {
        check_len("reader ratings", r.len(), n)?;
    }
    if let Some(p) = patients {
        check_len("patients", p.len(), n)?;
    }
    let clusters_all = match patients {
        Some(p) => Clusters::from_ids(p),
        None => Clusters::singletons(n),
    };
    let ai_rows: Vec<usize> = (0..n)
        .filter(|&i| reference[i].is_finite() && ai[i].is_finite())
        .collect();
    let undefined = |what: &str| EvalError::Undefined {
        metric: "AI-versus-reader comparison",
        reason: format!("{} is undefined for {what}", metric.name()),
    };
    let ai_point = metric
        .compute(reference, ai, &ai_rows)
        .ok_or_else(|| undefined("the AI"))?;
    let clusters = clusters_all.restrict(&ai_rows);
    let ai_overall = bootstrap_ci(ai_point, &clusters, options, |s| {
        let rows: Vec<usize> = s.indices.iter().map(|&k| ai_rows[k]).collect();
        metric.compute(reference, ai, &rows)
    })?;
    let mut out = Vec::with_capacity(readers.len());
    for (name, rated) in readers {
        let rows: Vec<usize> = ai_rows
            .iter()
            .copied()
            .filter(|&i| rated[i].is_finite())
            .collect();
        let r_point = metric.compute(reference, rated, &rows).unwrap_or(f64::NAN);
        let a_point = metric.compute(reference, ai, &rows).unwrap_or(f64::NAN);
        let clusters = clusters_all.restrict(&rows);
        let est = bootstrap_ci_many(
            &[r_point, a_point, a_point - r_point],
            &clusters,
            options,
            |s| {
                let picked: Vec<usize> = s.indices.iter().map(|&k| rows[k]).collect();
                let r = metric.compute(reference, rated, &picked);
                let a = metric.compute(reference, ai, &picked);
                let d = match (a, r) {
                    (Some(a), Some(r)) => Some(a - r),
                    _ => None,
                };
                vec![r, a, d]
            },
        )?;
        out.push(ReaderComparison {
            reader: name.clone(),
            n: rows.len(),
            reader_metric: est[0],
            ai_metric: est[1],
            difference: est[2],
        });
    }
    Ok(AiVsReaders {
        metric,
        higher_is_better: metric.higher_is_better(),
        n: ai_rows.len(),
        ai_overall,
        readers: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleiss_matches_the_wikipedia_example() {
        // Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, κ = 0.210.
        let t: Vec<Vec<u32>> = [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
        .iter()
        .map(|r| r.to_vec())
        .collect();
        let f = fleiss_kappa(&t).unwrap();
        assert!(
            (f.kappa - 0.209_930_704_421_955_22).abs() < 1e-12,
            "{}",
            f.kappa
        );
        assert!((f.observed_agreement - 0.378).abs() < 5e-4);
        assert_eq!((f.subjects, f.min_raters, f.max_raters), (10, 14, 14));
        // A missing rating changes n for one subject only; the SE is then not given.
        let mut t2 = t.clone();
        t2[0][4] = 13;
        let g = fleiss_kappa(&t2).unwrap();
        assert!(g.se_null.is_nan() && (g.kappa - f.kappa).abs() < 0.02);
        let (_, est) = fleiss_kappa_ci(&t, &BootstrapOptions::default()).unwrap();
        assert!(est.lower < f.kappa && f.kappa < est.upper);
    }

    #[test]
    fn cohen_by_hand() {
        // 2×2: po = 0.7, pe = 0.5 → κ = 0.4.
        let k = cohen_kappa_from_table(
            &[vec![20.0, 5.0], vec![10.0, 15.0]],
            KappaWeights::None,
            0.95,
        )
        .unwrap();
        assert!((k.kappa - 0.4).abs() < 1e-15);
        assert!(k.lower < 0.4 && k.upper > 0.4 && k.se > 0.0);
        // With two categories every weighting is the same.
        let l = cohen_kappa(
            &[0, 1, 1, 0, 1],
            &[0, 1, 0, 0, 1],
            2,
            KappaWeights::Linear,
            0.95,
        )
        .unwrap();
        let q = cohen_kappa(
            &[0, 1, 1, 0, 1],
            &[0, 1, 0, 0, 1],
            2,
            KappaWeights::Quadratic,
            0.95,
        )
        .unwrap();
        assert!((l.kappa - q.kappa).abs() < 1e-15);
        assert!(cohen_kappa(&[0, 0], &[0, 0], 2, KappaWeights::None, 0.95).is_err());
    }

    #[test]
    fn masks_by_hand() {
        // Frame 0: A has 3, B has 2, overlap 2 → Dice 0.8, IoU 2/3. Frame 1: both empty.
        let a = [1, 1, 1, 0, 0, 0, 0, 0];
        let b = [1, 1, 0, 0, 0, 0, 0, 0];
        let m = mask_agreement(&a, &b, 4, EmptyFrames::One).unwrap();
        assert!((m.frames[0].dice - 0.8).abs() < 1e-15);
        assert!((m.frames[0].iou - 2.0 / 3.0).abs() < 1e-15);
        assert_eq!(m.frames[1].dice, 1.0);
        assert!((m.mean_dice - 0.9).abs() < 1e-15);
        assert!((m.pooled_dice - 0.8).abs() < 1e-15);
        let s = mask_agreement(&a, &b, 4, EmptyFrames::Skip).unwrap();
        assert_eq!((s.frames_used, s.frames_both_empty), (1, 1));
        assert!((s.mean_dice - 0.8).abs() < 1e-15);
        assert!(mask_agreement(&a, &b, 3, EmptyFrames::One).is_err());
    }

    #[test]
    fn bland_altman_intervals_by_hand() {
        let a = [1.5, 2.0, 2.0, 5.0];
        let b = [1.0, 2.0, 3.0, 4.0];
        let ba = bland_altman(&a, &b, 0.95).unwrap();
        assert!((ba.bias - 0.125).abs() < 1e-15);
        // t(0.975, 3) = 3.182446305284263
        let t = 3.182_446_305_283_708_6;
        assert!((ba.t - t).abs() < 1e-11);
        assert!((ba.bias_upper - (0.125 + t * ba.sd / 2.0)).abs() < 1e-10);
        let se = ba.sd * (0.25 + ba.z * ba.z / 6.0).sqrt();
        assert!((ba.upper_limit_ci.1 - (ba.upper_limit + t * se)).abs() < 1e-10);
    }

    #[test]
    fn ai_against_readers_is_paired_and_deterministic() {
        let reference = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let ai = [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
        let r1 = vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, f64::NAN];
        let readers = vec![("r1".to_string(), r1)];
        let opts = BootstrapOptions {
            replicates: 300,
            ..Default::default()
        };
        let c = compare_ai_with_readers(
            &reference,
            &ai,
            &readers,
            ReaderMetric::Accuracy,
            None,
            &opts,
        )
        .unwrap();
        assert_eq!(c.n, 10);
        assert!((c.ai_overall.value - 0.8).abs() < 1e-15);
        let r = &c.readers[0];
        assert_eq!(r.n, 9);
        // reader: 6/9 right; AI on the same nine items: 8/9.
        assert!((r.reader_metric.value - 6.0 / 9.0).abs() < 1e-15);
        assert!((r.ai_metric.value - 8.0 / 9.0).abs() < 1e-15);
        assert!((r.difference.value - 2.0 / 9.0).abs() < 1e-15);
        assert!(
            r.difference.lower <= r.difference.value && r.difference.value <= r.difference.upper
        );
        let again = compare_ai_with_readers(
            &reference,
            &ai,
            &readers,
            ReaderMetric::Accuracy,
            None,
            &opts,
        )
        .unwrap();
        assert_eq!(c, again);
    }
}
