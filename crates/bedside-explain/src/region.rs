//! Region masks for occlusion tests: a clinician's region (the left ventricle) in the
//! coordinates of the clip the model sees, masks of equal area placed at random, and clips
//! with a region filled.
//!
//! A mask is read from a `.npy` or `.npz` file (uint8/bool/float, `[rows, columns]` or
//! `[frames, rows, columns]`; frames are united, so the region covers the structure over the
//! whole cycle and its shape cannot leak the motion it hides). It may be drawn on
//!
//! - the array the model reads (the manifest's array, or its resized copy), or
//! - the native array a resized copy was made from: the copy's sidecar JSON (`crop_box`, written
//!   by `bedside curate --resize`) maps it through the same crop, scale and padding,
//!
//! and is then resized and padded to the model's input side exactly as the frames are
//! ([`bedside_ml::data::loader::resize_pad`]) and thresholded at one half.

use std::io::Read as _;
use std::path::Path;

use bedside_core::rng::Rng;
use bedside_ml::data::clips::VideoArray;
use bedside_ml::data::loader::resize_pad;
use bedside_ml::data::npy::{NpyArray, parse_npy};
use serde::{Deserialize, Serialize};

use crate::error::ExplainError;

/// A static region of a `height × width` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionMask {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Row-major, `true` inside.
    pub inside: Vec<bool>,
}

impl RegionMask {
    /// An empty mask.
    pub fn empty(height: usize, width: usize) -> Self {
        Self {
            height,
            width,
            inside: vec![false; height * width],
        }
    }

    /// Pixels inside.
    pub fn area(&self) -> usize {
        self.inside.iter().filter(|&&v| v).count()
    }

    /// Share of the frame inside.
    pub fn area_share(&self) -> f64 {
        self.area() as f64 / (self.height * self.width).max(1) as f64
    }

    /// Pixels inside both masks.
    pub fn overlap(&self, other: &RegionMask) -> usize {
        self.inside
            .iter()
            .zip(&other.inside)
            .filter(|(a, b)| **a && **b)
            .count()
    }

    /// Grown by `radius` pixels (square neighbourhood).
    pub fn dilate(&self, radius: usize) -> Self {
        if radius == 0 {
            return self.clone();
        }
        let (h, w) = (self.height, self.width);
        let mut out = vec![false; h * w];
        for y in 0..h {
            for x in 0..w {
                if !self.inside[y * w + x] {
                    continue;
                }
                for yy in y.saturating_sub(radius)..(y + radius + 1).min(h) {
                    for xx in x.saturating_sub(radius)..(x + radius + 1).min(w) {
                        out[yy * w + xx] = true;
                    }
                }
            }
        }
        Self {
            height: h,
            width: w,
            inside: out,
        }
    }

    /// Bounding box `(y0, x0, y1, x1)` (inclusive) of the pixels inside, if any.
    pub fn bounding_box(&self) -> Option<(usize, usize, usize, usize)> {
        let mut b: Option<(usize, usize, usize, usize)> = None;
        for (i, _) in self.inside.iter().enumerate().filter(|(_, v)| **v) {
            let (y, x) = (i / self.width, i % self.width);
            b = Some(match b {
                None => (y, x, y, x),
                Some((y0, x0, y1, x1)) => (y0.min(y), x0.min(x), y1.max(y), x1.max(x)),
            });
        }
        b
    }

    /// The mask moved by `(dy, dx)`; pixels moved outside the frame are dropped.
    pub fn shifted(&self, dy: isize, dx: isize) -> Self {
        let (h, w) = (self.height as isize, self.width as isize);
        let mut out = Self::empty(self.height, self.width);
        for (i, _) in self.inside.iter().enumerate().filter(|(_, v)| **v) {
            let (y, x) = (
                (i / self.width) as isize + dy,
                (i % self.width) as isize + dx,
            );
            if (0..h).contains(&y) && (0..w).contains(&x) {
                out.inside[(y * w + x) as usize] = true;
            }
        }
        out
    }

    /// The pixels of a raw (not normalised) video that ever carry signal: the scan sector,
    /// not the padding or the black screen around it.
    pub fn signal(video: &VideoArray) -> Self {
        let plane = video.height * video.width;
        let mut inside = vec![false; plane];
        for (i, v) in video.data.iter().enumerate() {
            if *v > 0.5 {
                inside[i % plane.max(1)] = true;
            }
        }
        Self {
            height: video.height,
            width: video.width,
            inside,
        }
    }
}

/// How an occluded region is filled, in model-input units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RegionFill {
    /// Zero: the training mean intensity (Captum's default occlusion baseline).
    #[default]
    TrainingMean,
    /// A constant in model-input units.
    Constant {
        /// The value.
        value: f32,
    },
}

impl RegionFill {
    fn value(self) -> f32 {
        match self {
            RegionFill::TrainingMean => 0.0,
            RegionFill::Constant { value } => value,
        }
    }
}

/// Fill `region` in every frame and channel of a normalised clip.
pub fn fill_region(clip: &VideoArray, region: &RegionMask, fill: RegionFill) -> VideoArray {
    let mut out = clip.clone();
    let plane = clip.height * clip.width;
    if region.height != clip.height || region.width != clip.width || plane == 0 {
        return out;
    }
    let v = fill.value();
    for frame in out.data.chunks_exact_mut(plane) {
        for (d, &m) in frame.iter_mut().zip(&region.inside) {
            if m {
                *d = v;
            }
        }
    }
    out
}

/// Read a mask array from `.npy`, or from `.npz` (member `member`, else `lv`, else the first).
pub fn read_mask_file(path: &Path, member: Option<&str>) -> Result<NpyArray, ExplainError> {
    let bytes = std::fs::read(path).map_err(ExplainError::io(path))?;
    let bad =
        |message: String| ExplainError::invalid(format!("mask file {}: {message}", path.display()));
    if bytes.starts_with(b"PK") {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| bad(format!("not a readable .npz: {e}")))?;
        let names: Vec<String> = zip
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .collect();
        let wanted = match member {
            Some(m) => format!("{m}.npy"),
            None if names.iter().any(|n| n == "lv.npy") => "lv.npy".into(),
            None => names
                .iter()
                .find(|n| n.ends_with(".npy"))
                .cloned()
                .ok_or_else(|| bad("the archive holds no .npy member".into()))?,
        };
        let mut file = zip.by_name(&wanted).map_err(|_| {
            bad(format!(
                "no member `{wanted}` (members: {})",
                names.join(", ")
            ))
        })?;
        let mut inner = Vec::new();
        file.read_to_end(&mut inner)
            .map_err(|e| bad(format!("cannot inflate `{wanted}`: {e}")))?;
        parse_npy(&inner).map_err(bad)
    } else {
        parse_npy(&bytes).map_err(bad)
    }
}

/// The union over frames of a `[rows, columns]`, `[frames, rows, columns]` or
/// `[frames, rows, columns, 1]` mask (non-zero = inside), as a float plane.
fn union_plane(mask: &NpyArray) -> Result<(usize, usize, Vec<f32>), ExplainError> {
    let (frames, h, w) = match mask.shape.as_slice() {
        &[h, w] => (1, h, w),
        &[f, h, w] | &[f, h, w, 1] => (f, h, w),
        other => {
            return Err(ExplainError::invalid(format!(
                "a mask must be [rows, columns] or [frames, rows, columns], got {other:?}"
            )));
        }
    };
    let plane = h * w;
    if plane == 0 || frames == 0 || mask.data.len() != frames * plane {
        return Err(ExplainError::invalid(format!(
            "an empty or inconsistent mask of shape {:?}",
            mask.shape
        )));
    }
    let mut out = vec![0.0f32; plane];
    for (i, v) in mask.data.iter().enumerate() {
        if *v != 0.0 && v.is_finite() {
            out[i % plane] = 1.0;
        }
    }
    Ok((h, w, out))
}

fn plane_video(h: usize, w: usize, data: Vec<f32>) -> VideoArray {
    VideoArray {
        channels: 1,
        frames: 1,
        height: h,
        width: w,
        data,
    }
}

fn threshold(v: &VideoArray) -> RegionMask {
    RegionMask {
        height: v.height,
        width: v.width,
        inside: v.data.iter().map(|&x| x >= 0.5).collect(),
    }
}

/// The crop box and side of a resized copy, from its sidecar JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyGeometry {
    /// Crop box in native pixels, inclusive `[x0, y0, x1, y1]`.
    pub crop_box: [usize; 4],
    /// Side of the copy.
    pub side: usize,
}

impl CopyGeometry {
    /// Read the sidecar beside a resized copy (`<name>.<S>x<S>.json`), if there is one.
    pub fn beside(array: &Path) -> Option<Self> {
        let text = std::fs::read(array.with_extension("json")).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
        let b = v.get("crop_box")?.as_array()?;
        let crop: Vec<usize> = b
            .iter()
            .filter_map(|x| x.as_u64().map(|x| x as usize))
            .collect();
        let shape = v.get("shape")?.as_array()?;
        let side = shape.get(1)?.as_u64()? as usize;
        (crop.len() == 4 && crop[0] <= crop[2] && crop[1] <= crop[3] && side > 0).then_some(Self {
            crop_box: [crop[0], crop[1], crop[2], crop[3]],
            side,
        })
    }
}

/// Map a mask onto the model input (`size × size`) of a study whose array is `array_shape`
/// (`[frames, rows, columns(, channels)]`), through `copy` when the mask is drawn on the native
/// array the copy was made from.
pub fn mask_to_input(
    mask: &NpyArray,
    array_shape: &[usize],
    copy: Option<CopyGeometry>,
    size: usize,
) -> Result<RegionMask, ExplainError> {
    let (h, w, data) = union_plane(mask)?;
    let (ah, aw) = match array_shape {
        [_, h, w] | [_, h, w, _] => (*h, *w),
        other => {
            return Err(ExplainError::invalid(format!(
                "the study's array has shape {other:?}"
            )));
        }
    };
    let on_array = if (h, w) == (ah, aw) {
        plane_video(h, w, data)
    } else if let Some(g) = copy
        && g.side == ah
        && g.side == aw
        && g.crop_box[2] < w
        && g.crop_box[3] < h
    {
        let [x0, y0, x1, y1] = g.crop_box;
        let (cw, ch) = (x1 - x0 + 1, y1 - y0 + 1);
        let mut crop = Vec::with_capacity(cw * ch);
        for y in y0..=y1 {
            crop.extend_from_slice(&data[y * w + x0..=y * w + x1]);
        }
        resize_pad(&plane_video(ch, cw, crop), g.side)
    } else {
        return Err(ExplainError::invalid(format!(
            "a mask of {h}×{w} fits neither the array ({ah}×{aw}) nor, through a resized copy's sidecar, its native array"
        )));
    };
    Ok(threshold(&resize_pad(&on_array, size)))
}

/// Settings of the random control masks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementOptions {
    /// Masks per study.
    pub count: usize,
    /// Largest share of a control mask that may overlap the region.
    pub max_overlap: f64,
    /// Smallest share of a control mask that must lie on signal (the scan sector).
    pub min_signal: f64,
}

impl Default for PlacementOptions {
    fn default() -> Self {
        Self {
            count: 10,
            max_overlap: 0.0,
            min_signal: 0.9,
        }
    }
}

/// One control mask.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The mask.
    pub mask: RegionMask,
    /// Shift of the region, rows then columns.
    pub shift: (isize, isize),
    /// Share overlapping the region.
    pub overlap: f64,
    /// Share on signal.
    pub on_signal: f64,
}

/// `count` copies of `region` moved to random places (equal shape and area; seeded): every
/// shift that keeps the whole region in the frame is a candidate; candidates with at most
/// `max_overlap` of the region and at least `min_signal` on `signal` are drawn without
/// replacement (with replacement when there are fewer than `count`). When no shift meets both
/// conditions, the signal condition is dropped, then the overlap condition.
pub fn random_placements(
    region: &RegionMask,
    signal: &RegionMask,
    options: &PlacementOptions,
    rng: &mut Rng,
) -> Vec<Placement> {
    let Some((y0, x0, y1, x1)) = region.bounding_box() else {
        return Vec::new();
    };
    let area = region.area() as f64;
    let pixels: Vec<(isize, isize)> = region
        .inside
        .iter()
        .enumerate()
        .filter(|(_, v)| **v)
        .map(|(i, _)| ((i / region.width) as isize, (i % region.width) as isize))
        .collect();
    let w = region.width as isize;
    let mut candidates: Vec<((isize, isize), f64, f64)> = Vec::new();
    for dy in -(y0 as isize)..(region.height - y1) as isize {
        for dx in -(x0 as isize)..(region.width - x1) as isize {
            if dy == 0 && dx == 0 {
                continue;
            }
            let (mut overlap, mut on) = (0usize, 0usize);
            for &(y, x) in &pixels {
                let j = ((y + dy) * w + x + dx) as usize;
                overlap += usize::from(region.inside[j]);
                on += usize::from(signal.inside[j]);
            }
            candidates.push(((dy, dx), overlap as f64 / area, on as f64 / area));
        }
    }
    let tiers = [
        (options.max_overlap, options.min_signal),
        (options.max_overlap, 0.0),
        (1.0, 0.0),
    ];
    let pool: Vec<&((isize, isize), f64, f64)> = tiers
        .iter()
        .map(|&(o, s)| {
            candidates
                .iter()
                .filter(|c| c.1 <= o + 1e-12 && c.2 >= s - 1e-12)
                .collect::<Vec<_>>()
        })
        .find(|p| !p.is_empty())
        .unwrap_or_default();
    if pool.is_empty() {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..pool.len()).collect();
    // Partial Fisher–Yates: the first `count` positions become a random sample.
    let mut picks = Vec::with_capacity(options.count);
    for k in 0..options.count {
        let i = if k < order.len() {
            let j = k + rng.below((order.len() - k) as u64) as usize;
            order.swap(k, j);
            order[k]
        } else {
            rng.below(pool.len() as u64) as usize
        };
        picks.push(i);
    }
    picks
        .into_iter()
        .map(|i| {
            let &((dy, dx), overlap, on_signal) = pool[i];
            Placement {
                mask: region.shifted(dy, dx),
                shift: (dy, dx),
                overlap,
                on_signal,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn square(h: usize, w: usize, y: usize, x: usize, s: usize) -> RegionMask {
        let mut m = RegionMask::empty(h, w);
        for yy in y..y + s {
            for xx in x..x + s {
                m.inside[yy * w + xx] = true;
            }
        }
        m
    }

    #[test]
    fn placements_keep_the_area_and_avoid_the_region() {
        let region = square(20, 20, 2, 3, 4);
        let all = RegionMask {
            height: 20,
            width: 20,
            inside: vec![true; 400],
        };
        let mut rng = Rng::seed_from(3);
        let p = random_placements(&region, &all, &PlacementOptions::default(), &mut rng);
        assert_eq!(p.len(), 10);
        for q in &p {
            assert_eq!(q.mask.area(), 16);
            assert_eq!(q.mask.overlap(&region), 0);
            assert_eq!(q.overlap, 0.0);
        }
        // Distinct shifts (drawn without replacement).
        let mut shifts: Vec<_> = p.iter().map(|q| q.shift).collect();
        shifts.sort();
        shifts.dedup();
        assert_eq!(shifts.len(), 10);
        // Seeded: the same draw again.
        let again = random_placements(
            &region,
            &all,
            &PlacementOptions::default(),
            &mut Rng::seed_from(3),
        );
        assert_eq!(p, again);
    }

    #[test]
    fn placements_stay_on_signal() {
        let region = square(20, 20, 0, 0, 3);
        // Signal only in the right half.
        let mut signal = RegionMask::empty(20, 20);
        for y in 0..20 {
            for x in 10..20 {
                signal.inside[y * 20 + x] = true;
            }
        }
        let mut rng = Rng::seed_from(1);
        let p = random_placements(&region, &signal, &PlacementOptions::default(), &mut rng);
        for q in &p {
            assert!(q.on_signal >= 0.9);
            let (_, x0, _, _) = q.mask.bounding_box().unwrap();
            assert!(x0 >= 10, "{:?}", q.shift);
        }
    }

    #[test]
    fn native_masks_follow_the_copy_geometry() {
        // Native 40 rows × 80 columns; crop box x 20..59, y 0..39 (40×40) → copy side 20
        // (factor 1/2) → input side 10 (factor 1/2). A native square at rows 8..15, columns
        // 28..35 lands at copy rows 4..7, columns 4..7 and input rows 2..3, columns 2..3.
        let mut data = vec![0.0f32; 3 * 40 * 80];
        for f in 0..3 {
            for y in 8..16 {
                for x in 28..36 {
                    data[f * 3200 + y * 80 + x] = 1.0;
                }
            }
        }
        let mask = NpyArray {
            shape: vec![3, 40, 80],
            data,
        };
        let copy = CopyGeometry {
            crop_box: [20, 0, 59, 39],
            side: 20,
        };
        let m = mask_to_input(&mask, &[5, 20, 20], Some(copy), 10).unwrap();
        let want = square(10, 10, 2, 2, 2);
        assert_eq!(m, want);
        // A mask already on the array is only resized.
        let on_array = NpyArray {
            shape: vec![20, 20],
            data: square(20, 20, 4, 4, 4)
                .inside
                .iter()
                .map(|&b| f32::from(u8::from(b)))
                .collect(),
        };
        assert_eq!(
            mask_to_input(&on_array, &[5, 20, 20], None, 10).unwrap(),
            want
        );
        // Neither: an error.
        assert!(mask_to_input(&mask, &[5, 20, 20], None, 10).is_err());
    }

    #[test]
    fn fill_and_dilate() {
        let region = square(4, 4, 1, 1, 1);
        assert_eq!(region.dilate(1).area(), 9);
        let clip = VideoArray {
            channels: 3,
            frames: 2,
            height: 4,
            width: 4,
            data: vec![1.0; 96],
        };
        let out = fill_region(&clip, &region, RegionFill::TrainingMean);
        assert_eq!(out.data.iter().filter(|&&v| v == 0.0).count(), 6);
        assert_eq!(out.data[5], 0.0);
    }
}
