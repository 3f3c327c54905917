//! Gradient attributions: saliency, input × gradient, Integrated Gradients and SmoothGrad.
//!
//! Conventions follow Captum so the numbers can be compared: saliency is `|∂y/∂x|`
//! (`Saliency(abs=True)`), Integrated Gradients integrates the gradient along the straight path
//! from the baseline with the same quadrature rules (`gausslegendre` by default, or the four
//! Riemann rules) and multiplies by `x − baseline`. Every method takes one clip and runs its
//! forward/backward passes over at most `internal_batch_size` clips at a time, so memory is
//! bounded by the batch, not by the number of steps or samples.

use bedside_core::rng::Rng;
use bedside_ml::data::clips::VideoArray;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ExplainError;
use crate::model::{Explainee, Target};

/// Numerical integration rule of Integrated Gradients (Captum's `method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Quadrature {
    /// Gauss–Legendre nodes and weights on [0, 1] (Captum's default `gausslegendre`).
    #[default]
    GaussLegendre,
    /// `riemann_left`.
    RiemannLeft,
    /// `riemann_right`.
    RiemannRight,
    /// `riemann_middle`.
    RiemannMiddle,
    /// `riemann_trapezoid`.
    RiemannTrapezoid,
}

impl Quadrature {
    /// Parse Captum's name (`gausslegendre`, `riemann_left`, …).
    pub fn parse(name: &str) -> Result<Self, ExplainError> {
        Ok(match name {
            "gausslegendre" | "gauss_legendre" => Self::GaussLegendre,
            "riemann_left" => Self::RiemannLeft,
            "riemann_right" => Self::RiemannRight,
            "riemann_middle" => Self::RiemannMiddle,
            "riemann_trapezoid" => Self::RiemannTrapezoid,
            other => {
                return Err(ExplainError::invalid(format!(
                    "unknown integration rule `{other}` (gausslegendre, riemann_left, riemann_right, riemann_middle, riemann_trapezoid)"
                )));
            }
        })
    }

    /// Points `α ∈ [0, 1]` and weights (summing to 1) of an `n`-point rule.
    pub fn nodes(self, n: usize) -> Result<(Vec<f64>, Vec<f64>), ExplainError> {
        let min = if self == Self::GaussLegendre { 1 } else { 2 };
        if n < min {
            return Err(ExplainError::invalid(format!(
                "Integrated Gradients needs at least {min} steps with this rule, got {n}"
            )));
        }
        let nf = n as f64;
        let uniform = vec![1.0 / nf; n];
        Ok(match self {
            Self::GaussLegendre => {
                let (x, w) = gauss_legendre(n);
                (
                    x.iter().map(|x| 0.5 * (1.0 + x)).collect(),
                    w.iter().map(|w| 0.5 * w).collect(),
                )
            }
            Self::RiemannLeft => ((0..n).map(|i| i as f64 / nf).collect(), uniform),
            Self::RiemannRight => ((1..=n).map(|i| i as f64 / nf).collect(), uniform),
            Self::RiemannMiddle => ((0..n).map(|i| (i as f64 + 0.5) / nf).collect(), uniform),
            Self::RiemannTrapezoid => {
                let mut w = uniform;
                w[0] /= 2.0;
                w[n - 1] /= 2.0;
                ((0..n).map(|i| i as f64 / (nf - 1.0)).collect(), w)
            }
        })
    }
}

/// Gauss–Legendre nodes (ascending, on [−1, 1]) and weights, by Newton's method on the
/// Legendre polynomial from Chebyshev starting points (as `numpy.polynomial.legendre.leggauss`
/// gives them, to rounding).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut nodes = vec![0.0; n];
    let mut weights = vec![0.0; n];
    for i in 0..n {
        let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        let mut derivative = 1.0;
        for _ in 0..100 {
            // P_n(x) and P_{n-1}(x) by the three-term recurrence.
            let (mut p0, mut p1) = (1.0, x);
            for k in 2..=n {
                let k = k as f64;
                let p2 = ((2.0 * k - 1.0) * x * p1 - (k - 1.0) * p0) / k;
                p0 = p1;
                p1 = p2;
            }
            let (pn, pn1) = (p1, p0);
            derivative = n as f64 * (x * pn - pn1) / (x * x - 1.0);
            let step = pn / derivative;
            x -= step;
            if step.abs() < 1e-16 {
                break;
            }
        }
        nodes[n - 1 - i] = x;
        weights[n - 1 - i] = 2.0 / ((1.0 - x * x) * derivative * derivative);
    }
    (nodes, weights)
}

/// The reference input of Integrated Gradients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Baseline {
    /// Zeros in model-input units (after normalisation: the training mean intensity).
    #[default]
    Zeros,
    /// A constant in model-input units.
    Constant {
        /// The value.
        value: f32,
    },
    /// The clip blurred frame by frame with a Gaussian of `sigma` pixels (keeps the timing,
    /// removes the detail).
    Blurred {
        /// Standard deviation in pixels.
        sigma: f32,
    },
    /// Each channel's mean over the clip.
    Mean,
}

impl Baseline {
    /// The baseline clip for `clip`.
    pub fn make(&self, clip: &VideoArray) -> VideoArray {
        let mut out = clip.clone();
        match *self {
            Baseline::Zeros => out.data.iter_mut().for_each(|v| *v = 0.0),
            Baseline::Constant { value } => out.data.iter_mut().for_each(|v| *v = value),
            Baseline::Mean => {
                let per_channel = clip.frames * clip.height * clip.width;
                for chunk in out.data.chunks_exact_mut(per_channel.max(1)) {
                    let mean = chunk.iter().map(|&v| f64::from(v)).sum::<f64>()
                        / per_channel.max(1) as f64;
                    chunk.iter_mut().for_each(|v| *v = mean as f32);
                }
            }
            Baseline::Blurred { sigma } => {
                let plane = clip.height * clip.width;
                for frame in out.data.chunks_exact_mut(plane.max(1)) {
                    gaussian_blur(frame, clip.height, clip.width, sigma);
                }
            }
        }
        out
    }
}

/// Separable Gaussian blur of one `height × width` plane, edges replicated.
pub fn gaussian_blur(plane: &mut [f32], height: usize, width: usize, sigma: f32) {
    if sigma <= 0.0 || plane.is_empty() {
        return;
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|d| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0.0f32; plane.len()];
    for y in 0..height {
        for x in 0..width {
            tmp[y * width + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, w)| w * plane[y * width + clamp(x as isize + k as isize - radius, width)])
                .sum();
        }
    }
    for y in 0..height {
        for x in 0..width {
            plane[y * width + x] = kernel
                .iter()
                .enumerate()
                .map(|(k, w)| w * tmp[clamp(y as isize + k as isize - radius, height) * width + x])
                .sum();
        }
    }
}

pub(crate) fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ExplainError> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ExplainError::Tensor {
            message: format!("{e:?}"),
        })
}

pub(crate) fn check_clip(clip: &VideoArray) -> Result<[usize; 4], ExplainError> {
    let shape = [clip.channels, clip.frames, clip.height, clip.width];
    if shape.contains(&0) || clip.data.len() != shape.iter().product::<usize>() {
        return Err(ExplainError::invalid(format!(
            "a clip of shape {shape:?} with {} values",
            clip.data.len()
        )));
    }
    Ok(shape)
}

fn check_batch(internal_batch_size: usize) -> Result<(), ExplainError> {
    if internal_batch_size == 0 {
        return Err(ExplainError::invalid(
            "the internal batch size must be at least 1",
        ));
    }
    Ok(())
}

/// Gradients of the target with respect to each clip of a batch, and the target values.
///
/// `data` holds `batch` clips of `shape` one after the other.
pub fn batch_gradients(
    model: &Explainee,
    target: &Target,
    data: Vec<f32>,
    batch: usize,
    shape: [usize; 4],
) -> Result<(Vec<f32>, Vec<f32>), ExplainError> {
    model.check_target(target)?;
    let [c, t, h, w] = shape;
    let device = model.device().clone().autodiff();
    let x =
        Tensor::<5>::from_data(TensorData::new(data, [batch, c, t, h, w]), &device).require_grad();
    let scores = target.score(model.outputs(x.clone()));
    let grads = scores.clone().sum().backward();
    let gradient = x.grad(&grads).ok_or_else(|| ExplainError::Tensor {
        message: "the input received no gradient".into(),
    })?;
    Ok((read_f32(gradient)?, read_f32(scores.inner())?))
}

/// Target values of each clip of a batch (no gradients).
pub fn batch_scores(
    model: &Explainee,
    target: &Target,
    data: Vec<f32>,
    batch: usize,
    shape: [usize; 4],
) -> Result<Vec<f32>, ExplainError> {
    model.check_target(target)?;
    let [c, t, h, w] = shape;
    let x = Tensor::<5>::from_data(TensorData::new(data, [batch, c, t, h, w]), model.device());
    read_f32(target.score(model.outputs(x)))
}

fn like(clip: &VideoArray, data: Vec<f32>) -> VideoArray {
    VideoArray {
        channels: clip.channels,
        frames: clip.frames,
        height: clip.height,
        width: clip.width,
        data,
    }
}

/// `∂y/∂x` (signed), and the target value.
pub fn gradient(
    model: &Explainee,
    target: &Target,
    clip: &VideoArray,
) -> Result<(VideoArray, f32), ExplainError> {
    let shape = check_clip(clip)?;
    let (g, s) = batch_gradients(model, target, clip.data.clone(), 1, shape)?;
    Ok((like(clip, g), s.first().copied().unwrap_or(f32::NAN)))
}

/// Saliency `|∂y/∂x|` (Captum `Saliency(abs=True)`; `abs = false` keeps the sign).
pub fn saliency(
    model: &Explainee,
    target: &Target,
    clip: &VideoArray,
    abs: bool,
) -> Result<VideoArray, ExplainError> {
    let (mut g, _) = gradient(model, target, clip)?;
    if abs {
        g.data.iter_mut().for_each(|v| *v = v.abs());
    }
    Ok(g)
}

/// Input × gradient (Captum `InputXGradient`).
pub fn input_x_gradient(
    model: &Explainee,
    target: &Target,
    clip: &VideoArray,
) -> Result<VideoArray, ExplainError> {
    let (mut g, _) = gradient(model, target, clip)?;
    g.data
        .iter_mut()
        .zip(&clip.data)
        .for_each(|(g, x)| *g *= *x);
    Ok(g)
}

/// Settings of Integrated Gradients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IgOptions {
    /// Number of points on the path (Captum `n_steps`, default 50).
    pub steps: usize,
    /// Integration rule.
    pub quadrature: Quadrature,
    /// Reference input.
    pub baseline: Baseline,
    /// Clips per forward/backward pass (Captum `internal_batch_size`).
    pub internal_batch_size: usize,
}

impl Default for IgOptions {
    fn default() -> Self {
        Self {
            steps: 50,
            quadrature: Quadrature::GaussLegendre,
            baseline: Baseline::Zeros,
            internal_batch_size: 8,
        }
    }
}

/// What Integrated Gradients returns beside the map.
#[derive(Debug, Clone, PartialEq)]
pub struct IgResult {
    /// Attribution, the shape of the clip.
    pub attribution: VideoArray,
    /// Target value at the clip.
    pub score: f32,
    /// Target value at the baseline.
    pub baseline_score: f32,
    /// Completeness error: `Σ attribution − (score − baseline_score)` (Captum's convergence
    /// delta); small when the number of steps suffices.
    pub delta: f64,
}

/// Integrated Gradients (Sundararajan et al. 2017) as Captum computes it:
/// `(x − x′) · Σₖ wₖ ∂y/∂x (x′ + αₖ (x − x′))`.
pub fn integrated_gradients(
    model: &Explainee,
    target: &Target,
    clip: &VideoArray,
    options: &IgOptions,
) -> Result<IgResult, ExplainError> {
    let shape = check_clip(clip)?;
    check_batch(options.internal_batch_size)?;
    let (alphas, weights) = options.quadrature.nodes(options.steps)?;
    let baseline = options.baseline.make(clip);
    let diff: Vec<f32> = clip
        .data
        .iter()
        .zip(&baseline.data)
        .map(|(x, b)| x - b)
        .collect();
    let n = clip.data.len();
    let mut total = vec![0.0f32; n];
    let steps: Vec<(f64, f64)> = alphas.into_iter().zip(weights).collect();
    for chunk in steps.chunks(options.internal_batch_size) {
        let mut data = Vec::with_capacity(chunk.len() * n);
        for &(alpha, _) in chunk {
            let a = alpha as f32;
            data.extend(baseline.data.iter().zip(&diff).map(|(b, d)| b + a * d));
        }
        let (grads, _) = batch_gradients(model, target, data, chunk.len(), shape)?;
        for (k, &(_, weight)) in chunk.iter().enumerate() {
            let w = weight as f32;
            total
                .iter_mut()
                .zip(&grads[k * n..(k + 1) * n])
                .for_each(|(t, g)| *t += w * g);
        }
    }
    total.iter_mut().zip(&diff).for_each(|(t, d)| *t *= d);
    let mut both = clip.data.clone();
    both.extend_from_slice(&baseline.data);
    let ends = batch_scores(model, target, both, 2, shape)?;
    let (score, baseline_score) = (ends[0], ends[1]);
    let sum: f64 = total.iter().map(|&v| f64::from(v)).sum();
    Ok(IgResult {
        attribution: like(clip, total),
        score,
        baseline_score,
        delta: sum - f64::from(score - baseline_score),
    })
}

/// Settings of SmoothGrad.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmoothGradOptions {
    /// Noisy copies averaged (default 16).
    pub samples: usize,
    /// Noise standard deviation as a fraction of the clip's value range (Smilkov et al.
    /// suggest 0.1–0.2; default 0.15).
    pub noise_level: f64,
    /// Seed of the noise (forked per sample, so results do not depend on the batch size).
    pub seed: u64,
    /// Clips per forward/backward pass.
    pub internal_batch_size: usize,
}

impl Default for SmoothGradOptions {
    fn default() -> Self {
        Self {
            samples: 16,
            noise_level: 0.15,
            seed: 0,
            internal_batch_size: 8,
        }
    }
}

/// SmoothGrad (Smilkov et al. 2017): the mean of `|∂y/∂x|` over noisy copies of the clip
/// (Captum's `NoiseTunnel(Saliency)` with `nt_type="smoothgrad"`).
pub fn smoothgrad(
    model: &Explainee,
    target: &Target,
    clip: &VideoArray,
    options: &SmoothGradOptions,
) -> Result<VideoArray, ExplainError> {
    let shape = check_clip(clip)?;
    check_batch(options.internal_batch_size)?;
    if options.samples == 0 || options.noise_level.is_nan() || options.noise_level < 0.0 {
        return Err(ExplainError::invalid(format!(
            "SmoothGrad needs samples ≥ 1 and a noise level ≥ 0 (got {}, {})",
            options.samples, options.noise_level
        )));
    }
    let (lo, hi) = clip
        .data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let sd = options.noise_level * f64::from(hi - lo);
    let n = clip.data.len();
    let mut total = vec![0.0f32; n];
    let root = Rng::seed_from(options.seed);
    let samples: Vec<usize> = (0..options.samples).collect();
    for chunk in samples.chunks(options.internal_batch_size) {
        let mut data = Vec::with_capacity(chunk.len() * n);
        for &s in chunk {
            let mut rng = root.fork(s as u64);
            data.extend(
                clip.data
                    .iter()
                    .map(|&x| x + rng.normal_with(0.0, sd) as f32),
            );
        }
        let (grads, _) = batch_gradients(model, target, data, chunk.len(), shape)?;
        for k in 0..chunk.len() {
            total
                .iter_mut()
                .zip(&grads[k * n..(k + 1) * n])
                .for_each(|(t, g)| *t += g.abs());
        }
    }
    let scale = 1.0 / options.samples as f32;
    total.iter_mut().for_each(|v| *v *= scale);
    Ok(like(clip, total))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn gauss_legendre_matches_numpy() {
        // numpy.polynomial.legendre.leggauss(4)
        let (x, w) = gauss_legendre(4);
        let want_x = [
            -0.861_136_311_594_052_6,
            -0.339_981_043_584_856_3,
            0.339_981_043_584_856_3,
            0.861_136_311_594_052_6,
        ];
        let want_w = [
            0.347_854_845_137_453_9,
            0.652_145_154_862_546_1,
            0.652_145_154_862_546_1,
            0.347_854_845_137_453_9,
        ];
        for i in 0..4 {
            assert!((x[i] - want_x[i]).abs() < 1e-14, "{x:?}");
            assert!((w[i] - want_w[i]).abs() < 1e-14, "{w:?}");
        }
        for n in [1, 2, 7, 32, 64] {
            let (a, w) = Quadrature::GaussLegendre.nodes(n).unwrap();
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            // Exact for polynomials of degree 2n−1: ∫₀¹ α^(2n−1) = 1/(2n).
            let p = (2 * n - 1) as i32;
            let integral: f64 = a.iter().zip(&w).map(|(a, w)| w * a.powi(p)).sum();
            assert!((integral - 1.0 / (2 * n) as f64).abs() < 1e-12, "n={n}");
        }
    }

    #[test]
    fn riemann_rules_match_captum() {
        let (a, w) = Quadrature::RiemannTrapezoid.nodes(5).unwrap();
        assert_eq!(a, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(w, vec![0.1, 0.2, 0.2, 0.2, 0.1]);
        let (a, _) = Quadrature::RiemannMiddle.nodes(4).unwrap();
        assert_eq!(a, vec![0.125, 0.375, 0.625, 0.875]);
        assert!(Quadrature::RiemannLeft.nodes(1).is_err());
    }

    #[test]
    fn blur_keeps_constants_and_smooths_an_impulse() {
        let mut flat = vec![2.0f32; 36];
        gaussian_blur(&mut flat, 6, 6, 1.5);
        assert!(flat.iter().all(|v| (v - 2.0).abs() < 1e-5));
        let mut impulse = vec![0.0f32; 81];
        impulse[40] = 1.0;
        gaussian_blur(&mut impulse, 9, 9, 1.0);
        assert!(impulse[40] < 0.2 && impulse[41] > 0.05);
        assert!((impulse.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
}
