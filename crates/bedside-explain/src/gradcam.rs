//! Grad-CAM (Selvaraju et al. 2017) for 3D convolutional stages, upsampled to the input.
//!
//! As Captum's `LayerGradCam` followed by `LayerAttribution.interpolate(…, "trilinear")`: the
//! gradient of the target with respect to the stage's activations is averaged over frames,
//! rows and columns to weigh each channel, the weighted channels are summed (and passed
//! through ReLU when asked), and the `[frames', height', width']` map is resized to the clip
//! with PyTorch's trilinear interpolation (`align_corners=False`).

use bedside_ml::data::clips::VideoArray;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ExplainError;
use crate::gradient::{check_clip, read_f32};
use crate::model::{Explainee, Stage, Target};

/// Settings of Grad-CAM.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GradCamOptions {
    /// The stage whose output is explained (default `layer4`).
    pub stage: Stage,
    /// Keep only positive evidence (pytorch-grad-cam and the paper do; Captum's default
    /// `relu_attributions=False` does not).
    pub relu: bool,
}

impl Default for GradCamOptions {
    fn default() -> Self {
        Self {
            stage: Stage::Layer4,
            relu: true,
        }
    }
}

/// A Grad-CAM result.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCam {
    /// The map at the stage's resolution, `[1, frames', height', width']`.
    pub coarse: VideoArray,
    /// The map resized to the clip, `[1, frames, height, width]`.
    pub upsampled: VideoArray,
    /// Channel weights (mean gradient per channel).
    pub weights: Vec<f32>,
}

/// Grad-CAM of `target` at `options.stage` for one clip.
pub fn grad_cam(
    model: &Explainee,
    target: &Target,
    clip: &VideoArray,
    options: &GradCamOptions,
) -> Result<GradCam, ExplainError> {
    let [c, t, h, w] = check_clip(clip)?;
    model.check_target(target)?;
    let x = Tensor::<5>::from_data(
        TensorData::new(clip.data.clone(), [1, c, t, h, w]),
        model.device(),
    );
    // The stage's activations are computed without a graph and become the leaf whose
    // gradient is read: only the layers after the stage are differentiated.
    let acts = model.activations(x, options.stage);
    let [_, channels, ft, fh, fw] = acts.dims();
    let leaf = acts.autodiff().require_grad();
    let score = target.score(model.outputs_from(leaf.clone(), options.stage));
    let grads = score.sum().backward();
    let gradient = leaf.grad(&grads).ok_or_else(|| ExplainError::Tensor {
        message: "the stage received no gradient".into(),
    })?;
    let gradient = read_f32(gradient)?;
    let acts = read_f32(leaf.inner())?;
    let plane = ft * fh * fw;
    let weights: Vec<f32> = gradient
        .chunks_exact(plane)
        .map(|g| (g.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64) as f32)
        .collect();
    let mut cam = vec![0.0f32; plane];
    for (k, a) in acts.chunks_exact(plane).enumerate().take(channels) {
        let wk = weights[k];
        cam.iter_mut().zip(a).for_each(|(m, a)| *m += wk * a);
    }
    if options.relu {
        cam.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    let coarse = VideoArray {
        channels: 1,
        frames: ft,
        height: fh,
        width: fw,
        data: cam,
    };
    let upsampled = trilinear(&coarse, [t, h, w]);
    Ok(GradCam {
        coarse,
        upsampled,
        weights,
    })
}

/// Source coordinates and weights of PyTorch's linear interpolation with
/// `align_corners=False` along one axis: for each output index, `(i0, i1, λ)` such that the
/// value is `(1 − λ)·v[i0] + λ·v[i1]`.
fn linear_axis(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Resize every channel of `volume` to `[frames, height, width]` like
/// `torch.nn.functional.interpolate(mode="trilinear", align_corners=False)`.
pub fn trilinear(volume: &VideoArray, [t, h, w]: [usize; 3]) -> VideoArray {
    let (it, ih, iw) = (volume.frames, volume.height, volume.width);
    let (at, ah, aw) = (linear_axis(it, t), linear_axis(ih, h), linear_axis(iw, w));
    let mut data = Vec::with_capacity(volume.channels * t * h * w);
    for c in 0..volume.channels {
        let base = c * it * ih * iw;
        let v = |z: usize, y: usize, x: usize| volume.data[base + (z * ih + y) * iw + x];
        for &(z0, z1, lz) in &at {
            for &(y0, y1, ly) in &ah {
                for &(x0, x1, lx) in &aw {
                    let plane = |z| {
                        let top = (1.0 - lx) * v(z, y0, x0) + lx * v(z, y0, x1);
                        let bottom = (1.0 - lx) * v(z, y1, x0) + lx * v(z, y1, x1);
                        (1.0 - ly) * top + ly * bottom
                    };
                    data.push((1.0 - lz) * plane(z0) + lz * plane(z1));
                }
            }
        }
    }
    VideoArray {
        channels: volume.channels,
        frames: t,
        height: h,
        width: w,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trilinear_matches_pytorch_on_a_small_case() {
        // torch.nn.functional.interpolate(torch.tensor([0., 1., 4.]).view(1,1,3,1,1),
        //     size=(6,1,1), mode="trilinear").flatten()
        let v = VideoArray {
            channels: 1,
            frames: 3,
            height: 1,
            width: 1,
            data: vec![0.0, 1.0, 4.0],
        };
        let up = trilinear(&v, [6, 1, 1]);
        let want = [0.0, 0.25, 0.75, 1.75, 3.25, 4.0];
        for (a, b) in up.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?}", up.data);
        }
    }
}
