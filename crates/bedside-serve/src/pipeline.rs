//! From a stored instance to an outcome: routing by header, quality control (each failure a
//! named [`Reason`]), pixel decoding, inference with the routed bundle on every clip (as
//! `bedside predict` does), and the out-of-distribution gate.

use std::time::Instant;

use bedside_curate::resize::{Frames, Sample, training_copy};
use bedside_ml::bundle::Bundle;
use bedside_ml::data::clips::{ClipSampler, ClipSamplerConfig, VideoArray, clips_to_tensor};
use bedside_ml::data::loader::{MODEL_CHANNELS, resize_pad};
use burn::tensor::Device;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_pixeldata::{PixelDecoder, PixelRepresentation, PlanarConfiguration};
use serde::Serialize;

use crate::config::{Qc, Route, Worker};

/// Why an instance was not analysed, or why the answer is "I don't know".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No route accepts the modality.
    WrongModality,
    /// A route accepts the modality but none the SOP class.
    WrongSopClass,
    /// Modality and SOP class fit, series description or manufacturer do not.
    NoMatchingRoute,
    /// Fewer frames than one clip needs.
    TooFewFrames,
    /// Frame rate unknown or outside the route's limits.
    FrameRate,
    /// Rows or columns outside the route's limits.
    Resolution,
    /// No ultrasound region calibration and no Pixel Spacing.
    MissingCalibration,
    /// The pixel data cannot be decoded.
    UnreadablePixels,
    /// Evidential uncertainty above the threshold.
    Uncertainty,
    /// Spread across clips above the threshold.
    ClipSpread,
}

impl Reason {
    /// The name used in results, metrics and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongModality => "wrong_modality",
            Self::WrongSopClass => "wrong_sop_class",
            Self::NoMatchingRoute => "no_matching_route",
            Self::TooFewFrames => "too_few_frames",
            Self::FrameRate => "frame_rate",
            Self::Resolution => "resolution",
            Self::MissingCalibration => "missing_calibration",
            Self::UnreadablePixels => "unreadable_pixels",
            Self::Uncertainty => "uncertainty",
            Self::ClipSpread => "clip_spread",
        }
    }
}

/// One quality-control finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The reason.
    pub reason: Reason,
    /// Numbers behind it, without patient data (e.g. `12 frames < 16`).
    pub detail: String,
}

/// One output column: mean over clips and spread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    /// Column name (`prob_1`, `uncertainty`, `value`, `risk`, …).
    pub name: String,
    /// Mean over clips.
    pub mean: f64,
    /// Standard deviation over clips.
    pub std: f64,
}

/// What inference produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// Clips run.
    pub clips: usize,
    /// Output columns.
    pub outputs: Vec<Output>,
}

/// The header facts routing and QC look at (no patient data).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Header {
    /// Modality.
    pub modality: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Frames.
    pub frames: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub columns: usize,
    /// Frame rate, frames per second, when the header says.
    pub fps: Option<f64>,
    /// Whether a physical calibration is present.
    pub calibrated: bool,
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

fn float(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<f64> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_float64().ok())
        .filter(|v| v.is_finite())
}

impl Header {
    /// Reads the header facts of `obj`.
    pub fn read(obj: &InMemDicomObject) -> Self {
        let int = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_int::<i64>().ok())
                .and_then(|v| usize::try_from(v).ok())
        };
        let fps = float(obj, tags::FRAME_TIME)
            .filter(|&ms| ms > 0.0)
            .map(|ms| 1000.0 / ms)
            .or_else(|| float(obj, tags::CINE_RATE).filter(|&r| r > 0.0))
            .or_else(|| float(obj, tags::RECOMMENDED_DISPLAY_FRAME_RATE).filter(|&r| r > 0.0));
        let regions = obj
            .element_opt(tags::SEQUENCE_OF_ULTRASOUND_REGIONS)
            .ok()
            .flatten()
            .and_then(|e| {
                e.items().map(|items| {
                    items.iter().any(|item| {
                        float(item, tags::PHYSICAL_DELTA_X).is_some_and(|d| d != 0.0)
                            && float(item, tags::PHYSICAL_DELTA_Y).is_some_and(|d| d != 0.0)
                    })
                })
            })
            .unwrap_or(false);
        let spacing = [tags::PIXEL_SPACING, tags::IMAGER_PIXEL_SPACING]
            .iter()
            .any(|&t| {
                obj.element_opt(t)
                    .ok()
                    .flatten()
                    .and_then(|e| e.to_multi_float64().ok())
                    .is_some_and(|v| v.len() == 2 && v.iter().all(|x| x.is_finite() && *x > 0.0))
            });
        Self {
            modality: text(obj, tags::MODALITY),
            sop_class_uid: text(obj, tags::SOP_CLASS_UID),
            frames: int(tags::NUMBER_OF_FRAMES).unwrap_or(1),
            rows: int(tags::ROWS).unwrap_or(0),
            columns: int(tags::COLUMNS).unwrap_or(0),
            fps,
            calibrated: regions || spacing,
        }
    }
}

fn contains_any(value: &str, patterns: &[String]) -> bool {
    let value = value.to_lowercase();
    patterns.is_empty() || patterns.iter().any(|p| value.contains(&p.to_lowercase()))
}

/// The first route accepting `obj`, or why none does.
pub fn route<'a>(routes: &'a [Route], obj: &InMemDicomObject) -> Result<&'a Route, Finding> {
    let modality = text(obj, tags::MODALITY);
    let class = text(obj, tags::SOP_CLASS_UID);
    let description = text(obj, tags::SERIES_DESCRIPTION);
    let manufacturer = text(obj, tags::MANUFACTURER);
    let by_modality: Vec<&Route> = routes
        .iter()
        .filter(|r| {
            r.modality.is_empty() || r.modality.iter().any(|m| m.eq_ignore_ascii_case(&modality))
        })
        .collect();
    if by_modality.is_empty() {
        return Err(Finding {
            reason: Reason::WrongModality,
            detail: format!("modality `{modality}` is not routed"),
        });
    }
    let by_class: Vec<&Route> = by_modality
        .into_iter()
        .filter(|r| r.sop_class.is_empty() || r.sop_class.contains(&class))
        .collect();
    if by_class.is_empty() {
        return Err(Finding {
            reason: Reason::WrongSopClass,
            detail: format!("SOP class {class} is not routed for modality {modality}"),
        });
    }
    by_class
        .into_iter()
        .find(|r| {
            contains_any(&description, &r.series_description)
                && contains_any(&manufacturer, &r.manufacturer)
        })
        .ok_or_else(|| Finding {
            reason: Reason::NoMatchingRoute,
            detail: "series description or manufacturer matches no route".into(),
        })
}

/// Header checks of a route against a bundle (before any pixel is decoded).
pub fn check_header(header: &Header, qc: &Qc, bundle: &Bundle) -> Vec<Finding> {
    let input = &bundle.manifest.model.input;
    let span = (input.clip_length.max(1) - 1) * input.period.max(1) + 1;
    let min_frames = if qc.min_frames > 0 {
        qc.min_frames
    } else {
        span
    };
    let mut out = Vec::new();
    if header.frames < min_frames {
        out.push(Finding {
            reason: Reason::TooFewFrames,
            detail: format!("{} frames < {min_frames}", header.frames),
        });
    }
    if qc.min_fps > 0.0 || qc.max_fps > 0.0 {
        match header.fps {
            None => out.push(Finding {
                reason: Reason::FrameRate,
                detail: "no Frame Time, Cine Rate or Recommended Display Frame Rate".into(),
            }),
            Some(fps)
                if (qc.min_fps > 0.0 && fps < qc.min_fps)
                    || (qc.max_fps > 0.0 && fps > qc.max_fps) =>
            {
                out.push(Finding {
                    reason: Reason::FrameRate,
                    detail: format!("{fps:.1} fps outside [{}, {}]", qc.min_fps, qc.max_fps),
                })
            }
            Some(_) => {}
        }
    }
    let small = qc.min_size > 0 && (header.rows < qc.min_size || header.columns < qc.min_size);
    let large = qc.max_size > 0 && (header.rows > qc.max_size || header.columns > qc.max_size);
    if small || large || header.rows == 0 || header.columns == 0 {
        out.push(Finding {
            reason: Reason::Resolution,
            detail: format!(
                "{}x{} outside [{}, {}]",
                header.rows, header.columns, qc.min_size, qc.max_size
            ),
        });
    }
    if qc.require_calibration && !header.calibrated {
        out.push(Finding {
            reason: Reason::MissingCalibration,
            detail: "no Sequence Of Ultrasound Regions with physical deltas and no Pixel Spacing"
                .into(),
        });
    }
    out
}

/// The layout of decoded pixel data.
#[derive(Debug, Clone, Copy)]
struct Layout {
    rows: usize,
    columns: usize,
    spp: usize,
    bits: u16,
    frames: usize,
    signed: bool,
    /// Colour planes stored one after the other (Planar Configuration 1).
    planar: bool,
}

fn layout_of(d: &dicom_pixeldata::DecodedPixelData<'_>, frames: usize) -> Layout {
    Layout {
        rows: d.rows() as usize,
        columns: d.columns() as usize,
        spp: d.samples_per_pixel() as usize,
        bits: d.bits_allocated(),
        frames,
        signed: matches!(d.pixel_representation(), PixelRepresentation::Signed),
        planar: matches!(d.planar_configuration(), PlanarConfiguration::PixelFirst),
    }
}

/// The layout of a range of frames (absent when the range was empty) and their samples.
type Part = (Option<Layout>, Vec<u8>);

/// Decodes every frame. Compressed multi-frame pixel data is decoded frame by frame on all
/// cores (a 64-frame JPEG cine is most of a study's decode time); native data at once.
fn decode_frames(obj: &dicom_object::DefaultDicomObject) -> Result<(Layout, Vec<u8>), String> {
    let frames = obj
        .element(tags::NUMBER_OF_FRAMES)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    let encapsulated = obj
        .element(tags::PIXEL_DATA)
        .is_ok_and(|e| matches!(e.value(), dicom_core::DicomValue::PixelSequence(_)));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !encapsulated || frames < 2 || threads < 2 {
        let decoded = obj.decode_pixel_data().map_err(|e| e.to_string())?;
        let layout = layout_of(&decoded, decoded.number_of_frames() as usize);
        return Ok((layout, decoded.data().to_vec()));
    }
    let chunk = frames.div_ceil(threads as u32);
    let parts: Vec<Result<Part, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..frames)
            .step_by(chunk as usize)
            .map(|first| {
                scope.spawn(move || {
                    let mut layout = None;
                    let mut bytes = Vec::new();
                    for f in first..(first + chunk).min(frames) {
                        let d = obj.decode_pixel_data_frame(f).map_err(|e| e.to_string())?;
                        layout.get_or_insert_with(|| layout_of(&d, frames as usize));
                        bytes.extend_from_slice(d.data());
                    }
                    Ok((layout, bytes))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("a frame decoder panicked".into()))
            })
            .collect()
    });
    let mut layout = None;
    let mut raw = Vec::new();
    for part in parts {
        let (l, bytes) = part?;
        layout = layout.or(l);
        raw.extend_from_slice(&bytes);
    }
    layout
        .map(|l| (l, raw))
        .ok_or_else(|| "no frame decoded".to_string())
}

/// Decodes every frame as `[channels, frames, rows, columns]` samples (no rescale, as the
/// curated arrays the bundle was trained on). With `resized_copy = Some(S)` (a bundle trained
/// on `bedside curate --resize S` copies) the frames go through the same scan-area crop and
/// S×S fit as those copies, so the model sees what it was trained on.
pub fn decode(
    obj: &dicom_object::DefaultDicomObject,
    resized_copy: Option<usize>,
) -> Result<VideoArray, Finding> {
    let fail = |detail: String| Finding {
        reason: Reason::UnreadablePixels,
        detail,
    };
    let (decoded, raw) = decode_frames(obj).map_err(fail)?;
    let (rows, columns) = (decoded.rows, decoded.columns);
    let (spp, bits, frames) = (decoded.spp, decoded.bits, decoded.frames);
    if !(bits == 8 || bits == 16)
        || !(spp == 1 || spp == 3)
        || rows == 0
        || columns == 0
        || frames == 0
    {
        return Err(fail(format!(
            "unsupported layout: {bits}-bit, {spp} samples, {rows}x{columns}x{frames}"
        )));
    }
    let bps = (bits / 8) as usize;
    let plane = rows * columns;
    let need = frames * plane * spp * bps;
    if raw.len() < need {
        return Err(fail(format!(
            "decoded {} bytes, {need} expected",
            raw.len()
        )));
    }
    let sample = match (bps, decoded.signed) {
        (1, _) => Sample::U8,
        (_, false) => Sample::U16,
        (_, true) => Sample::I16,
    };
    // As the curated arrays: stored samples with colour interleaved ([.., 3]).
    let planar_source = spp == 3 && decoded.planar;
    let interleaved: std::borrow::Cow<'_, [u8]> = if planar_source {
        let mut out = vec![0u8; need];
        for f in 0..frames {
            let base = f * plane * spp * bps;
            for c in 0..spp {
                for i in 0..plane {
                    let from = base + (c * plane + i) * bps;
                    let to = base + (i * spp + c) * bps;
                    out[to..to + bps].copy_from_slice(&raw[from..from + bps]);
                }
            }
        }
        out.into()
    } else {
        (&raw[..need]).into()
    };
    let (bytes, rows, columns): (std::borrow::Cow<'_, [u8]>, usize, usize) = match resized_copy {
        None => (interleaved, rows, columns),
        Some(size) => {
            let ultrasound = obj
                .element(tags::MODALITY)
                .ok()
                .and_then(|e| e.to_str().ok())
                .is_some_and(|m| m.trim() == "US");
            let regions = if ultrasound {
                bedside_curate::resize::tissue_regions(obj, rows, columns)
            } else {
                Vec::new()
            };
            let array = Frames {
                data: &interleaved,
                sample,
                frames,
                rows,
                columns,
                spp,
            };
            let (copy, geometry, _) = training_copy(&array, &regions, ultrasound, size)
                .ok_or_else(|| fail("cannot crop the scan area".into()))?;
            (copy.into(), geometry.size, geometry.size)
        }
    };
    let plane = rows * columns;
    let value = |at: usize| -> f32 {
        match sample {
            Sample::U8 => f32::from(bytes[at]),
            Sample::U16 => f32::from(u16::from_le_bytes([bytes[at], bytes[at + 1]])),
            Sample::I16 => f32::from(i16::from_le_bytes([bytes[at], bytes[at + 1]])),
        }
    };
    // Channel-first for the model.
    let mut data = vec![0.0f32; spp * frames * plane];
    for f in 0..frames {
        let base = f * plane * spp;
        for c in 0..spp {
            let dst = &mut data[(c * frames + f) * plane..(c * frames + f + 1) * plane];
            for (i, d) in dst.iter_mut().enumerate() {
                *d = value((base + i * spp + c) * bps);
            }
        }
    }
    Ok(VideoArray {
        channels: spp,
        frames,
        height: rows,
        width: columns,
        data,
    })
}

/// The clips [`infer`] runs on one video: the video resized to the model's input and the
/// starts of at most `worker.max_clips` evenly spaced clips.
struct ClipPlan {
    sampler: ClipSampler,
    resized: VideoArray,
    starts: Vec<usize>,
}

fn clip_plan(bundle: &Bundle, video: &VideoArray, worker: &Worker) -> Result<ClipPlan, String> {
    let spec = &bundle.manifest.model;
    let sampler = ClipSamplerConfig::new()
        .with_length(spec.input.clip_length)
        .with_period(spec.input.period)
        .init()
        .map_err(|e| e.to_string())?;
    let resized = resize_pad(video, spec.input.size);
    let starts = sampler.all_starts(resized.frames);
    let m = worker.max_clips;
    let starts: Vec<usize> = if m > 0 && m < starts.len() {
        (0..m)
            .map(|k| starts[k * (starts.len() - 1) / (m - 1).max(1)])
            .collect()
    } else {
        starts
    };
    Ok(ClipPlan {
        sampler,
        resized,
        starts,
    })
}

/// The clip starting at `start` before normalisation, grey repeated to the model's channels.
fn raw_clip(plan: &ClipPlan, start: usize) -> VideoArray {
    let mut clip = plan.sampler.extract(&plan.resized, start);
    if clip.channels == 1 {
        let mut data = Vec::with_capacity(clip.data.len() * MODEL_CHANNELS);
        for _ in 0..MODEL_CHANNELS {
            data.extend_from_slice(&clip.data);
        }
        clip.data = data;
        clip.channels = MODEL_CHANNELS;
    }
    clip
}

/// Applies the bundle's normalisation to a raw clip, in place.
fn normalise(bundle: &Bundle, clip: &mut VideoArray) -> Result<(), String> {
    bundle
        .manifest
        .model
        .input
        .normalization
        .apply(clip)
        .map_err(|e| e.to_string())
}

/// The middle one of the clips [`infer`] runs, before and after normalisation: the clip the
/// explanation secondary capture draws.
pub fn middle_clip(
    bundle: &Bundle,
    video: &VideoArray,
    worker: &Worker,
) -> Result<(VideoArray, VideoArray), String> {
    let plan = clip_plan(bundle, video, worker)?;
    let start = *plan
        .starts
        .get(plan.starts.len() / 2)
        .ok_or("the video is shorter than one clip")?;
    let raw = raw_clip(&plan, start);
    let mut input = raw.clone();
    normalise(bundle, &mut input)?;
    Ok((raw, input))
}

/// Runs the bundle on every clip (at most `worker.max_clips`, evenly spaced) and returns the
/// mean and spread of each output column.
pub fn infer(
    bundle: &Bundle,
    video: &VideoArray,
    worker: &Worker,
    device: &Device,
) -> Result<Prediction, String> {
    let spec = &bundle.manifest.model;
    let plan = clip_plan(bundle, video, worker)?;
    let names = spec.task.output_names();
    let dim = spec.task.output_dim();
    let mut sum = vec![0.0f64; names.len()];
    let mut sq = vec![0.0f64; names.len()];
    let mut n = 0usize;
    for batch in plan.starts.chunks(worker.batch_size.max(1)) {
        let mut clips = Vec::with_capacity(batch.len());
        for &s in batch {
            let mut clip = raw_clip(&plan, s);
            normalise(bundle, &mut clip)?;
            clips.push(clip);
        }
        let x = clips_to_tensor(&clips, device).map_err(|e| e.to_string())?;
        let raw = bundle
            .model
            .forward(x, None)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| format!("cannot read predictions: {e:?}"))?;
        for k in 0..batch.len() {
            let values = spec.task.interpret(&raw[k * dim..(k + 1) * dim]);
            for (j, v) in values.iter().enumerate().take(names.len()) {
                sum[j] += v;
                sq[j] += v * v;
            }
            n += 1;
        }
    }
    if n == 0 {
        return Err("no clips".into());
    }
    let nf = n as f64;
    let outputs = names
        .into_iter()
        .enumerate()
        .map(|(j, name)| {
            let mean = sum[j] / nf;
            Output {
                name,
                mean,
                std: (sq[j] / nf - mean * mean).max(0.0).sqrt(),
            }
        })
        .collect();
    Ok(Prediction { clips: n, outputs })
}

/// The thresholds the gate applies and where each came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateLimits {
    /// Evidential uncertainty limit (0: off).
    pub max_uncertainty: f64,
    /// Spread-across-clips limit (0: off).
    pub max_clip_spread: f64,
    /// `serve.toml` or `bundle` for the uncertainty limit.
    pub uncertainty_from: &'static str,
    /// `serve.toml` or `bundle` for the spread limit.
    pub spread_from: &'static str,
}

impl GateLimits {
    /// The route's limits where `serve.toml` sets them, else the bundle's recorded ones.
    pub fn resolve(qc: &Qc, bundle: Option<&bedside_ml::gate::GatePolicy>) -> Self {
        let pick = |route: Option<f64>, recorded: Option<f64>| match (route, recorded) {
            (Some(v), _) => (v, "serve.toml"),
            (None, Some(v)) => (v, "bundle"),
            (None, None) => (0.0, "none"),
        };
        let (max_uncertainty, uncertainty_from) =
            pick(qc.max_uncertainty, bundle.and_then(|g| g.max_uncertainty));
        let (max_clip_spread, spread_from) =
            pick(qc.max_clip_spread, bundle.and_then(|g| g.max_clip_spread));
        Self {
            max_uncertainty,
            max_clip_spread,
            uncertainty_from,
            spread_from,
        }
    }
}

/// The out-of-distribution gate: "I don't know" when the evidential uncertainty or the
/// spread across clips passes the limits.
pub fn gate(prediction: &Prediction, limits: &GateLimits) -> Option<Finding> {
    if limits.max_uncertainty > 0.0
        && let Some(u) = prediction.outputs.iter().find(|o| o.name == "uncertainty")
        && u.mean > limits.max_uncertainty
    {
        return Some(Finding {
            reason: Reason::Uncertainty,
            detail: format!(
                "uncertainty {:.3} > {} ({} threshold)",
                u.mean, limits.max_uncertainty, limits.uncertainty_from
            ),
        });
    }
    if limits.max_clip_spread > 0.0
        && let Some(o) = prediction
            .outputs
            .iter()
            .filter(|o| o.name != "uncertainty")
            .max_by(|a, b| a.std.total_cmp(&b.std))
        && o.std > limits.max_clip_spread
    {
        return Some(Finding {
            reason: Reason::ClipSpread,
            detail: format!(
                "{} spread {:.3} > {} ({} threshold)",
                o.name, o.std, limits.max_clip_spread, limits.spread_from
            ),
        });
    }
    None
}

/// Seconds since `t`.
pub fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bedside_ml::gate::GatePolicy;

    fn prediction(uncertainty: f64, spread: f64) -> Prediction {
        let output = |name: &str, mean: f64, std: f64| Output {
            name: name.into(),
            mean,
            std,
        };
        Prediction {
            clips: 4,
            outputs: vec![
                output("prob_0", 0.4, spread),
                output("prob_1", 0.6, spread),
                output("uncertainty", uncertainty, 0.9),
            ],
        }
    }

    fn recorded(u: Option<f64>, s: Option<f64>) -> GatePolicy {
        GatePolicy {
            max_uncertainty: u,
            max_clip_spread: s,
            chosen_by: "test".into(),
        }
    }

    #[test]
    fn the_bundle_threshold_applies_where_serve_toml_is_silent() {
        let qc = Qc::default();
        let policy = recorded(Some(0.5), Some(0.2));
        let limits = GateLimits::resolve(&qc, Some(&policy));
        assert_eq!(
            (limits.max_uncertainty, limits.uncertainty_from),
            (0.5, "bundle")
        );
        let finding = gate(&prediction(0.7, 0.01), &limits).map(|f| (f.reason, f.detail));
        assert_eq!(
            finding,
            Some((
                Reason::Uncertainty,
                "uncertainty 0.700 > 0.5 (bundle threshold)".to_string()
            ))
        );
        assert!(gate(&prediction(0.3, 0.01), &limits).is_none());
        let spread = gate(&prediction(0.3, 0.25), &limits).map(|f| f.reason);
        assert_eq!(spread, Some(Reason::ClipSpread));
    }

    #[test]
    fn serve_toml_overrides_and_zero_turns_a_limit_off() {
        let policy = recorded(Some(0.5), Some(0.2));
        let qc = Qc {
            max_uncertainty: Some(0.0),
            max_clip_spread: Some(0.3),
            ..Qc::default()
        };
        let limits = GateLimits::resolve(&qc, Some(&policy));
        assert_eq!(limits.max_uncertainty, 0.0);
        assert_eq!(
            (limits.max_clip_spread, limits.spread_from),
            (0.3, "serve.toml")
        );
        // The uncertainty limit is off; a spread of 0.25 is within serve.toml's 0.3.
        assert!(gate(&prediction(0.99, 0.25), &limits).is_none());
        // No limits anywhere: nothing is gated.
        let none = GateLimits::resolve(&Qc::default(), None);
        assert!(gate(&prediction(0.99, 0.9), &none).is_none());
    }
}
