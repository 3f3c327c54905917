//! Pictures of explanations: animated PNG overlays of a map on the video's frames, and the
//! temporal importance curves as SVG.

use std::io::Write;
use std::path::Path;

use bedside_ml::data::clips::VideoArray;

use crate::error::ExplainError;

/// Colour of a value in `[-1, 1]`: transparent near zero, red for positive and blue for
/// negative evidence; the returned alpha grows with `|v|`.
fn heat(v: f32) -> ([f32; 3], f32) {
    let a = v.abs().min(1.0);
    let colour = if v >= 0.0 {
        // black-body-like: red → yellow as the value grows
        [1.0, a.powf(0.7), 0.0]
    } else {
        [0.0, a.powf(0.7) * 0.6, 1.0]
    };
    (colour, 0.75 * a.sqrt())
}

/// The `q`-quantile of `|v|` over `values` (0 for an empty or all-zero input).
pub fn abs_quantile(values: impl Iterator<Item = f32>, q: f64) -> f32 {
    let mut v: Vec<f32> = values.map(f32::abs).filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    let k = ((v.len() - 1) as f64 * q).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    *x
}

/// How the frames of a video and a map become colours: the video min–max scaled to grey, the
/// map divided by the 0.99-quantile of its `|value|` over the drawn frames, blended with
/// [`heat`]'s colour and alpha.
struct Painter<'a> {
    video: &'a VideoArray,
    map: &'a VideoArray,
    lo: f32,
    span: f32,
    scale: f32,
}

impl<'a> Painter<'a> {
    fn new(
        video: &'a VideoArray,
        map: &'a VideoArray,
        frames: &[usize],
    ) -> Result<Self, ExplainError> {
        if frames.is_empty() {
            return Err(ExplainError::invalid("no frames to draw"));
        }
        if (video.height, video.width) != (map.height, map.width) {
            return Err(ExplainError::invalid(format!(
                "the map is {}×{}, the frames {}×{}",
                map.height, map.width, video.height, video.width
            )));
        }
        let plane = video.height * video.width;
        let (lo, hi) = video
            .data
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        let scale = abs_quantile(
            frames
                .iter()
                .filter(|&&f| f < map.frames)
                .flat_map(|&f| map.data[f * plane..(f + 1) * plane].iter().copied()),
            0.99,
        );
        let scale = if scale > 0.0 { scale } else { 1.0 };
        Ok(Self {
            video,
            map,
            lo,
            span,
            scale,
        })
    }

    /// Grey level in `[0, 1]` of pixel `p` of frame `f` (0 past the video's end).
    fn grey(&self, f: usize, p: usize) -> f32 {
        let v = self.video;
        if f >= v.frames {
            return 0.0;
        }
        let plane = v.height * v.width;
        let sum: f32 = (0..v.channels)
            .map(|c| v.data[(c * v.frames + f) * plane + p])
            .sum();
        ((sum / v.channels as f32 - self.lo) / self.span).clamp(0.0, 1.0)
    }

    /// The overlay's RGB bytes at pixel `p` of frame `f` on a pixel of grey level `grey`.
    fn overlay(&self, f: usize, p: usize, grey: f32) -> [u8; 3] {
        let plane = self.map.height * self.map.width;
        let value = if f < self.map.frames {
            self.map.data[f * plane + p] / self.scale
        } else {
            0.0
        };
        let (colour, alpha) = heat(value);
        colour.map(|c| (((1.0 - alpha) * grey + alpha * c).clamp(0.0, 1.0) * 255.0).round() as u8)
    }
}

/// The frames of `video` listed in `frames` with `map` overlaid (the right half of
/// [`write_overlay_apng`]'s picture): one buffer of `height × width × 3` interleaved RGB bytes
/// per frame.
pub fn overlay_frames(
    video: &VideoArray,
    map: &VideoArray,
    frames: &[usize],
) -> Result<Vec<Vec<u8>>, ExplainError> {
    let painter = Painter::new(video, map, frames)?;
    let plane = video.height * video.width;
    Ok(frames
        .iter()
        .map(|&f| {
            (0..plane)
                .flat_map(|p| painter.overlay(f, p, painter.grey(f, p)))
                .collect()
        })
        .collect())
}

/// Encode an animated PNG: the raw frames (`video`, any channel count, min–max scaled to
/// grey) on the left and the same frames with `map` overlaid on the right, one PNG frame per
/// entry of `frames` (video frame indices), `fps` frames per second.
pub fn write_overlay_apng(
    path: &Path,
    video: &VideoArray,
    map: &VideoArray,
    frames: &[usize],
    fps: u16,
) -> Result<(), ExplainError> {
    let painter = Painter::new(video, map, frames)?;
    let (h, w) = (video.height, video.width);
    let encode_error = |e: png::EncodingError| ExplainError::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, (2 * w) as u32, h as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Balanced);
        encoder
            .set_animated(frames.len() as u32, 0)
            .map_err(encode_error)?;
        encoder
            .set_frame_delay(1, fps.max(1))
            .map_err(encode_error)?;
        let mut writer = encoder.write_header().map_err(encode_error)?;
        let mut rgb = vec![0u8; 2 * w * h * 3];
        for &f in frames {
            for y in 0..h {
                for x in 0..w {
                    let p = y * w + x;
                    let grey = painter.grey(f, p);
                    let left = (y * 2 * w + x) * 3;
                    let right = (y * 2 * w + w + x) * 3;
                    rgb[left..left + 3].fill((grey * 255.0).round() as u8);
                    rgb[right..right + 3].copy_from_slice(&painter.overlay(f, p, grey));
                }
            }
            writer.write_image_data(&rgb).map_err(encode_error)?;
        }
        writer.finish().map_err(encode_error)?;
    }
    bedside_core::fsio::write_atomic(path, &bytes).map_err(ExplainError::io(path))
}

/// One curve of a temporal importance plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Legend.
    pub label: String,
    /// Value per video frame (`None`: not covered by any clip).
    pub values: Vec<Option<f32>>,
}

const PALETTE: [&str; 7] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draw temporal importance curves (each scaled to a maximum |value| of 1) against the frame
/// number as an SVG document.
pub fn temporal_svg(title: &str, curves: &[Curve]) -> String {
    let (width, height) = (640.0f64, 300.0f64);
    let (left, right, top, bottom) = (50.0, 170.0, 30.0, 40.0);
    let frames = curves
        .iter()
        .map(|c| c.values.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let px = |f: usize| left + (width - left - right) * f as f64 / (frames - 1) as f64;
    let py = |v: f64| top + (height - top - bottom) * (1.0 - (v + 1.0) / 2.0);
    let mut svg = String::new();
    let mut push = |s: String| {
        svg.push_str(&s);
        svg.push('\n');
    };
    push(format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    ));
    push(format!(
        r#"<rect width="{width}" height="{height}" fill="white"/><text x="{left}" y="18" font-size="13">{}</text>"#,
        escape(title)
    ));
    // Axes: zero line, frame ticks.
    push(format!(
        r##"<line x1="{left}" y1="{y0:.1}" x2="{x1:.1}" y2="{y0:.1}" stroke="#999"/><line x1="{left}" y1="{top}" x2="{left}" y2="{yb:.1}" stroke="#999"/>"##,
        y0 = py(0.0),
        x1 = px(frames - 1),
        yb = height - bottom
    ));
    for (v, label) in [(1.0, "+1"), (0.0, "0"), (-1.0, "−1")] {
        push(format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            left - 6.0,
            py(v) + 4.0
        ));
    }
    let step = (frames / 8).max(1);
    for f in (0..frames).step_by(step) {
        push(format!(
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{f}</text>"#,
            px(f),
            height - bottom + 16.0
        ));
    }
    push(format!(
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">video frame</text>"#,
        (left + width - right) / 2.0,
        height - 6.0
    ));
    for (i, curve) in curves.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let max = curve
            .values
            .iter()
            .flatten()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        let max = if max > 0.0 { f64::from(max) } else { 1.0 };
        // Uncovered frames break the line into segments.
        let mut segment: Vec<String> = Vec::new();
        let mut segments = Vec::new();
        for (f, v) in curve.values.iter().enumerate() {
            match v {
                Some(v) => segment.push(format!("{:.1},{:.1}", px(f), py(f64::from(*v) / max))),
                None if !segment.is_empty() => segments.push(std::mem::take(&mut segment)),
                None => {}
            }
        }
        if !segment.is_empty() {
            segments.push(segment);
        }
        for s in segments {
            if s.len() == 1 {
                let (x, y) = s[0].split_once(',').unwrap_or(("0", "0"));
                push(format!(
                    r#"<circle cx="{x}" cy="{y}" r="2" fill="{colour}"/>"#
                ));
            } else {
                push(format!(
                    r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                    s.join(" ")
                ));
            }
        }
        let ly = top + 14.0 * i as f64 + 6.0;
        push(format!(
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            width - right + 10.0,
            width - right + 28.0,
            width - right + 32.0,
            ly + 4.0,
            escape(&curve.label)
        ));
    }
    push("</svg>".into());
    svg
}

/// Write `text` atomically.
pub fn write_text(path: &Path, text: &str) -> Result<(), ExplainError> {
    bedside_core::fsio::write_atomic_with(path, |w| w.write_all(text.as_bytes()))
        .map_err(ExplainError::io(path))
}
