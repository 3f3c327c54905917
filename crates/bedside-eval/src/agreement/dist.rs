//! The F and Student t distributions the agreement intervals need (CDFs through the regularised
//! incomplete beta function, quantiles by bisection on the CDF).

use crate::stats::ln_gamma;

/// Continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..100_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// Regularised incomplete beta `(I_x(a, b), 1 − I_x(a, b))`, with `y = 1 − x` passed in so
/// that callers who know `y` more precisely than `1 − x` keep that precision.
fn beta_inc(a: f64, b: f64, x: f64, y: f64) -> (f64, f64) {
    if x <= 0.0 {
        return (0.0, 1.0);
    }
    if y <= 0.0 {
        return (1.0, 0.0);
    }
    let ln_front = a * x.ln() + b * y.ln() - (ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b));
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        let p = front * beta_cf(a, b, x) / a;
        (p, 1.0 - p)
    } else {
        let q = front * beta_cf(b, a, y) / b;
        (1.0 - q, q)
    }
}

/// CDF and survival function of the F distribution with `d1`, `d2` degrees of freedom.
pub(crate) fn f_cdf_sf(f: f64, d1: f64, d2: f64) -> (f64, f64) {
    if f <= 0.0 {
        return (0.0, 1.0);
    }
    let denom = d1 * f + d2;
    beta_inc(d1 / 2.0, d2 / 2.0, d1 * f / denom, d2 / denom)
}

/// Survival function of the F distribution (the p-value of an F test).
pub(crate) fn f_sf(f: f64, d1: f64, d2: f64) -> f64 {
    f_cdf_sf(f, d1, d2).1
}

/// Survival function of Student's t distribution with `df` degrees of freedom.
fn t_sf(t: f64, df: f64) -> f64 {
    let t2 = t * t;
    let (tail2, _) = beta_inc(df / 2.0, 0.5, df / (df + t2), t2 / (df + t2));
    if t >= 0.0 {
        tail2 / 2.0
    } else {
        1.0 - tail2 / 2.0
    }
}

/// Finds `x ≥ 0` with `upper(x) = target`, where `upper` decreases from 1 at 0 to 0 at ∞
/// (bisection until the bracket cannot shrink in floating point).
fn invert_upper_tail(target: f64, upper: impl Fn(f64) -> f64) -> f64 {
    let mut hi = 1.0;
    let mut guard = 0;
    while upper(hi) > target && guard < 2000 {
        hi *= 2.0;
        guard += 1;
    }
    let mut lo = 0.0;
    for _ in 0..2000 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if upper(mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Quantile of the F distribution at probability `p` (0 < p < 1).
pub(crate) fn f_quantile(p: f64, d1: f64, d2: f64) -> f64 {
    if !(0.0 < p && p < 1.0 && d1 > 0.0 && d2 > 0.0) {
        return f64::NAN;
    }
    // Bisect on whichever tail is smaller: it is computed without cancellation.
    if p > 0.5 {
        invert_upper_tail(1.0 - p, |f| f_cdf_sf(f, d1, d2).1)
    } else {
        // X ~ F(d1, d2) ⇔ 1/X ~ F(d2, d1), so the lower quantile is the reciprocal of an
        // upper one.
        invert_upper_tail(p, |y| f_cdf_sf(y, d2, d1).1).recip()
    }
}

/// Quantile of Student's t distribution at probability `p` (0 < p < 1).
pub(crate) fn t_quantile(p: f64, df: f64) -> f64 {
    if !(0.0 < p && p < 1.0) || df <= 0.0 {
        return f64::NAN;
    }
    if p == 0.5 {
        return 0.0;
    }
    let upper = if p > 0.5 { 1.0 - p } else { p };
    let t = invert_upper_tail(upper, |t| t_sf(t, df));
    if p > 0.5 { t } else { -t }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_scipy() {
        // scipy.stats.f.ppf / t.ppf / f.sf (SciPy 1.17)
        let cases = [
            (0.975, 7.0, 24.0, 2.873_808_188_037_888_3),
            (0.975, 24.0, 7.0, 4.414_999_065_085_488),
            (0.975, 1.0, 1.0, 647.789_011_477_844_2),
            (0.025, 5.0, 10.0, 0.151_076_701_029_982),
        ];
        for (p, d1, d2, want) in cases {
            let got = f_quantile(p, d1, d2);
            assert!(
                (got - want).abs() < 1e-9 * want,
                "{p} {d1} {d2}: {got} vs {want}"
            );
        }
        assert!((t_quantile(0.975, 9.0) - 2.262_157_162_798_205).abs() < 1e-12);
        assert!((t_quantile(0.025, 3.0) + 3.182_446_305_283_708_6).abs() < 1e-11);
        assert!((f_sf(11.68, 7.0, 24.0) - 2.181_393_287_127_943e-6).abs() < 1e-15);
    }
}
