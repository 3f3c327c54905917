//! Sanity checks of attribution methods (Adebayo et al. 2018, "Sanity Checks for Saliency
//! Maps"): a method whose maps barely change when the model's weights are randomised, or when
//! the model was trained on permuted labels, explains the input, not the model.
//!
//! - Cascading model-parameter randomisation: the head, then `layer4` … `layer1`, then the stem
//!   are replaced one after the other (cumulatively) by freshly initialised ones, and each
//!   method's map of the randomised model is compared with the original's.
//! - Data randomisation: maps of the model are compared with those of the same architecture
//!   trained on permuted labels (a second bundle).
//!
//! Similarity is the Spearman rank correlation of the absolute attributions over every
//! element of the clip map and the SSIM of the absolute maps scaled to [0, 1] by their maximum
//! (Gaussian window σ = 1.5 truncated at 3.5σ, K₁ = 0.01, K₂ = 0.03, frame by frame, borders
//! excluded, as `skimage.metrics.structural_similarity(gaussian_weights=True,
//! use_sample_covariance=False, data_range=1)`), averaged over the frames.
//! A method passes a test when both similarities, averaged over the clips checked, are below
//! the threshold (default 0.5).

use bedside_ml::data::clips::VideoArray;
use serde::{Deserialize, Serialize};

/// Average ranks (ties share the mean of their positions), 1-based.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Pearson correlation (`None` when either side is constant or the lengths differ).
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Spearman rank correlation with average ranks for ties (scipy's `spearmanr`).
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    pearson(&ranks(a), &ranks(b))
}

fn gaussian_window(sigma: f64, truncate: f64) -> Vec<f64> {
    let radius = (truncate * sigma + 0.5) as isize;
    let w: Vec<f64> = (-radius..=radius)
        .map(|d| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    w.iter().map(|v| v / total).collect()
}

/// Separable filter with the window, keeping only positions where it fits ("valid").
fn filter_valid(plane: &[f64], h: usize, w: usize, k: &[f64]) -> (usize, usize, Vec<f64>) {
    let n = k.len();
    let (oh, ow) = (h + 1 - n, w + 1 - n);
    let mut tmp = vec![0.0; h * ow];
    for y in 0..h {
        for x in 0..ow {
            tmp[y * ow + x] = k
                .iter()
                .enumerate()
                .map(|(i, kv)| kv * plane[y * w + x + i])
                .sum();
        }
    }
    let mut out = vec![0.0; oh * ow];
    for y in 0..oh {
        for x in 0..ow {
            out[y * ow + x] = k
                .iter()
                .enumerate()
                .map(|(i, kv)| kv * tmp[(y + i) * ow + x])
                .sum();
        }
    }
    (oh, ow, out)
}

/// Mean SSIM of two `h × w` planes with values in [0, 1] (see the module notes); `None` when
/// the frame is smaller than the window.
pub fn ssim_plane(a: &[f64], b: &[f64], h: usize, w: usize) -> Option<f64> {
    let k = gaussian_window(1.5, 3.5);
    if h < k.len() || w < k.len() || a.len() != h * w || b.len() != h * w {
        return None;
    }
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let prod = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).collect::<Vec<f64>>();
    let (_, _, ma) = filter_valid(a, h, w, &k);
    let (_, _, mb) = filter_valid(b, h, w, &k);
    let (_, _, maa) = filter_valid(&prod(a, a), h, w, &k);
    let (_, _, mbb) = filter_valid(&prod(b, b), h, w, &k);
    let (_, _, mab) = filter_valid(&prod(a, b), h, w, &k);
    let n = ma.len();
    let mut total = 0.0;
    for i in 0..n {
        let (ua, ub) = (ma[i], mb[i]);
        let (va, vb, cov) = (maa[i] - ua * ua, mbb[i] - ub * ub, mab[i] - ua * ub);
        total +=
            ((2.0 * ua * ub + c1) * (2.0 * cov + c2)) / ((ua * ua + ub * ub + c1) * (va + vb + c2));
    }
    Some(total / n as f64)
}

fn abs_scaled(map: &VideoArray) -> Vec<f64> {
    let max = map.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    map.data
        .iter()
        .map(|v| {
            if max > 0.0 {
                f64::from(v.abs() / max)
            } else {
                0.0
            }
        })
        .collect()
}

/// Similarity of two maps of the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    /// Spearman rank correlation of `|a|` and `|b|` (`None`: a constant map).
    pub spearman: Option<f64>,
    /// Mean SSIM of `|a| / max|a|` and `|b| / max|b|` over the frames (`None`: frames smaller
    /// than the window).
    pub ssim: Option<f64>,
}

/// Compare two maps (channels summed or not; every plane is compared).
pub fn similarity(a: &VideoArray, b: &VideoArray) -> Similarity {
    let (x, y) = (abs_scaled(a), abs_scaled(b));
    let spearman = if x.len() == y.len() {
        spearman(&x, &y)
    } else {
        None
    };
    let plane = a.height * a.width;
    let ssim = if x.len() == y.len() && plane > 0 {
        let values: Vec<f64> = x
            .chunks_exact(plane)
            .zip(y.chunks_exact(plane))
            .filter_map(|(p, q)| ssim_plane(p, q, a.height, a.width))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
    } else {
        None
    };
    Similarity { spearman, ssim }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn spearman_matches_scipy() {
        // scipy.stats.spearmanr([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]).statistic
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap();
        assert!((r - 0.820_782_681_668_123_3).abs() < 1e-12, "{r}");
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_none());
        let r = spearman(&[1.0, 2.0, 3.0], &[30.0, 20.0, 10.0]).unwrap();
        assert!((r + 1.0).abs() < 1e-12);
    }

    /// The SSIM formula evaluated directly with a 2-D window at every valid position.
    fn ssim_direct(a: &[f64], b: &[f64], h: usize, w: usize) -> f64 {
        let k = gaussian_window(1.5, 3.5);
        let n = k.len();
        let (c1, c2) = (1e-4, 9e-4);
        let mut total = 0.0;
        let mut count = 0.0;
        for y in 0..=h - n {
            for x in 0..=w - n {
                let (mut ua, mut ub, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for i in 0..n {
                    for j in 0..n {
                        let wt = k[i] * k[j];
                        let (p, q) = (a[(y + i) * w + x + j], b[(y + i) * w + x + j]);
                        ua += wt * p;
                        ub += wt * q;
                        saa += wt * p * p;
                        sbb += wt * q * q;
                        sab += wt * p * q;
                    }
                }
                let (va, vb, cov) = (saa - ua * ua, sbb - ub * ub, sab - ua * ub);
                total += ((2.0 * ua * ub + c1) * (2.0 * cov + c2))
                    / ((ua * ua + ub * ub + c1) * (va + vb + c2));
                count += 1.0;
            }
        }
        total / count
    }

    #[test]
    fn ssim_matches_its_definition() {
        let (h, w) = (16, 14);
        let a: Vec<f64> = (0..h * w)
            .map(|i| ((i as f64 * 0.37).sin() * 0.5 + 0.5).clamp(0.0, 1.0))
            .collect();
        let b: Vec<f64> = (0..h * w)
            .map(|i| ((i as f64 * 0.11).cos() * 0.5 + 0.5).clamp(0.0, 1.0))
            .collect();
        let got = ssim_plane(&a, &b, h, w).unwrap();
        assert!((got - ssim_direct(&a, &b, h, w)).abs() < 1e-12);
        assert!((ssim_plane(&a, &a, h, w).unwrap() - 1.0).abs() < 1e-12);
        // Two constant images: (2 c d + C1) / (c² + d² + C1) in closed form.
        let (c, d) = (0.2, 0.7);
        let got = ssim_plane(&vec![c; h * w], &vec![d; h * w], h, w).unwrap();
        let want = (2.0 * c * d + 1e-4) / (c * c + d * d + 1e-4);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // The window is 11 wide (skimage: truncate 3.5, sigma 1.5).
        assert_eq!(gaussian_window(1.5, 3.5).len(), 11);
        assert!(ssim_plane(&a[..100], &b[..100], 10, 10).is_none());
    }
}
