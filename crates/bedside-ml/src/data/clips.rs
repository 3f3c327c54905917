//! Clip sampling (EchoNet-Dynamic style), seeded `Rand…` augmentations, normalisation and
//! batching into `[batch, channels, frames, height, width]` tensors.
//!
//! Sampling follows EchoNet-Dynamic: a clip is `length` frames taken every `period` frames.
//! Training draws one start at random; evaluation takes every start
//! `0..frames − (length − 1)·period` and averages the predictions (their spread is kept as an
//! uncertainty signal). Videos shorter than one clip are padded with zero frames.

use bedside_core::rng::Rng;
use burn::config::Config;
use burn::tensor::{Device, Tensor, TensorData};

use super::npy::NpyArray;
use crate::error::MlError;

/// A video or clip held channel-first: `[channels, frames, height, width]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoArray {
    /// Channels (1 grayscale, 3 colour).
    pub channels: usize,
    /// Frames.
    pub frames: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Elements, `[channels, frames, height, width]` in C order.
    pub data: Vec<f32>,
}

impl VideoArray {
    /// From an array `[frames, height, width]` or `[frames, height, width, 3]` as written by
    /// `bedside curate`.
    pub fn from_npy(array: NpyArray) -> Result<Self, MlError> {
        let (frames, height, width, channels) = match array.shape.as_slice() {
            &[f, h, w] => (f, h, w, 1),
            &[f, h, w, c] if c == 3 || c == 1 => (f, h, w, c),
            other => {
                return Err(MlError::InvalidInput {
                    message: format!(
                        "a video array must be [frames, height, width] or [frames, height, width, 3], got {other:?}"
                    ),
                });
            }
        };
        if frames == 0 || height == 0 || width == 0 {
            return Err(MlError::InvalidInput {
                message: format!("empty video array {:?}", array.shape),
            });
        }
        let plane = height * width;
        let mut data = vec![0.0; array.data.len()];
        for f in 0..frames {
            for p in 0..plane {
                for c in 0..channels {
                    data[(c * frames + f) * plane + p] = array.data[(f * plane + p) * channels + c];
                }
            }
        }
        Ok(Self {
            channels,
            frames,
            height,
            width,
            data,
        })
    }

    fn index(&self, c: usize, f: usize, y: usize, x: usize) -> usize {
        ((c * self.frames + f) * self.height + y) * self.width + x
    }

    /// Element `[c, f, y, x]`.
    pub fn get(&self, c: usize, f: usize, y: usize, x: usize) -> f32 {
        self.data[self.index(c, f, y, x)]
    }
}

/// Configuration of a [`ClipSampler`].
#[derive(Config, Debug)]
pub struct ClipSamplerConfig {
    /// Frames per clip. Default 32 (EchoNet-Dynamic).
    #[config(default = 32)]
    pub length: usize,
    /// Step between sampled frames. Default 2 (EchoNet-Dynamic).
    #[config(default = 2)]
    pub period: usize,
}

impl ClipSamplerConfig {
    /// Build the sampler.
    pub fn init(&self) -> Result<ClipSampler, MlError> {
        if self.length == 0 || self.period == 0 {
            return Err(MlError::InvalidConfig {
                message: format!(
                    "clip length and period must be positive (length {}, period {})",
                    self.length, self.period
                ),
            });
        }
        Ok(ClipSampler {
            length: self.length,
            period: self.period,
        })
    }
}

/// Picks clips out of videos (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipSampler {
    length: usize,
    period: usize,
}

impl ClipSampler {
    /// Frames spanned by one clip: `(length − 1)·period + 1`.
    pub fn span(&self) -> usize {
        (self.length - 1) * self.period + 1
    }

    /// Every valid start for a video of `frames` frames (at least one: 0).
    pub fn all_starts(&self, frames: usize) -> Vec<usize> {
        let count = frames.saturating_sub(self.span() - 1).max(1);
        (0..count).collect()
    }

    /// At most `max` of [`Self::all_starts`], evenly spaced from the first to the last (all of
    /// them when `max` is absent, 0 or not below their number). Test-time prediction and
    /// validation during training both choose their clips with it.
    pub fn spaced_starts(&self, frames: usize, max: Option<usize>) -> Vec<usize> {
        let starts = self.all_starts(frames);
        match max {
            Some(m) if m > 0 && m < starts.len() => (0..m)
                .map(|k| starts[k * (starts.len() - 1) / (m - 1).max(1)])
                .collect(),
            _ => starts,
        }
    }

    /// One start drawn uniformly from [`Self::all_starts`].
    pub fn random_start(&self, frames: usize, rng: &mut Rng) -> usize {
        let count = self.all_starts(frames).len();
        rng.below(count as u64) as usize
    }

    /// The clip starting at `start`: frames `start + k·period`, zeros past the end.
    pub fn extract(&self, video: &VideoArray, start: usize) -> VideoArray {
        let plane = video.height * video.width;
        let mut data = vec![0.0; video.channels * self.length * plane];
        for c in 0..video.channels {
            for k in 0..self.length {
                let f = start + k * self.period;
                if f >= video.frames {
                    continue;
                }
                let src = (c * video.frames + f) * plane;
                let dst = (c * self.length + k) * plane;
                data[dst..dst + plane].copy_from_slice(&video.data[src..src + plane]);
            }
        }
        VideoArray {
            channels: video.channels,
            frames: self.length,
            height: video.height,
            width: video.width,
            data,
        }
    }
}

/// A seeded random transform of a clip. Implementations are named `Rand…`.
pub trait RandTransform: Send + Sync {
    /// Transform `clip` in place using `rng`.
    fn apply(&self, clip: &mut VideoArray, rng: &mut Rng);
}

/// Flip left–right with probability `probability`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandFlipHorizontal {
    /// Probability of flipping.
    pub probability: f64,
}

impl RandTransform for RandFlipHorizontal {
    fn apply(&self, clip: &mut VideoArray, rng: &mut Rng) {
        if !rng.bernoulli(self.probability) {
            return;
        }
        let width = clip.width;
        for row in clip.data.chunks_exact_mut(width) {
            row.reverse();
        }
    }
}

/// EchoNet's augmentation: zero-pad by `pad` pixels on every side, then crop a random window
/// of the original size (a random shift of up to `pad` pixels, the same for every frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandSpatialShift {
    /// Maximum shift in pixels.
    pub pad: usize,
}

impl RandTransform for RandSpatialShift {
    fn apply(&self, clip: &mut VideoArray, rng: &mut Rng) {
        let span = 2 * self.pad as i64;
        let dy = rng.int_inclusive(0, span) - self.pad as i64;
        let dx = rng.int_inclusive(0, span) - self.pad as i64;
        let source = clip.clone();
        for c in 0..clip.channels {
            for f in 0..clip.frames {
                for y in 0..clip.height {
                    for x in 0..clip.width {
                        let (sy, sx) = (y as i64 + dy, x as i64 + dx);
                        let inside = sy >= 0
                            && sx >= 0
                            && (sy as usize) < clip.height
                            && (sx as usize) < clip.width;
                        let value = if inside {
                            source.get(c, f, sy as usize, sx as usize)
                        } else {
                            0.0
                        };
                        let i = clip.index(c, f, y, x);
                        clip.data[i] = value;
                    }
                }
            }
        }
    }
}

/// Multiply intensities by a factor drawn uniformly from `[low, high]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandIntensityScale {
    /// Smallest factor.
    pub low: f64,
    /// Largest factor.
    pub high: f64,
}

impl RandTransform for RandIntensityScale {
    fn apply(&self, clip: &mut VideoArray, rng: &mut Rng) {
        let factor = rng.range(self.low, self.high) as f32;
        for v in &mut clip.data {
            *v *= factor;
        }
    }
}

/// A list of transforms with its own seed: the random stream of a clip depends only on the
/// seed, the epoch and the clip's index, so results do not depend on loading order or threads.
pub struct RandPipeline {
    seed: u64,
    transforms: Vec<Box<dyn RandTransform>>,
}

impl RandPipeline {
    /// A pipeline applying `transforms` in order.
    pub fn new(seed: u64, transforms: Vec<Box<dyn RandTransform>>) -> Self {
        Self { seed, transforms }
    }

    /// The random stream of clip `index` in `epoch`.
    pub fn rng_for(&self, epoch: u64, index: u64) -> Rng {
        Rng::seed_from(self.seed).fork(epoch).fork(index)
    }

    /// Transform `clip` (clip `index` of `epoch`).
    pub fn apply(&self, clip: &mut VideoArray, epoch: u64, index: u64) {
        let mut rng = self.rng_for(epoch, index);
        for transform in &self.transforms {
            transform.apply(clip, &mut rng);
        }
    }
}

/// Per-channel mean and standard deviation, computed on the training split.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f64>,
    /// Standard deviation per channel (population; 1 where a channel is constant).
    pub std: Vec<f64>,
}

impl Normalization {
    /// Statistics over every voxel of `videos` (all must have the same channel count).
    pub fn from_videos<'a>(
        videos: impl IntoIterator<Item = &'a VideoArray>,
    ) -> Result<Self, MlError> {
        let mut sums: Vec<(f64, f64, f64)> = Vec::new();
        for video in videos {
            if sums.is_empty() {
                sums = vec![(0.0, 0.0, 0.0); video.channels];
            } else if sums.len() != video.channels {
                return Err(MlError::InvalidInput {
                    message: format!("videos mix {} and {} channels", sums.len(), video.channels),
                });
            }
            let per_channel = video.frames * video.height * video.width;
            for (c, chunk) in video.data.chunks_exact(per_channel).enumerate() {
                for &v in chunk {
                    let v = f64::from(v);
                    sums[c].0 += 1.0;
                    sums[c].1 += v;
                    sums[c].2 += v * v;
                }
            }
        }
        if sums.is_empty() {
            return Err(MlError::InvalidInput {
                message: "no training videos to compute normalisation statistics from".into(),
            });
        }
        let mean: Vec<f64> = sums.iter().map(|(n, s, _)| s / n).collect();
        let std = sums
            .iter()
            .zip(&mean)
            .map(|((n, _, s2), m)| {
                let var = (s2 / n - m * m).max(0.0);
                if var > 0.0 { var.sqrt() } else { 1.0 }
            })
            .collect();
        Ok(Self { mean, std })
    }

    /// Normalise `clip` in place.
    pub fn apply(&self, clip: &mut VideoArray) -> Result<(), MlError> {
        if clip.channels != self.mean.len() {
            return Err(MlError::InvalidInput {
                message: format!(
                    "clip has {} channels, the statistics {}",
                    clip.channels,
                    self.mean.len()
                ),
            });
        }
        let per_channel = clip.frames * clip.height * clip.width;
        for (c, chunk) in clip.data.chunks_exact_mut(per_channel).enumerate() {
            let (m, s) = (self.mean[c] as f32, self.std[c] as f32);
            for v in chunk {
                *v = (*v - m) / s;
            }
        }
        Ok(())
    }
}

/// Stack clips of one shape into a batch tensor.
///
/// # Shapes
/// - output: `[batch, channels, frames, height, width]`
pub fn clips_to_tensor(clips: &[VideoArray], device: &Device) -> Result<Tensor<5>, MlError> {
    let first = clips.first().ok_or_else(|| MlError::InvalidInput {
        message: "no clips to batch".into(),
    })?;
    let shape = [first.channels, first.frames, first.height, first.width];
    let mut data = Vec::with_capacity(clips.len() * first.data.len());
    for (i, clip) in clips.iter().enumerate() {
        let this = [clip.channels, clip.frames, clip.height, clip.width];
        if this != shape {
            return Err(MlError::InvalidInput {
                message: format!("clip {i} has shape {this:?}, clip 0 {shape:?}"),
            });
        }
        data.extend_from_slice(&clip.data);
    }
    let [c, f, h, w] = shape;
    Ok(Tensor::from_data(
        TensorData::new(data, [clips.len(), c, f, h, w]),
        device,
    ))
}
