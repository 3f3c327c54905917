//! Resized copies of the arrays for training: S×S, aspect kept, padded.
//!
//! The native array stays the lossless primary; the copy is written beside it as
//! `<series>.<S>x<S>.npy` with a sidecar `<series>.<S>x<S>.json` ([`ResizedSidecar`]).
//!
//! 1. **Crop.** Ultrasound is first cropped to the bounding box of its scan area: the tissue
//!    regions of `SequenceOfUltrasoundRegions` (spatial format 2D; all declared regions when none
//!    is 2D) united with the sector detected from the cine ([`crate::scan_area::detect_sector`]),
//!    so the screen around the fan (and any text left on it) does not take up the training input.
//!    Other modalities keep the whole image.
//! 2. **Scale.** The crop's long side becomes S and the short side `round(S·short/long)` (at
//!    least 1), so each axis has its own exact factor `out/in` and the aspect ratio is kept to
//!    within half a pixel. Shrinking uses area averaging (each output pixel is the mean of the
//!    input area it covers, partial pixels weighted by their overlap, like OpenCV's `INTER_AREA`);
//!    enlarging uses bilinear interpolation with pixel centres at +0.5 (OpenCV `INTER_LINEAR`,
//!    PyTorch `align_corners=False`). The two axes are resampled separably.
//! 3. **Pad.** The content is centred on an S×S canvas of zeros (left and top padding are
//!    `(S − width) / 2` and `(S − height) / 2`, rounded down).
//!
//! Samples are rounded to the nearest integer and kept in the native dtype (`uint8` stays
//! `uint8`). The sidecar records the crop box, the factors, the padding and the new pixel
//! spacing (native spacing divided by the factor of each axis), so positions and lengths
//! measured on the copy map back to the native array and to millimetres.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::Serialize;

use crate::scan_area::{self, Rect};

/// Where the crop box came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CropSource {
    /// The declared regions united with the detected sector.
    RegionsAndSector,
    /// The declared regions only (no sector detected).
    Regions,
    /// The detected sector only (no regions declared).
    Sector,
    /// The whole image (not ultrasound, or no scan area found).
    Image,
}

/// The geometry of one resize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Crop box in native pixels, inclusive `[x0, y0, x1, y1]`.
    pub crop: Rect,
    /// Output side S.
    pub size: usize,
    /// Content width and height after scaling (before padding).
    pub content: (usize, usize),
    /// Padding on the left and on the top.
    pub pad: (usize, usize),
    /// Output pixels per input pixel, x then y.
    pub scale: (f64, f64),
}

impl Geometry {
    /// The geometry for cropping to `crop` and fitting into `size`×`size`.
    pub fn fit(crop: Rect, size: usize) -> Geometry {
        let size = size.max(1);
        let w = crop.x1.saturating_sub(crop.x0) + 1;
        let h = crop.y1.saturating_sub(crop.y0) + 1;
        let long = w.max(h) as f64;
        let side = |n: usize| ((n as f64 * size as f64 / long).round() as usize).clamp(1, size);
        let (cw, ch) = (side(w), side(h));
        Geometry {
            crop,
            size,
            content: (cw, ch),
            pad: ((size - cw) / 2, (size - ch) / 2),
            scale: (cw as f64 / w as f64, ch as f64 / h as f64),
        }
    }
}

/// Resampling weights of one axis: for each output index, the first input index and the
/// weights of the inputs from there (summing to 1).
fn axis_weights(n_in: usize, n_out: usize) -> Vec<(usize, Vec<f32>)> {
    let step = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|j| {
            if n_out <= n_in {
                // Area: the output pixel covers [j·step, (j+1)·step) of the input.
                let (a, b) = (j as f64 * step, ((j + 1) as f64 * step).min(n_in as f64));
                let first = a.floor() as usize;
                let last = (b.ceil() as usize).min(n_in);
                let w: Vec<f64> = (first..last)
                    .map(|x| ((x + 1) as f64).min(b) - (x as f64).max(a))
                    .map(|o| o.max(0.0))
                    .collect();
                let total: f64 = w.iter().sum::<f64>().max(f64::MIN_POSITIVE);
                (first, w.iter().map(|v| (v / total) as f32).collect())
            } else {
                // Bilinear with half-pixel centres, clamped at the borders.
                let c = ((j as f64 + 0.5) * step - 0.5).clamp(0.0, (n_in - 1) as f64);
                let x0 = c.floor() as usize;
                let t = c - x0 as f64;
                if x0 + 1 < n_in {
                    (x0, vec![(1.0 - t) as f32, t as f32])
                } else {
                    (x0, vec![1.0])
                }
            }
        })
        .collect()
}

/// Sample type of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// `uint8`.
    U8,
    /// `uint16`, little endian.
    U16,
    /// `int16`, little endian.
    I16,
}

impl Sample {
    fn bytes(self) -> usize {
        match self {
            Sample::U8 => 1,
            _ => 2,
        }
    }
    fn get(self, data: &[u8], i: usize) -> f32 {
        match self {
            Sample::U8 => f32::from(data[i]),
            Sample::U16 => f32::from(u16::from_le_bytes([data[2 * i], data[2 * i + 1]])),
            Sample::I16 => f32::from(i16::from_le_bytes([data[2 * i], data[2 * i + 1]])),
        }
    }
    fn put(self, out: &mut Vec<u8>, v: f32) {
        let r = (v + 0.5).floor();
        match self {
            Sample::U8 => out.push(r.clamp(0.0, 255.0) as u8),
            Sample::U16 => out.extend_from_slice(&(r.clamp(0.0, 65_535.0) as u16).to_le_bytes()),
            Sample::I16 => {
                out.extend_from_slice(&(r.clamp(-32_768.0, 32_767.0) as i16).to_le_bytes())
            }
        }
    }
}

/// Resizes `frames` frames of `rows`×`columns`×`spp` interleaved samples (little endian) to
/// `g.size`×`g.size`×`spp`. Returns `None` when the buffer is too short or the crop box lies
/// outside the image.
pub fn resize_frames(
    data: &[u8],
    sample: Sample,
    frames: usize,
    rows: usize,
    columns: usize,
    spp: usize,
    g: &Geometry,
) -> Option<Vec<u8>> {
    let frame_samples = rows * columns * spp;
    if data.len() < frames * frame_samples * sample.bytes()
        || g.crop.x1 >= columns
        || g.crop.y1 >= rows
        || g.crop.x0 > g.crop.x1
        || g.crop.y0 > g.crop.y1
    {
        return None;
    }
    let (w, h) = (g.crop.x1 - g.crop.x0 + 1, g.crop.y1 - g.crop.y0 + 1);
    let (cw, ch) = g.content;
    let wx = axis_weights(w, cw);
    let wy = axis_weights(h, ch);
    let s = g.size;
    let mut out = Vec::with_capacity(frames * s * s * spp * sample.bytes());
    let mut tmp = vec![0f32; h * cw * spp];
    let mut row = vec![0f32; cw * spp];
    for f in 0..frames {
        let base = f * frame_samples;
        // Horizontal pass over the crop's rows.
        for y in 0..h {
            let line = base + ((g.crop.y0 + y) * columns + g.crop.x0) * spp;
            for (j, (first, ws)) in wx.iter().enumerate() {
                for k in 0..spp {
                    let mut acc = 0f32;
                    for (t, wt) in ws.iter().enumerate() {
                        acc += wt * sample.get(data, line + (first + t) * spp + k);
                    }
                    tmp[(y * cw + j) * spp + k] = acc;
                }
            }
        }
        // Vertical pass, written with the padding.
        let zero = |out: &mut Vec<u8>, n: usize| {
            for _ in 0..n {
                sample.put(out, 0.0);
            }
        };
        zero(&mut out, g.pad.1 * s * spp);
        for (first, ws) in &wy {
            row.fill(0.0);
            for (t, wt) in ws.iter().enumerate() {
                let src = &tmp[(first + t) * cw * spp..(first + t + 1) * cw * spp];
                for (r, v) in row.iter_mut().zip(src) {
                    *r += wt * v;
                }
            }
            zero(&mut out, g.pad.0 * spp);
            for v in &row {
                sample.put(&mut out, *v);
            }
            zero(&mut out, (s - g.pad.0 - cw) * spp);
        }
        zero(&mut out, (s - g.pad.1 - ch) * s * spp);
    }
    Some(out)
}

/// One array in memory: `frames` frames of `rows`×`columns`×`spp` interleaved samples, little
/// endian, as the curated `.npy` arrays hold them.
#[derive(Debug, Clone, Copy)]
pub struct Frames<'a> {
    /// The samples.
    pub data: &'a [u8],
    /// Their type.
    pub sample: Sample,
    /// Frames.
    pub frames: usize,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub columns: usize,
    /// Samples per pixel (1 or 3).
    pub spp: usize,
}

/// The training copy of an array, exactly as `bedside curate --resize` writes it: ultrasound
/// (`ultrasound`) is cropped to the bounding box of the declared tissue `regions` united with
/// the sector detected from the frames, other images keep the whole frame; the crop is fitted
/// into `size`×`size`. Returns the samples, the geometry and where the crop came from, or
/// `None` when the buffer is too short for the stated shape.
pub fn training_copy(
    frames: &Frames<'_>,
    regions: &[Rect],
    ultrasound: bool,
    size: usize,
) -> Option<(Vec<u8>, Geometry, CropSource)> {
    let Frames {
        data,
        sample,
        frames,
        rows,
        columns,
        spp,
    } = *frames;
    if data.len() < frames * rows * columns * spp * sample.bytes() {
        return None;
    }
    let (crop, source) = if ultrasound {
        let luma = luminance(data, sample, frames, rows * columns, spp);
        let refs: Vec<&[u8]> = luma.iter().map(Vec::as_slice).collect();
        let hull = scan_area::detect_sector(&refs, rows, columns);
        scan_box(regions, hull.as_deref(), rows, columns)
    } else {
        scan_box(&[], None, rows, columns)
    };
    let geometry = Geometry::fit(crop, size);
    let resized = resize_frames(data, sample, frames, rows, columns, spp, &geometry)?;
    Some((resized, geometry, source))
}

/// The declared tissue regions (spatial format 2D), or every declared region when none is 2D.
pub fn tissue_regions(obj: &InMemDicomObject, rows: usize, columns: usize) -> Vec<Rect> {
    let all = scan_area::declared_regions(obj, rows, columns);
    let formats: Vec<Option<u16>> = obj
        .element(tags::SEQUENCE_OF_ULTRASOUND_REGIONS)
        .ok()
        .and_then(|e| e.items())
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    item.element(tags::REGION_SPATIAL_FORMAT)
                        .ok()
                        .and_then(|e| e.to_int::<u16>().ok())
                })
                .collect()
        })
        .unwrap_or_default();
    // declared_regions skips malformed items, so match them back by their rectangles only when
    // nothing was skipped; otherwise keep all of them (a larger crop is the safe side).
    if formats.len() != all.len() {
        return all;
    }
    let tissue: Vec<Rect> = all
        .iter()
        .zip(&formats)
        .filter(|(_, f)| **f == Some(1))
        .map(|(r, _)| *r)
        .collect();
    if tissue.is_empty() { all } else { tissue }
}

/// The bounding box of the scan area: `regions` united with the detected sector's `hull`.
pub fn scan_box(
    regions: &[Rect],
    hull: Option<&[(f64, f64)]>,
    rows: usize,
    columns: usize,
) -> (Rect, CropSource) {
    let full = Rect {
        x0: 0,
        y0: 0,
        x1: columns.saturating_sub(1),
        y1: rows.saturating_sub(1),
    };
    let mut bbox: Option<Rect> = None;
    let mut grow = |r: Rect| {
        bbox = Some(match bbox {
            None => r,
            Some(b) => Rect {
                x0: b.x0.min(r.x0),
                y0: b.y0.min(r.y0),
                x1: b.x1.max(r.x1),
                y1: b.y1.max(r.y1),
            },
        });
    };
    for r in regions {
        grow(*r);
    }
    let hull = hull.filter(|h| h.len() >= 3);
    if let Some(h) = hull {
        let clampx = |v: f64| (v.max(0.0) as usize).min(full.x1);
        let clampy = |v: f64| (v.max(0.0) as usize).min(full.y1);
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for &(x, y) in h {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        // Hull vertices are pixel corners: the last pixel inside starts one before the edge.
        grow(Rect {
            x0: clampx(x0.floor()),
            y0: clampy(y0.floor()),
            x1: clampx(x1.ceil() - 1.0),
            y1: clampy(y1.ceil() - 1.0),
        });
    }
    let source = match (regions.is_empty(), hull.is_some()) {
        (false, true) => CropSource::RegionsAndSector,
        (false, false) => CropSource::Regions,
        (true, true) => CropSource::Sector,
        (true, false) => CropSource::Image,
    };
    (bbox.unwrap_or(full), source)
}

/// 8-bit luminance of each frame of an interleaved array, for sector detection.
pub fn luminance(
    data: &[u8],
    sample: Sample,
    frames: usize,
    plane: usize,
    spp: usize,
) -> Vec<Vec<u8>> {
    let to8 = |v: f32| match sample {
        Sample::U8 => v as u8,
        Sample::U16 => (v / 256.0) as u8,
        Sample::I16 => ((v + 32_768.0) / 256.0) as u8,
    };
    (0..frames)
        .map(|f| {
            (0..plane)
                .map(|i| {
                    let at = (f * plane + i) * spp;
                    let sum: f32 = (0..spp).map(|k| sample.get(data, at + k)).sum();
                    to8(sum / spp as f32)
                })
                .collect()
        })
        .collect()
}

/// The sidecar of a resized copy.
#[derive(Debug, Clone, Serialize)]
pub struct ResizedSidecar {
    /// The resized array's file name.
    pub array: String,
    /// The native array it was made from.
    pub source_array: String,
    /// Shape of the resized array.
    pub shape: Vec<usize>,
    /// NumPy dtype (the native one).
    pub dtype: &'static str,
    /// Crop box in native pixels, inclusive `[x0, y0, x1, y1]`.
    pub crop_box: [usize; 4],
    /// Where the crop box came from.
    pub crop_source: CropSource,
    /// Output pixels per native pixel, x then y.
    pub scale: (f64, f64),
    /// Width and height of the image inside the padding.
    pub content_size: (usize, usize),
    /// Padding on the left and top (zeros).
    pub padding_left_top: (usize, usize),
    /// `area` (shrinking) or `bilinear` (enlarging).
    pub interpolation: &'static str,
    /// New pixel spacing (row, column) in millimetres.
    pub pixel_spacing_mm: Option<(f64, f64)>,
    /// New ultrasound physical deltas (x, y) and their unit code.
    pub us_physical_delta: Option<(f64, f64, u16)>,
    /// Frame time in milliseconds (unchanged).
    pub frame_time_ms: Option<f64>,
}

impl ResizedSidecar {
    /// The sidecar for `g`, from the native array's spacing.
    pub fn new(
        g: &Geometry,
        source: CropSource,
        native: &crate::arrays::Sidecar,
        array: String,
        shape: Vec<usize>,
    ) -> ResizedSidecar {
        let (sx, sy) = g.scale;
        ResizedSidecar {
            array,
            source_array: native.array.clone(),
            shape,
            dtype: native.dtype,
            crop_box: [g.crop.x0, g.crop.y0, g.crop.x1, g.crop.y1],
            crop_source: source,
            scale: g.scale,
            content_size: g.content,
            padding_left_top: g.pad,
            interpolation: if sx <= 1.0 && sy <= 1.0 {
                "area"
            } else {
                "bilinear"
            },
            pixel_spacing_mm: native.pixel_spacing_mm.map(|(r, c)| (r / sy, c / sx)),
            us_physical_delta: native
                .us_physical_delta
                .map(|(dx, dy, u)| (dx / sx, dy / sy, u)),
            frame_time_ms: native.frame_time_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_keeps_the_aspect_and_centres() {
        let g = Geometry::fit(
            Rect {
                x0: 10,
                y0: 20,
                x1: 209,
                y1: 119,
            },
            112,
        );
        assert_eq!(g.content, (112, 56));
        assert_eq!(g.pad, (0, 28));
        assert!((g.scale.0 - 112.0 / 200.0).abs() < 1e-12);
        assert!((g.scale.1 - 56.0 / 100.0).abs() < 1e-12);
    }

    #[test]
    fn area_weights_average_whole_blocks() {
        let w = axis_weights(6, 3);
        assert_eq!(w[1], (2, vec![0.5, 0.5]));
        let w = axis_weights(3, 2);
        assert_eq!(w[0].0, 0);
        assert!((w[0].1[0] - 2.0 / 3.0).abs() < 1e-6 && (w[0].1[1] - 1.0 / 3.0).abs() < 1e-6);
        for (_, ws) in axis_weights(37, 11) {
            assert!((ws.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn constant_images_stay_constant_and_padding_is_zero() {
        let (rows, cols) = (30, 50);
        let data = vec![200u8; 2 * rows * cols * 3];
        let crop = Rect {
            x0: 5,
            y0: 0,
            x1: 44,
            y1: 19,
        };
        for size in [16, 112] {
            let g = Geometry::fit(crop, size);
            let out = resize_frames(&data, Sample::U8, 2, rows, cols, 3, &g).unwrap();
            assert_eq!(out.len(), 2 * size * size * 3);
            let at = |y: usize, x: usize| out[(y * size + x) * 3];
            assert_eq!(at(size / 2, size / 2), 200);
            assert_eq!(at(0, size / 2), 0, "top padding");
        }
    }

    #[test]
    fn sixteen_bit_samples_keep_their_sign() {
        let data: Vec<u8> = [-1000i16, -1000, 3000, 3000]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let g = Geometry::fit(
            Rect {
                x0: 0,
                y0: 0,
                x1: 3,
                y1: 0,
            },
            2,
        );
        let out = resize_frames(&data, Sample::I16, 1, 1, 4, 1, &g).unwrap();
        let v: Vec<i16> = out
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(v, vec![-1000, 3000, 0, 0]);
    }

    #[test]
    fn scan_box_unites_regions_and_sector() {
        let regions = [Rect {
            x0: 10,
            y0: 10,
            x1: 20,
            y1: 20,
        }];
        let hull = [(30.0, 5.0), (40.0, 30.0), (15.0, 30.0)];
        let (b, s) = scan_box(&regions, Some(&hull), 100, 100);
        assert_eq!(
            b,
            Rect {
                x0: 10,
                y0: 5,
                x1: 39,
                y1: 29
            }
        );
        assert_eq!(s, CropSource::RegionsAndSector);
        assert_eq!(scan_box(&[], None, 10, 8).1, CropSource::Image);
        assert_eq!(scan_box(&[], None, 10, 8).0.x1, 7);
    }
}
