//! Burned-in text anywhere in the image, for modalities without a scan area (CT, MR, XA, CR,
//! DX, MG, NM, PT, SC, OT, …): read the text with Tesseract and mask the boxes that the policy
//! selects, in every frame.
//!
//! Scanners and workstations burn annotations at the extreme of the display range, so the image
//! is windowed to 8 bits for the OCR only (the frame's full range; MONOCHROME1 inverted so that
//! text reads as it displays) and pixels near the bright end are taken as text candidates. Two
//! readings are combined: each candidate line, cut out of an image that holds only the
//! candidates and read upscaled (small fonts over tissue), and the whole frame at native size
//! (text drawn at mid grey). The first frame is read, and again every frame whose candidate
//! pixels differ from the last frame read (the overlay changed); the union of the boxes found is
//! masked in every frame, so a frame never differs from its neighbours in what it hides.
//!
//! Masked boxes are filled with what displays as black: the smallest stored value of the object
//! (MONOCHROME2), the largest (MONOCHROME1), black RGB/YBR samples or the darkest palette entry.
//! When nothing is masked the object is untouched and keeps its transfer syntax; otherwise the
//! pixel data is written uncompressed (see [`crate::pixels`]), never re-encoded lossy.

use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_pixeldata::PlanarConfiguration;
use dicom_pixeldata::{PhotometricInterpretation, PixelDecoder, PixelRepresentation};

use crate::ocr::{DenyList, TextPolicy, Word};
use crate::pixels::{CleanOutcome, PixelError};
use crate::scan_area::Rect;

/// Settings of the text pass.
#[derive(Debug, Clone)]
pub struct TextOptions {
    /// Identifiers of the file (built from its header before de-identification).
    pub deny: DenyList,
    /// Which words are masked.
    pub policy: TextPolicy,
    /// Most frames read per object; a cine whose overlay changes more often than this is read
    /// at the first frame and at the first frames of its changes until the budget is spent.
    pub max_ocr_runs: usize,
    /// Grey level (0–255, after windowing) from which a pixel is a text candidate.
    pub candidate_level: u8,
    /// Smallest Tesseract confidence (0–100) of a word read from the whole frame for it to
    /// count; words read from candidate lines always count.
    pub min_confidence: f32,
}

impl TextOptions {
    /// The defaults for a file's deny list and a policy.
    pub fn new(deny: DenyList, policy: TextPolicy) -> TextOptions {
        TextOptions {
            deny,
            policy,
            max_ocr_runs: 12,
            candidate_level: 200,
            min_confidence: 50.0,
        }
    }
}

/// The text policy for one object: the profile's rule for its modality, `--ocr` from the
/// command line (`None` = off everywhere, `AllText` = every word where the profile reads at
/// all), and BurnedInAnnotation = YES, which forces a PHI pass even where the profile says off.
pub fn policy_for(
    profile: &bedside_deid::BurnedInText,
    modality: &str,
    declared_burned_in: bool,
    cli: Option<TextPolicy>,
) -> Option<TextPolicy> {
    let cli = cli?;
    let from_profile = match profile.rule_for(modality) {
        bedside_deid::TextRule::Phi => Some(TextPolicy::PhiOnly),
        bedside_deid::TextRule::All => Some(TextPolicy::AllText),
        bedside_deid::TextRule::Off if declared_burned_in => Some(TextPolicy::PhiOnly),
        bedside_deid::TextRule::Off => None,
    }?;
    Some(if cli == TextPolicy::AllText {
        TextPolicy::AllText
    } else {
        from_profile
    })
}

/// How stored samples are read and shown.
struct Layout {
    rows: usize,
    columns: usize,
    frames: usize,
    spp: usize,
    bps: usize,
    bits_stored: u16,
    signed: bool,
    planar: bool,
    pm: PhotometricInterpretation,
}

impl Layout {
    fn plane(&self) -> usize {
        self.rows * self.columns
    }

    fn frame_len(&self) -> usize {
        self.plane() * self.spp * self.bps
    }

    fn index(&self, i: usize, k: usize) -> usize {
        if self.planar {
            k * self.plane() + i
        } else {
            i * self.spp + k
        }
    }

    /// The raw stored word of sample `k` of pixel `i`.
    fn raw(&self, frame: &[u8], i: usize, k: usize) -> u16 {
        let idx = self.index(i, k);
        if self.bps == 1 {
            frame[idx] as u16
        } else {
            u16::from_le_bytes([frame[2 * idx], frame[2 * idx + 1]])
        }
    }

    /// The value of a stored word: high bits above BitsStored dropped, sign extended.
    fn value(&self, raw: u16) -> i32 {
        let bits = u32::from(self.bits_stored.clamp(1, 16));
        let v = u32::from(raw) & ((1u32 << bits) - 1);
        if self.signed && v & (1 << (bits - 1)) != 0 {
            v as i32 - (1i32 << bits)
        } else {
            v as i32
        }
    }
}

/// Luminance (0–255) of each palette index, from the object's lookup tables.
fn palette_luma(obj: &InMemDicomObject) -> Option<(i32, Vec<u8>)> {
    let first = obj
        .element(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR)
        .ok()?
        .to_multi_int::<i32>()
        .ok()?
        .get(1)
        .copied()?;
    let lut = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_bytes().ok().map(|b| b.into_owned()))
    };
    let (r, g, b) = (
        lut(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)?,
        lut(tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA)?,
        lut(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA)?,
    );
    let n = r.len().min(g.len()).min(b.len()) / 2;
    let max = (0..n)
        .flat_map(|i| [&r, &g, &b].map(|t| u16::from_le_bytes([t[2 * i], t[2 * i + 1]])))
        .max()
        .unwrap_or(0)
        .max(1) as u32;
    let luma = (0..n)
        .map(|i| {
            let w = |t: &[u8]| u16::from_le_bytes([t[2 * i], t[2 * i + 1]]) as u32;
            ((w(&r) + w(&g) + w(&b)) * 255 / (3 * max)).min(255) as u8
        })
        .collect();
    Some((first, luma))
}

/// Turns frames into 8-bit grey images as they display, for the OCR only.
struct Window {
    lo: i32,
    hi: i32,
    invert: bool,
    palette: Option<(i32, Vec<u8>)>,
}

impl Window {
    fn grey(&self, layout: &Layout, frame: &[u8]) -> Vec<u8> {
        let span = (i64::from(self.hi) - i64::from(self.lo)).max(1);
        let is_ybr = layout.pm.to_string().starts_with("YBR");
        let colour_shift = layout.bits_stored.saturating_sub(8);
        (0..layout.plane())
            .map(|i| {
                if layout.spp == 3 {
                    let v = if is_ybr {
                        layout.raw(frame, i, 0) as u32
                    } else {
                        (0..3).map(|k| layout.raw(frame, i, k) as u32).sum::<u32>() / 3
                    };
                    return (v >> colour_shift).min(255) as u8;
                }
                let v = layout.value(layout.raw(frame, i, 0));
                if let Some((first, luma)) = &self.palette {
                    let idx = (v - first).clamp(0, luma.len().saturating_sub(1) as i32) as usize;
                    return luma.get(idx).copied().unwrap_or(0);
                }
                let g = ((i64::from(v) - i64::from(self.lo)) * 255 / span).clamp(0, 255) as u8;
                if self.invert { 255 - g } else { g }
            })
            .collect()
    }
}

/// What one reading of a frame found: boxes to mask, words read.
struct Reading {
    boxes: Vec<Rect>,
    words: usize,
    lines: usize,
}

fn union(a: Rect, b: Rect) -> Rect {
    Rect {
        x0: a.x0.min(b.x0),
        y0: a.y0.min(b.y0),
        x1: a.x1.max(b.x1),
        y1: a.y1.max(b.y1),
    }
}

fn grow(r: Rect, by: usize, rows: usize, columns: usize) -> Rect {
    Rect {
        x0: r.x0.saturating_sub(by),
        y0: r.y0.saturating_sub(by),
        x1: (r.x1 + by).min(columns - 1),
        y1: (r.y1 + by).min(rows - 1),
    }
}

/// Drops boxes that lie inside another (the two readings often find the same line), so that the
/// audit lists each masked area once. Overlapping boxes stay separate: their bounding box would
/// mask image that holds no text.
fn drop_contained(mut boxes: Vec<Rect>) -> Vec<Rect> {
    let inside = |a: &Rect, b: &Rect| a.x0 >= b.x0 && a.x1 <= b.x1 && a.y0 >= b.y0 && a.y1 <= b.y1;
    boxes.sort_by_key(|b| (b.y0, b.x0, b.y1, b.x1));
    boxes.dedup();
    let keep: Vec<bool> = boxes
        .iter()
        .enumerate()
        .map(|(i, a)| {
            !boxes
                .iter()
                .enumerate()
                .any(|(j, b)| j != i && inside(a, b))
        })
        .collect();
    boxes
        .into_iter()
        .zip(keep)
        .filter_map(|(b, k)| k.then_some(b))
        .collect()
}

/// Whether a word counts as text under the all-text policy: something alphanumeric, not a lone
/// symbol Tesseract makes of an edge.
fn is_text(w: &Word) -> bool {
    w.text.chars().filter(|c| c.is_ascii_alphanumeric()).count() >= 2
}

/// Reads one grey frame and returns the boxes the policy selects.
fn read_frame(
    grey: &[u8],
    rows: usize,
    columns: usize,
    options: &TextOptions,
) -> Result<Reading, PixelError> {
    let n = rows * columns;
    let mut candidate: Vec<bool> = grey.iter().map(|&g| g >= options.candidate_level).collect();
    crate::ocr::drop_lone_pixels(&mut candidate, rows, columns);
    let text_image: Vec<u8> = (0..n)
        .map(|i| if candidate[i] { grey[i] } else { 0 })
        .collect();
    let mut reading = Reading {
        boxes: Vec::new(),
        words: 0,
        lines: 0,
    };
    let selects = |w: &Word| match options.policy {
        TextPolicy::AllText => is_text(w),
        TextPolicy::PhiOnly => options.deny.matches(&w.text),
    };
    // Candidate lines: a line with one selected word is masked whole (a half-masked name or
    // date-time still identifies), as the line found from the pixels, independent of how the
    // OCR split it.
    for line in crate::ocr::line_boxes(&candidate, rows, columns) {
        let words = crate::ocr::read_line(&text_image, columns, line)?;
        reading.words += words.len();
        if words.iter().any(selects) {
            reading.lines += 1;
            reading.boxes.push(grow(line, 1, rows, columns));
        }
    }
    // The whole frame at native size, for text not drawn at the bright end; lines as the OCR
    // groups them, confident words only (tissue texture reads as noise words).
    let whole = Rect {
        x0: 0,
        y0: 0,
        x1: columns - 1,
        y1: rows - 1,
    };
    let words: Vec<Word> = crate::ocr::read_words(grey, columns, whole)?
        .into_iter()
        .filter(|w| w.confidence >= options.min_confidence)
        .collect();
    reading.words += words.len();
    let mut keys: Vec<(u32, u32, u32)> = words
        .iter()
        .filter(|w| selects(w))
        .map(|w| w.line)
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        if let Some(line) = words
            .iter()
            .filter(|w| w.line == key)
            .map(|w| w.rect)
            .reduce(union)
        {
            reading.lines += 1;
            reading.boxes.push(grow(line, 3, rows, columns));
        }
    }
    Ok(reading)
}

/// Finds burned-in text in every frame and masks what the policy selects (see the module
/// documentation). Returns what was done; `changed` is false when no pixel changed, in which
/// case the object is untouched.
pub fn clean_text(
    obj: &mut FileDicomObject<InMemDicomObject>,
    options: &TextOptions,
) -> Result<CleanOutcome, PixelError> {
    if obj.element(tags::PIXEL_DATA).is_err() {
        return Err(PixelError::NoPixelData);
    }
    let decoded = obj
        .decode_pixel_data()
        .map_err(|e| PixelError::Decode(e.to_string()))?;
    let bits = decoded.bits_allocated();
    let layout = Layout {
        rows: decoded.rows() as usize,
        columns: decoded.columns() as usize,
        frames: decoded.number_of_frames() as usize,
        spp: decoded.samples_per_pixel() as usize,
        bps: (bits / 8) as usize,
        bits_stored: decoded.bits_stored(),
        signed: decoded.pixel_representation() == PixelRepresentation::Signed,
        planar: decoded.planar_configuration() == PlanarConfiguration::PixelFirst,
        pm: decoded.photometric_interpretation().clone(),
    };
    if !(bits == 8 || bits == 16) || !(layout.spp == 1 || layout.spp == 3) {
        return Err(PixelError::Unsupported(format!(
            "{bits}-bit, {} samples per pixel",
            layout.spp
        )));
    }
    if layout.rows == 0 || layout.columns == 0 || layout.frames == 0 {
        return Err(PixelError::Unsupported("empty image".into()));
    }
    let frame_len = layout.frame_len();
    let mut data = decoded.data().to_vec();
    drop(decoded);
    if data.len() < frame_len * layout.frames {
        return Err(PixelError::Decode(format!(
            "{} bytes decoded, {} frames of {}x{}x{} need {}",
            data.len(),
            layout.frames,
            layout.rows,
            layout.columns,
            layout.spp,
            frame_len * layout.frames
        )));
    }
    data.truncate(frame_len * layout.frames);

    // The object's range (and the stored words at its ends, the fill values).
    let monochrome = layout.spp == 1 && layout.pm != PhotometricInterpretation::PaletteColor;
    let (mut lo, mut hi) = ((i32::MAX, 0u16), (i32::MIN, 0u16));
    if monochrome {
        for frame in data.chunks_exact(frame_len) {
            for i in 0..layout.plane() {
                let raw = layout.raw(frame, i, 0);
                let v = layout.value(raw);
                if v < lo.0 {
                    lo = (v, raw);
                }
                if v > hi.0 {
                    hi = (v, raw);
                }
            }
        }
    }
    let invert = layout.pm == PhotometricInterpretation::Monochrome1;
    let window = Window {
        lo: lo.0,
        hi: hi.0,
        invert,
        palette: if layout.pm == PhotometricInterpretation::PaletteColor {
            palette_luma(obj)
        } else {
            None
        },
    };

    let (rows, columns, plane) = (layout.rows, layout.columns, layout.plane());
    let mut boxes: Vec<Rect> = Vec::new();
    let (mut words, mut lines, mut runs) = (0, 0, 0);
    let mut last_read: Option<Vec<bool>> = None;
    for frame in data.chunks_exact(frame_len) {
        let grey = window.grey(&layout, frame);
        let candidate: Vec<bool> = grey.iter().map(|&g| g >= options.candidate_level).collect();
        let changed = match &last_read {
            None => true,
            Some(previous) => {
                let lit = candidate.iter().filter(|&&c| c).count();
                let differ = candidate
                    .iter()
                    .zip(previous)
                    .filter(|(a, b)| a != b)
                    .count();
                differ > (lit / 20).max(32)
            }
        };
        if !changed || runs >= options.max_ocr_runs {
            continue;
        }
        let reading = read_frame(&grey, rows, columns, options)?;
        runs += 1;
        words += reading.words;
        lines += reading.lines;
        boxes.extend(reading.boxes);
        last_read = Some(candidate);
    }
    let boxes = drop_contained(boxes);

    let fill: [u16; 3] = if monochrome {
        // What displays as black: the darkest stored value of the object.
        [if invert { hi.1 } else { lo.1 }, 0, 0]
    } else {
        crate::pixels::blank_samples(
            &layout.pm,
            layout.bits_stored,
            crate::pixels::palette_black(obj),
        )
    };
    let mut mask = vec![false; plane];
    for b in &boxes {
        for y in b.y0..=b.y1.min(rows - 1) {
            for x in b.x0..=b.x1.min(columns - 1) {
                mask[y * columns + x] = true;
            }
        }
    }
    let masked = mask.iter().filter(|&&m| m).count();
    let worst = crate::pixels::fill_samples(
        &mut data,
        frame_len,
        layout.frames,
        crate::pixels::SampleLayout {
            plane,
            spp: layout.spp,
            bps: layout.bps,
            planar: layout.planar,
        },
        &fill,
        |i| mask[i],
    );
    let mut outcome = CleanOutcome {
        changed: worst > 0,
        frames: layout.frames as u32,
        regions: 0,
        sector_detected: false,
        kept_fraction: 1.0 - masked as f64 / plane as f64,
        blanked_per_frame: worst,
        photometric: obj
            .element(tags::PHOTOMETRIC_INTERPRETATION)
            .ok()
            .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
            .unwrap_or_default(),
        ocr_words: words,
        ocr_lines: lines,
        ocr_runs: runs,
        boxes,
    };
    if outcome.changed {
        outcome.photometric = crate::pixels::write_native(
            obj,
            data,
            layout.bps,
            &layout.pm,
            layout.spp,
            layout.planar,
        );
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_follows_profile_cli_and_declaration() {
        let mut p = bedside_deid::BurnedInText::default();
        p.modality.insert("CT".into(), bedside_deid::TextRule::Off);
        p.modality.insert("sc".into(), bedside_deid::TextRule::All);
        let phi = Some(TextPolicy::PhiOnly);
        assert_eq!(policy_for(&p, "MR", false, phi), phi);
        assert_eq!(policy_for(&p, "CT", false, phi), None);
        assert_eq!(policy_for(&p, "CT", true, phi), phi);
        assert_eq!(policy_for(&p, "SC", false, phi), Some(TextPolicy::AllText));
        assert_eq!(
            policy_for(&p, "MR", false, Some(TextPolicy::AllText)),
            Some(TextPolicy::AllText)
        );
        assert_eq!(policy_for(&p, "MR", true, None), None);
    }

    #[test]
    fn signed_and_short_values_are_read_as_stored() {
        let layout = Layout {
            rows: 1,
            columns: 1,
            frames: 1,
            spp: 1,
            bps: 2,
            bits_stored: 12,
            signed: true,
            planar: false,
            pm: PhotometricInterpretation::Monochrome2,
        };
        assert_eq!(layout.value(0x0FFF), -1);
        assert_eq!(layout.value(0xF7FF), 2047);
        assert_eq!(layout.value(0x0800), -2048);
    }
}
