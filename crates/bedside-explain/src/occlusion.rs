//! Perturbation attributions: sliding spatio-temporal occlusion and frame ablation.
//!
//! Occlusion follows Captum's `Occlusion`: a window of `[channels, frames, rows, columns]`
//! slides with the given strides, `⌈(size − window) / stride⌉ + 1` positions per axis (the
//! last window is cut at the edge), each position is replaced by the baseline, and every
//! element receives the mean drop `y(x) − y(x_occluded)` over the windows that cover it.
//! Frame ablation replaces one frame (or a run of frames) at a time and gives a temporal
//! importance curve: how much the target falls without that part of the cycle.

use bedside_ml::data::clips::VideoArray;
use serde::{Deserialize, Serialize};

use crate::error::ExplainError;
use crate::gradient::{batch_scores, check_clip};
use crate::model::{Explainee, Target};

/// Settings of occlusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcclusionOptions {
    /// Window `[channels, frames, rows, columns]` (Captum `sliding_window_shapes`).
    pub window: [usize; 4],
    /// Steps `[channels, frames, rows, columns]` (Captum `strides`).
    pub strides: [usize; 4],
    /// Value written into the window (model-input units; 0 = the training mean).
    pub baseline: f32,
    /// Occluded clips per forward pass (Captum `perturbations_per_eval`).
    pub batch_size: usize,
}

impl OcclusionOptions {
    /// Windows of `frames × size × size` over all channels moving by half a window, a
    /// reasonable default for a `channels × frames × side × side` clip (at most 8 positions
    /// per axis).
    pub fn for_clip(shape: [usize; 4]) -> Self {
        let [c, t, h, w] = shape;
        let pick = |n: usize| (n / 4).max(1);
        let window = [c, pick(t), pick(h), pick(w)];
        let strides = [
            c,
            (window[1] / 2).max(1),
            (window[2] / 2).max(1),
            (window[3] / 2).max(1),
        ];
        Self {
            window,
            strides,
            baseline: 0.0,
            batch_size: 8,
        }
    }
}

fn positions(size: usize, window: usize, stride: usize) -> Vec<usize> {
    let count = (size - window).div_ceil(stride) + 1;
    (0..count).map(|i| i * stride).collect()
}

/// Occlusion map, the shape of the clip.
pub fn occlusion(
    model: &Explainee,
    target: &Target,
    clip: &VideoArray,
    options: &OcclusionOptions,
) -> Result<VideoArray, ExplainError> {
    let shape = check_clip(clip)?;
    if options.batch_size == 0 {
        return Err(ExplainError::invalid(
            "the occlusion batch size must be at least 1",
        ));
    }
    for d in 0..4 {
        let (n, win, s) = (shape[d], options.window[d], options.strides[d]);
        if win == 0 || win > n || s == 0 || (win < n && s > win) {
            return Err(ExplainError::invalid(format!(
                "occlusion window {:?} with strides {:?} does not fit a clip of {shape:?} (each window ≤ the clip, 1 ≤ stride ≤ window)",
                options.window, options.strides
            )));
        }
    }
    let axes: Vec<Vec<usize>> = (0..4)
        .map(|d| positions(shape[d], options.window[d], options.strides[d]))
        .collect();
    let mut windows = Vec::new();
    for &c in &axes[0] {
        for &t in &axes[1] {
            for &y in &axes[2] {
                for &x in &axes[3] {
                    windows.push([c, t, y, x]);
                }
            }
        }
    }
    let reference = batch_scores(model, target, clip.data.clone(), 1, shape)?[0];
    let [_, nt, nh, nw] = shape;
    let index = |c: usize, t: usize, y: usize, x: usize| ((c * nt + t) * nh + y) * nw + x;
    let range =
        |start: [usize; 4], d: usize| start[d]..(start[d] + options.window[d]).min(shape[d]);
    let n = clip.data.len();
    let mut sum = vec![0.0f32; n];
    let mut count = vec![0.0f32; n];
    for chunk in windows.chunks(options.batch_size) {
        let mut data = Vec::with_capacity(chunk.len() * n);
        for &start in chunk {
            let begin = data.len();
            data.extend_from_slice(&clip.data);
            for c in range(start, 0) {
                for t in range(start, 1) {
                    for y in range(start, 2) {
                        let row = index(c, t, y, 0);
                        data[begin + row + start[3]..begin + row + range(start, 3).end]
                            .iter_mut()
                            .for_each(|v| *v = options.baseline);
                    }
                }
            }
        }
        let scores = batch_scores(model, target, data, chunk.len(), shape)?;
        for (&start, score) in chunk.iter().zip(scores) {
            let drop = reference - score;
            for c in range(start, 0) {
                for t in range(start, 1) {
                    for y in range(start, 2) {
                        let row = index(c, t, y, 0);
                        for x in range(start, 3) {
                            sum[row + x] += drop;
                            count[row + x] += 1.0;
                        }
                    }
                }
            }
        }
    }
    let data = sum
        .iter()
        .zip(&count)
        .map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 })
        .collect();
    Ok(VideoArray {
        channels: clip.channels,
        frames: clip.frames,
        height: clip.height,
        width: clip.width,
        data,
    })
}

/// What replaces an ablated frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FrameFill {
    /// Zeros in model-input units (the training mean intensity).
    #[default]
    Zeros,
    /// The clip's mean frame (removes the motion, keeps the anatomy).
    MeanFrame,
}

/// Temporal importance of one clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameAblation {
    /// Target value of the intact clip.
    pub score: f32,
    /// Drop of the target when each frame is ablated (`score − ablated score`; a run of
    /// `window` frames is ablated and its drop is shared by the frames it covers).
    pub drop: Vec<f32>,
}

/// Ablate `window` consecutive frames at a time (stride = window) and record the drop.
pub fn frame_ablation(
    model: &Explainee,
    target: &Target,
    clip: &VideoArray,
    window: usize,
    fill: FrameFill,
    batch_size: usize,
) -> Result<FrameAblation, ExplainError> {
    let shape = check_clip(clip)?;
    let [channels, frames, h, w] = shape;
    if window == 0 || window > frames || batch_size == 0 {
        return Err(ExplainError::invalid(format!(
            "frame ablation needs 1 ≤ window ≤ {frames} and a batch size ≥ 1 (window {window})"
        )));
    }
    let plane = h * w;
    let mean_frame: Vec<f32> = (0..channels)
        .flat_map(|c| {
            (0..plane).map(move |p| {
                (0..frames)
                    .map(|f| f64::from(clip.data[(c * frames + f) * plane + p]))
                    .sum::<f64>() as f32
                    / frames as f32
            })
        })
        .collect();
    let score = batch_scores(model, target, clip.data.clone(), 1, shape)?[0];
    let starts: Vec<usize> = (0..frames).step_by(window).collect();
    let mut drop = vec![0.0f32; frames];
    for chunk in starts.chunks(batch_size) {
        let mut data = Vec::with_capacity(chunk.len() * clip.data.len());
        for &start in chunk {
            let begin = data.len();
            data.extend_from_slice(&clip.data);
            for c in 0..channels {
                for f in start..(start + window).min(frames) {
                    let dst = begin + (c * frames + f) * plane;
                    match fill {
                        FrameFill::Zeros => data[dst..dst + plane].fill(0.0),
                        FrameFill::MeanFrame => data[dst..dst + plane]
                            .copy_from_slice(&mean_frame[c * plane..(c + 1) * plane]),
                    }
                }
            }
        }
        let scores = batch_scores(model, target, data, chunk.len(), shape)?;
        for (&start, s) in chunk.iter().zip(scores) {
            for d in &mut drop[start..(start + window).min(frames)] {
                *d = score - s;
            }
        }
    }
    Ok(FrameAblation { score, drop })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_captum() {
        // ceil((32 − 8) / 5) + 1 = 6 windows, the last one cut at the edge.
        assert_eq!(positions(32, 8, 5), vec![0, 5, 10, 15, 20, 25]);
        assert_eq!(positions(8, 4, 2), vec![0, 2, 4]);
        assert_eq!(positions(3, 3, 3), vec![0]);
    }
}
