//! Operations burn 0.22 lacks, composed from differentiable primitives so gradients flow
//! through them on every backend.
//!
//! `lgamma` and `digamma` shift the argument by eight with the recurrences
//! `lnΓ(x) = lnΓ(x + 8) − Σₖ ln(x + k)` and `ψ(x) = ψ(x + 8) − Σₖ 1/(x + k)` and evaluate the
//! asymptotic (Stirling) series at `x + 8 ≥ 8`, where its truncation error is below 1e-12:
//! the result is as accurate as the tensor's float type (use `f64` tensors where 1e-6 on
//! sums of many terms matters). Valid for `x > 0` (Dirichlet and Gamma parameters).

use burn::tensor::Tensor;

const SHIFT: usize = 8;

/// `ln Γ(x)` element-wise for `x > 0`, differentiable (its derivative is `digamma`).
pub fn lgamma<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    // ln Π (x + k) as one logarithm of the product (fewer roundings than a sum of logs).
    let mut prod = x.clone();
    for k in 1..SHIFT {
        prod = prod * x.clone().add_scalar(k as f64);
    }
    let log_prod = prod.log();
    let z = x.add_scalar(SHIFT as f64);
    let inv = z.clone().recip();
    let inv2 = inv.clone().square();
    // 1/(12z) − 1/(360z³) + 1/(1260z⁵) − 1/(1680z⁷) + 1/(1188z⁹)
    let series = inv.clone()
        * inv2
            .clone()
            .mul(
                inv2.clone()
                    .mul(
                        inv2.clone()
                            .mul(
                                inv2.clone()
                                    .mul_scalar(1.0 / 1188.0)
                                    .add_scalar(-1.0 / 1680.0),
                            )
                            .add_scalar(1.0 / 1260.0),
                    )
                    .add_scalar(-1.0 / 360.0),
            )
            .add_scalar(1.0 / 12.0);
    let half_ln_two_pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let stirling = z.clone().add_scalar(-0.5) * z.clone().log() - z + series;
    stirling.add_scalar(half_ln_two_pi) - log_prod
}

/// The digamma function `ψ(x) = d/dx ln Γ(x)` element-wise for `x > 0`, differentiable.
pub fn digamma<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let mut harmonic = x.clone().recip();
    for k in 1..SHIFT {
        harmonic = harmonic + x.clone().add_scalar(k as f64).recip();
    }
    let z = x.add_scalar(SHIFT as f64);
    let inv = z.clone().recip();
    let inv2 = inv.clone().square();
    // ln z − 1/(2z) − 1/(12z²) + 1/(120z⁴) − 1/(252z⁶) + 1/(240z⁸) − 1/(132z¹⁰)
    // (next term 691/(32760 z¹²) < 1e-12 for z ≥ 8)
    let poly = inv2.clone().mul(
        inv2.clone()
            .mul(
                inv2.clone()
                    .mul(
                        inv2.clone()
                            .mul(
                                inv2.clone()
                                    .mul_scalar(-1.0 / 132.0)
                                    .add_scalar(1.0 / 240.0),
                            )
                            .add_scalar(-1.0 / 252.0),
                    )
                    .add_scalar(1.0 / 120.0),
            )
            .add_scalar(-1.0 / 12.0),
    );
    z.log() - inv.mul_scalar(0.5) + poly - harmonic
}

/// `log(cumsum(exp(x)))` along `dim`, stabilised by the (detached) maximum along `dim`.
///
/// Exact in real arithmetic; in floating point, entries far below the running maximum of a
/// long prefix lose relative precision as in any shifted log-sum-exp.
pub fn logcumsumexp<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let max = x.clone().detach().max_dim(dim);
    (x - max.clone()).exp().cumsum(dim).log() + max
}

/// `log(sum(exp(x)))` along `dim` (kept as size 1), stabilised by the detached maximum.
pub fn logsumexp<const D: usize>(x: Tensor<D>, dim: usize) -> Tensor<D> {
    let max = x.clone().detach().max_dim(dim);
    (x - max.clone()).exp().sum_dim(dim).log() + max
}

/// Options of [`max_pool3d`] and [`avg_pool3d`] (PyTorch's `MaxPool3d`/`AvgPool3d` without
/// dilation or ceil mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool3dOptions {
    /// Window `[frames, height, width]`.
    pub kernel: [usize; 3],
    /// Step `[frames, height, width]`.
    pub stride: [usize; 3],
    /// Padding on both sides `[frames, height, width]`; max pooling pads with −∞, average
    /// pooling with zeros that count in the mean (PyTorch's `count_include_pad=True`).
    pub padding: [usize; 3],
}

fn pad_dim(x: Tensor<5>, dim: usize, amount: usize, value: f64) -> Tensor<5> {
    if amount == 0 {
        return x;
    }
    let mut shape = x.dims();
    shape[dim] = amount;
    let fill = Tensor::<5>::full(shape, value, (&x.device(), x.dtype()));
    Tensor::cat(vec![fill.clone(), x, fill], dim)
}

/// Every window of the padded input as the last axis: `[b, c, t', h', w', kt·kh·kw]`.
fn windows(x: Tensor<5>, options: Pool3dOptions, fill: f64) -> Tensor<6> {
    let mut x = x;
    for d in 0..3 {
        x = pad_dim(x, d + 2, options.padding[d], fill);
    }
    let [k0, k1, k2] = options.kernel;
    let [s0, s1, s2] = options.stride;
    let x: Tensor<6> = x.unfold(2, k0, s0);
    let x: Tensor<7> = x.unfold(3, k1, s1);
    let x: Tensor<8> = x.unfold(4, k2, s2);
    let [b, c, t, h, w, _, _, _] = x.dims();
    x.reshape([b, c, t, h, w, k0 * k1 * k2])
}

/// 3D max pooling (burn 0.22 has none), differentiable.
///
/// # Shapes
/// - input: `[batch, channels, frames, height, width]`
/// - output: `[batch, channels, frames', height', width']`, `n' = (n + 2p − k) / s + 1`
pub fn max_pool3d(x: Tensor<5>, options: Pool3dOptions) -> Tensor<5> {
    let w = windows(x, options, f64::NEG_INFINITY);
    let [b, c, t, h, wd, _] = w.dims();
    w.max_dim(5).reshape([b, c, t, h, wd])
}

/// 3D average pooling (burn 0.22 has none), differentiable.
///
/// # Shapes
/// - input: `[batch, channels, frames, height, width]`
/// - output: `[batch, channels, frames', height', width']`, `n' = (n + 2p − k) / s + 1`
pub fn avg_pool3d(x: Tensor<5>, options: Pool3dOptions) -> Tensor<5> {
    let w = windows(x, options, 0.0);
    let [b, c, t, h, wd, _] = w.dims();
    w.mean_dim(5).reshape([b, c, t, h, wd])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Device, TensorData};

    fn f64_tensor(values: &[f64]) -> Tensor<1> {
        let device = Device::flex();
        Tensor::from_data(
            TensorData::new(values.to_vec(), [values.len()]),
            (&device, DType::F64),
        )
    }

    fn values(t: Tensor<1>) -> Vec<f64> {
        t.into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .unwrap_or_default()
    }

    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

    #[test]
    fn lgamma_matches_closed_forms() {
        // lnΓ(n) = ln((n−1)!), lnΓ(1/2) = ln √π, lnΓ(3/2) = ln(√π / 2).
        let xs = [1.0, 2.0, 5.0, 11.0, 0.5, 1.5, 30.0];
        let sqrt_pi = std::f64::consts::PI.sqrt();
        let fact = |n: u32| (1..n).map(f64::from).product::<f64>();
        let expected = [
            0.0,
            0.0,
            fact(5).ln(),
            fact(11).ln(),
            sqrt_pi.ln(),
            (sqrt_pi / 2.0).ln(),
            (1..30).map(|k| (k as f64).ln()).sum::<f64>(),
        ];
        for (got, want) in values(lgamma(f64_tensor(&xs))).iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn digamma_matches_closed_forms() {
        // ψ(1) = −γ, ψ(1/2) = −γ − 2 ln 2, ψ(n) = −γ + H_{n−1}.
        let xs = [1.0, 0.5, 4.0, 20.0, 0.1];
        let harmonic = |n: usize| (1..n).map(|k| 1.0 / k as f64).sum::<f64>();
        // ψ(0.1) = −γ − π/2·cot(π/10) − ... ; use the reflection-free recurrence ψ(x) = ψ(x+1) − 1/x
        // with ψ(1.1) from the series is circular, so check ψ(0.1) through ψ(1.1) − ψ(0.1) = 10.
        let expected = [
            -EULER_GAMMA,
            -EULER_GAMMA - 2.0 * std::f64::consts::LN_2,
            -EULER_GAMMA + harmonic(4),
            -EULER_GAMMA + harmonic(20),
        ];
        let got = values(digamma(f64_tensor(&xs)));
        for (g, want) in got.iter().zip(expected) {
            assert!((g - want).abs() < 1e-12, "{g} vs {want}");
        }
        let at_1_1 = values(digamma(f64_tensor(&[1.1])))[0];
        assert!((at_1_1 - got[4] - 10.0).abs() < 1e-9);
    }

    #[test]
    fn digamma_is_the_gradient_of_lgamma() {
        let device = Device::flex().autodiff();
        let xs = [0.3, 1.0, 2.5, 7.0];
        let x = Tensor::<1>::from_data(TensorData::new(xs.to_vec(), [4]), (&device, DType::F64))
            .require_grad();
        let grads = lgamma(x.clone()).sum().backward();
        let grad = x.grad(&grads).map(values).unwrap_or_default();
        let psi = values(digamma(f64_tensor(&xs)));
        assert_eq!(grad.len(), 4);
        for (g, p) in grad.iter().zip(psi) {
            assert!((g - p).abs() < 1e-10, "{g} vs {p}");
        }
    }

    /// Naive pooling over an `[1, 1, T, H, W]` array in f64.
    fn naive_pool(
        input: &[f64],
        dims: [usize; 3],
        o: Pool3dOptions,
        max: bool,
    ) -> (Vec<f64>, [usize; 3]) {
        let out: [usize; 3] =
            std::array::from_fn(|d| (dims[d] + 2 * o.padding[d] - o.kernel[d]) / o.stride[d] + 1);
        let mut values = Vec::new();
        for ot in 0..out[0] {
            for oh in 0..out[1] {
                for ow in 0..out[2] {
                    let mut acc: Vec<f64> = Vec::new();
                    for kt in 0..o.kernel[0] {
                        for kh in 0..o.kernel[1] {
                            for kw in 0..o.kernel[2] {
                                let p = [
                                    (ot * o.stride[0] + kt) as i64 - o.padding[0] as i64,
                                    (oh * o.stride[1] + kh) as i64 - o.padding[1] as i64,
                                    (ow * o.stride[2] + kw) as i64 - o.padding[2] as i64,
                                ];
                                let inside = (0..3).all(|d| p[d] >= 0 && (p[d] as usize) < dims[d]);
                                if inside {
                                    let i = (p[0] as usize * dims[1] + p[1] as usize) * dims[2]
                                        + p[2] as usize;
                                    acc.push(input[i]);
                                } else if !max {
                                    acc.push(0.0);
                                }
                            }
                        }
                    }
                    values.push(if max {
                        acc.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                    } else {
                        acc.iter().sum::<f64>() / acc.len() as f64
                    });
                }
            }
        }
        (values, out)
    }

    #[test]
    fn pool3d_matches_naive_loops() {
        let dims = [5, 6, 7];
        let n: usize = dims.iter().product();
        let input: Vec<f64> = (0..n)
            .map(|i| ((i * 37 % 101) as f64) / 10.0 - 5.0)
            .collect();
        let device = Device::flex();
        let x = Tensor::<5>::from_data(
            TensorData::new(input.clone(), [1, 1, dims[0], dims[1], dims[2]]),
            (&device, DType::F64),
        );
        for o in [
            Pool3dOptions {
                kernel: [2, 2, 2],
                stride: [2, 2, 2],
                padding: [0, 0, 0],
            },
            Pool3dOptions {
                kernel: [3, 3, 3],
                stride: [1, 2, 2],
                padding: [1, 1, 1],
            },
            Pool3dOptions {
                kernel: [1, 3, 2],
                stride: [1, 1, 3],
                padding: [0, 1, 0],
            },
        ] {
            for max in [true, false] {
                let (want, out) = naive_pool(&input, dims, o, max);
                let got = if max {
                    max_pool3d(x.clone(), o)
                } else {
                    avg_pool3d(x.clone(), o)
                };
                assert_eq!(got.dims(), [1, 1, out[0], out[1], out[2]]);
                let got = got
                    .into_data()
                    .convert::<f64>()
                    .try_to_vec::<f64>()
                    .unwrap_or_default();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-12, "{o:?} max={max}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn pool3d_gradients_route_to_the_windows() {
        // Non-overlapping windows without padding: every output sends a total gradient of 1
        // back (to its maximum, or spread over its window).
        let device = Device::flex().autodiff();
        let values: Vec<f64> = (0..4 * 4 * 4).map(|i| ((i * 29) % 64) as f64).collect();
        let o = Pool3dOptions {
            kernel: [2, 2, 2],
            stride: [2, 2, 2],
            padding: [0, 0, 0],
        };
        for max in [true, false] {
            let x = Tensor::<5>::from_data(
                TensorData::new(values.clone(), [1, 1, 4, 4, 4]),
                (&device, DType::F64),
            )
            .require_grad();
            let y = if max {
                max_pool3d(x.clone(), o)
            } else {
                avg_pool3d(x.clone(), o)
            };
            let grads = y.sum().backward();
            let g = x
                .grad(&grads)
                .map(|g| {
                    g.into_data()
                        .convert::<f64>()
                        .try_to_vec::<f64>()
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            assert_eq!(g.len(), 64);
            assert!((g.iter().sum::<f64>() - 8.0).abs() < 1e-12, "max={max}");
            if max {
                assert_eq!(g.iter().filter(|v| **v == 1.0).count(), 8);
            }
        }
    }

    #[test]
    fn logcumsumexp_matches_direct_sum() {
        let xs = [0.5, -2.0, 3.0, 100.0, 99.0];
        let got = values(logcumsumexp(f64_tensor(&xs), 0));
        let mut running = Vec::new();
        for i in 0..xs.len() {
            let m = xs[..=i].iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = xs[..=i].iter().map(|v| (v - m).exp()).sum();
            running.push(s.ln() + m);
        }
        for (g, w) in got.iter().zip(running) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
    }
}
