//! Explaining whole studies: every clip (or an evenly spaced subset) of a study's video is
//! explained, and the clip maps are averaged in the video's own frame numbering, so a frame
//! seen by several clips gets the mean of their attributions.

use std::collections::BTreeMap;

use bedside_ml::data::clips::VideoArray;
use serde::{Deserialize, Serialize};

use crate::error::ExplainError;
use crate::gradcam::{GradCamOptions, grad_cam};
use crate::gradient::{
    IgOptions, SmoothGradOptions, input_x_gradient, integrated_gradients, saliency, smoothgrad,
};
use crate::model::{Explainee, Target};
use crate::occlusion::{FrameFill, OcclusionOptions, frame_ablation, occlusion};

/// An attribution method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `|∂y/∂x|`.
    Saliency,
    /// `x · ∂y/∂x`.
    InputXGradient,
    /// Integrated Gradients.
    IntegratedGradients,
    /// SmoothGrad.
    SmoothGrad,
    /// Grad-CAM at a stage, upsampled.
    GradCam,
    /// Sliding-window occlusion.
    Occlusion,
    /// Frame ablation (temporal importance only).
    FrameAblation,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 7] = [
        Method::Saliency,
        Method::InputXGradient,
        Method::IntegratedGradients,
        Method::SmoothGrad,
        Method::GradCam,
        Method::Occlusion,
        Method::FrameAblation,
    ];

    /// Short name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Method::Saliency => "saliency",
            Method::InputXGradient => "input_x_gradient",
            Method::IntegratedGradients => "ig",
            Method::SmoothGrad => "smoothgrad",
            Method::GradCam => "gradcam",
            Method::Occlusion => "occlusion",
            Method::FrameAblation => "frames",
        }
    }

    /// Parse a short name (also `ixg`, `integrated_gradients`, `frame_ablation`).
    pub fn parse(name: &str) -> Result<Self, ExplainError> {
        let name = name.trim();
        let alias = match name {
            "ixg" | "input-x-gradient" => "input_x_gradient",
            "integrated_gradients" | "integrated-gradients" => "ig",
            "grad-cam" | "grad_cam" => "gradcam",
            "frame_ablation" | "frame-ablation" => "frames",
            other => other,
        };
        Self::ALL
            .into_iter()
            .find(|m| m.name() == alias)
            .ok_or_else(|| {
                ExplainError::invalid(format!(
                    "unknown method `{name}` (saliency, input_x_gradient, ig, smoothgrad, gradcam, occlusion, frames)"
                ))
            })
    }

    /// Whether the method gives a map (all but frame ablation).
    pub fn has_map(self) -> bool {
        self != Method::FrameAblation
    }
}

/// Settings of every method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MethodOptions {
    /// Integrated Gradients.
    pub ig: IgOptions,
    /// SmoothGrad.
    pub smoothgrad: SmoothGradOptions,
    /// Grad-CAM.
    pub gradcam: GradCamOptions,
    /// Occlusion (absent: [`OcclusionOptions::for_clip`]).
    pub occlusion: Option<OcclusionOptions>,
    /// Frames ablated together by frame ablation (absent: 1).
    pub frame_window: Option<usize>,
    /// What replaces ablated frames.
    pub frame_fill: FrameFill,
}

/// Extra numbers a method reports for one clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClipNumbers {
    /// Integrated Gradients' completeness error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ig_delta: Option<f64>,
    /// Target value at the IG baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ig_baseline_score: Option<f32>,
}

/// One method's result for one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipResult {
    /// The map with its channels summed, `[1, frames, height, width]` (frame ablation: the
    /// drop of each frame broadcast over the frame).
    pub map: VideoArray,
    /// The temporal curve: the drop per frame (frame ablation) or the share of absolute
    /// attribution mass per frame (maps).
    pub temporal: Vec<f32>,
    /// Extra numbers.
    pub numbers: ClipNumbers,
}

fn sum_channels(map: &VideoArray) -> VideoArray {
    let per = map.frames * map.height * map.width;
    let mut data = vec![0.0f32; per];
    for chunk in map.data.chunks_exact(per.max(1)) {
        data.iter_mut().zip(chunk).for_each(|(d, v)| *d += v);
    }
    VideoArray {
        channels: 1,
        frames: map.frames,
        height: map.height,
        width: map.width,
        data,
    }
}

/// Share of `Σ|map|` carried by each frame (sums to 1 unless the map is zero).
pub fn temporal_mass(map: &VideoArray) -> Vec<f32> {
    let plane = map.height * map.width;
    let mut mass = vec![0.0f64; map.frames];
    for (i, v) in map.data.iter().enumerate() {
        mass[(i / plane.max(1)) % map.frames.max(1)] += f64::from(v.abs());
    }
    let total: f64 = mass.iter().sum();
    mass.iter()
        .map(|m| if total > 0.0 { (m / total) as f32 } else { 0.0 })
        .collect()
}

/// Run `method` on one normalised clip.
pub fn explain_clip(
    model: &Explainee,
    target: &Target,
    clip: &VideoArray,
    method: Method,
    options: &MethodOptions,
) -> Result<ClipResult, ExplainError> {
    let mut numbers = ClipNumbers::default();
    let map = match method {
        Method::Saliency => saliency(model, target, clip, true)?,
        Method::InputXGradient => input_x_gradient(model, target, clip)?,
        Method::IntegratedGradients => {
            let r = integrated_gradients(model, target, clip, &options.ig)?;
            numbers.ig_delta = Some(r.delta);
            numbers.ig_baseline_score = Some(r.baseline_score);
            r.attribution
        }
        Method::SmoothGrad => smoothgrad(model, target, clip, &options.smoothgrad)?,
        Method::GradCam => grad_cam(model, target, clip, &options.gradcam)?.upsampled,
        Method::Occlusion => {
            let shape = [clip.channels, clip.frames, clip.height, clip.width];
            let o = options
                .occlusion
                .clone()
                .unwrap_or_else(|| OcclusionOptions::for_clip(shape));
            occlusion(model, target, clip, &o)?
        }
        Method::FrameAblation => {
            let r = frame_ablation(
                model,
                target,
                clip,
                options.frame_window.unwrap_or(1),
                options.frame_fill,
                8,
            )?;
            let plane = clip.height * clip.width;
            let data = r
                .drop
                .iter()
                .flat_map(|&d| std::iter::repeat_n(d, plane))
                .collect();
            return Ok(ClipResult {
                map: VideoArray {
                    channels: 1,
                    frames: clip.frames,
                    height: clip.height,
                    width: clip.width,
                    data,
                },
                temporal: r.drop,
                numbers,
            });
        }
    };
    let map = sum_channels(&map);
    let temporal = temporal_mass(&map);
    Ok(ClipResult {
        map,
        temporal,
        numbers,
    })
}

/// One method's result over a study.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyMap {
    /// Mean map over the clips in video frame numbering, `[1, video_frames, height, width]`;
    /// frames no clip covered are zero.
    pub map: VideoArray,
    /// Whether each video frame was covered by at least one clip.
    pub covered: Vec<bool>,
    /// Temporal curve per video frame (mean over the clips covering it; `None` if none).
    pub temporal: Vec<Option<f32>>,
    /// Per-clip numbers, in clip order.
    pub clip_numbers: Vec<ClipNumbers>,
}

/// Accumulates clip results of one method into a [`StudyMap`].
#[derive(Debug, Clone)]
pub struct StudyAccumulator {
    frames: usize,
    height: usize,
    width: usize,
    sum: Vec<f32>,
    temporal: Vec<f64>,
    count: Vec<usize>,
    numbers: Vec<ClipNumbers>,
}

impl StudyAccumulator {
    /// For a video of `frames` frames of `height × width`.
    pub fn new(frames: usize, height: usize, width: usize) -> Self {
        Self {
            frames,
            height,
            width,
            sum: vec![0.0; frames * height * width],
            temporal: vec![0.0; frames],
            count: vec![0; frames],
            numbers: Vec::new(),
        }
    }

    /// Add a clip that starts at video frame `start` and takes every `period`-th frame.
    pub fn add(&mut self, result: &ClipResult, start: usize, period: usize) {
        let plane = self.height * self.width;
        for k in 0..result.map.frames {
            let f = start + k * period;
            if f >= self.frames {
                break;
            }
            let src = &result.map.data[k * plane..(k + 1) * plane];
            self.sum[f * plane..(f + 1) * plane]
                .iter_mut()
                .zip(src)
                .for_each(|(s, v)| *s += v);
            self.temporal[f] += f64::from(result.temporal[k]);
            self.count[f] += 1;
        }
        self.numbers.push(result.numbers.clone());
    }

    /// The mean over the clips added.
    pub fn finish(self) -> StudyMap {
        let plane = self.height * self.width;
        let mut data = self.sum;
        for (f, &n) in self.count.iter().enumerate() {
            if n > 1 {
                let inv = 1.0 / n as f32;
                data[f * plane..(f + 1) * plane]
                    .iter_mut()
                    .for_each(|v| *v *= inv);
            }
        }
        StudyMap {
            map: VideoArray {
                channels: 1,
                frames: self.frames,
                height: self.height,
                width: self.width,
                data,
            },
            covered: self.count.iter().map(|&n| n > 0).collect(),
            temporal: self
                .temporal
                .iter()
                .zip(&self.count)
                .map(|(t, &n)| (n > 0).then(|| (t / n as f64) as f32))
                .collect(),
            clip_numbers: self.numbers,
        }
    }
}

/// Every method's result over one study.
pub type StudyResults = BTreeMap<Method, StudyMap>;
