//! Blanking of burned-in text outside the scan area of ultrasound images.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_pixeldata::{PhotometricInterpretation, PixelDecoder, PlanarConfiguration};

use crate::scan_area::{self, Rect};

/// Explicit VR Little Endian, the syntax masked pixel data is written in.
const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// What to keep and what to blank.
#[derive(Debug, Clone)]
pub struct CleanOptions {
    /// Keep the declared `SequenceOfUltrasoundRegions`.
    pub use_regions: bool,
    /// Keep the scan sector detected from the cine (needs two or more frames).
    pub detect_sector: bool,
    /// Pixels by which the detected sector is grown, so that its edge is never cut.
    pub margin: f64,
    /// Boxes to blank even inside the kept area.
    pub blank_boxes: Vec<Rect>,
    /// Read static text inside the kept area and blank what matches (see [`crate::ocr`]).
    pub ocr: Option<(crate::ocr::DenyList, crate::ocr::TextPolicy)>,
}

impl Default for CleanOptions {
    fn default() -> Self {
        CleanOptions {
            use_regions: true,
            detect_sector: true,
            margin: 2.0,
            blank_boxes: Vec::new(),
            ocr: None,
        }
    }
}

/// What cleaning did to one object.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanOutcome {
    /// Pixel data was rewritten (uncompressed); false means untouched, original syntax kept.
    pub changed: bool,
    /// Frames processed.
    pub frames: u32,
    /// Declared regions used.
    pub regions: usize,
    /// Whether a scan sector was detected from the cine.
    pub sector_detected: bool,
    /// Share of the image kept.
    pub kept_fraction: f64,
    /// Pixels whose value changed, per frame (the largest over frames).
    pub blanked_per_frame: usize,
    /// Photometric interpretation of the written pixel data.
    pub photometric: String,
    /// Words read by OCR inside the kept area.
    pub ocr_words: usize,
    /// Text lines blanked because OCR matched them.
    pub ocr_lines: usize,
    /// Frames the OCR read (the first and those where the static content changed).
    pub ocr_runs: usize,
    /// Boxes blanked by OCR (in every frame); no pixel outside them and outside the blanked
    /// area around the scan area changed.
    pub boxes: Vec<Rect>,
}

/// Why pixel data could not be cleaned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PixelError {
    /// The object has no pixel data.
    #[error("no pixel data")]
    NoPixelData,
    /// The pixel data could not be decoded.
    #[error("cannot decode pixel data: {0}")]
    Decode(String),
    /// The layout is not supported.
    #[error("unsupported pixel data: {0}")]
    Unsupported(String),
    /// Neither declared regions nor a detectable sector tell where the scan area is.
    #[error("scan area unknown: no ultrasound regions and no sector detectable from the frames")]
    ScanAreaUnknown,
    /// Text inside the scan area could not be checked.
    #[error(transparent)]
    Ocr(#[from] crate::ocr::OcrError),
}
/// How the samples of one frame sit in its bytes (little-endian words when `bps` is 2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SampleLayout {
    /// Pixels per frame.
    pub plane: usize,
    /// Samples per pixel.
    pub spp: usize,
    /// Bytes per sample (1 or 2).
    pub bps: usize,
    /// Colour-by-plane rather than colour-by-pixel.
    pub planar: bool,
}

/// Writes `fill` into every sample of the pixels `blank` selects, in the first `frames` frames
/// of `data`; returns the most pixels any one frame had changed (0 when nothing changed, so an
/// already-blank area keeps the original transfer syntax).
pub(crate) fn fill_samples(
    data: &mut [u8],
    frame_len: usize,
    frames: usize,
    layout: SampleLayout,
    fill: &[u16],
    blank: impl Fn(usize) -> bool,
) -> usize {
    let SampleLayout {
        plane,
        spp,
        bps,
        planar,
    } = layout;
    let mut worst = 0usize;
    for frame in data.chunks_exact_mut(frame_len).take(frames) {
        let mut changed = 0usize;
        for i in (0..plane).filter(|&i| blank(i)) {
            let mut differs = false;
            for (k, &value) in fill.iter().enumerate().take(spp) {
                let idx = if planar { k * plane + i } else { i * spp + k };
                if bps == 1 {
                    differs |= frame[idx] != value as u8;
                    frame[idx] = value as u8;
                } else {
                    let bytes = value.to_le_bytes();
                    differs |= frame[2 * idx..2 * idx + 2] != bytes;
                    frame[2 * idx..2 * idx + 2].copy_from_slice(&bytes);
                }
            }
            changed += differs as usize;
        }
        worst = worst.max(changed);
    }
    worst
}

/// The value that shows as black, per sample, for a photometric interpretation.
pub(crate) fn blank_samples(
    pm: &PhotometricInterpretation,
    bits_stored: u16,
    palette_black: u16,
) -> [u16; 3] {
    let max = if bits_stored >= 16 {
        u16::MAX
    } else {
        (1u16 << bits_stored) - 1
    };
    let mid = 1u16 << bits_stored.saturating_sub(1).min(15);
    match pm {
        PhotometricInterpretation::Monochrome1 => [max, 0, 0],
        PhotometricInterpretation::PaletteColor => [palette_black, 0, 0],
        PhotometricInterpretation::YbrFull
        | PhotometricInterpretation::YbrFull422
        | PhotometricInterpretation::YbrPartial420
        | PhotometricInterpretation::YbrIct
        | PhotometricInterpretation::YbrRct => [0, mid, mid],
        _ => [0, 0, 0],
    }
}

/// The palette index whose colour is darkest (first-entry index when tables are missing).
pub(crate) fn palette_black(obj: &InMemDicomObject) -> u16 {
    let first_mapped = obj
        .element(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR)
        .ok()
        .and_then(|e| e.to_multi_int::<i32>().ok())
        .and_then(|v| v.get(1).copied())
        .unwrap_or(0)
        .max(0) as u16;
    let lut = |tag| {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_bytes().ok().map(|b| b.into_owned()))
    };
    let (Some(r), Some(g), Some(b)) = (
        lut(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA),
        lut(tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA),
        lut(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA),
    ) else {
        return first_mapped;
    };
    // Entries are 16-bit little-endian words whatever the bit depth.
    let word = |t: &[u8], i: usize| u16::from_le_bytes([t[2 * i], t[2 * i + 1]]) as u32;
    let n = r.len().min(g.len()).min(b.len()) / 2;
    (0..n)
        .min_by_key(|&i| word(&r, i) + word(&g, i) + word(&b, i))
        .map(|i| first_mapped.saturating_add(i as u16))
        .unwrap_or(first_mapped)
}

/// Blanks everything outside the scan area of an ultrasound object, in every frame.
///
/// The scan area is the union of the declared regions and the sector detected from the cine
/// (see [`scan_area`]); `options.blank_boxes` are blanked wherever they are. When no pixel
/// changes, the object is left untouched and keeps its transfer syntax; otherwise the pixel data
/// is replaced by the decoded, masked samples, uncompressed, and the transfer syntax becomes
/// Explicit VR Little Endian. Frames are processed one by one in stored order.
pub fn clean_ultrasound(
    obj: &mut FileDicomObject<InMemDicomObject>,
    options: &CleanOptions,
) -> Result<CleanOutcome, PixelError> {
    if obj.element(tags::PIXEL_DATA).is_err() {
        return Err(PixelError::NoPixelData);
    }
    let decoded = obj
        .decode_pixel_data()
        .map_err(|e| PixelError::Decode(e.to_string()))?;
    let rows = decoded.rows() as usize;
    let columns = decoded.columns() as usize;
    let frames = decoded.number_of_frames();
    let spp = decoded.samples_per_pixel() as usize;
    let bits = decoded.bits_allocated();
    let bits_stored = decoded.bits_stored();
    let pm = decoded.photometric_interpretation().clone();
    let planar = decoded.planar_configuration() == PlanarConfiguration::PixelFirst;
    if !(bits == 8 || bits == 16) || !(spp == 1 || spp == 3) {
        return Err(PixelError::Unsupported(format!(
            "{bits}-bit, {spp} samples per pixel"
        )));
    }
    let bps = (bits / 8) as usize;
    let plane = rows * columns;
    let frame_len = plane * spp * bps;
    let mut data = decoded.data().to_vec();
    drop(decoded);
    if data.len() < frame_len * frames as usize {
        return Err(PixelError::Decode(format!(
            "{} bytes decoded, {} frames of {rows}x{columns}x{spp} need {}",
            data.len(),
            frames,
            frame_len * frames as usize
        )));
    }

    // Luminance per frame, 8-bit, for sector detection.
    let is_ybr = pm.to_string().starts_with("YBR");
    let sample = |frame: &[u8], i: usize, k: usize| -> u16 {
        let idx = if planar { k * plane + i } else { i * spp + k };
        if bps == 1 {
            frame[idx] as u16
        } else {
            u16::from_le_bytes([frame[2 * idx], frame[2 * idx + 1]])
        }
    };
    let shift = bits_stored.saturating_sub(8);
    let luma: Vec<Vec<u8>> = data
        .chunks_exact(frame_len)
        .take(frames as usize)
        .map(|frame| {
            (0..plane)
                .map(|i| {
                    let v = if spp == 1 || is_ybr {
                        sample(frame, i, 0) as u32
                    } else {
                        (sample(frame, i, 0) as u32
                            + sample(frame, i, 1) as u32
                            + sample(frame, i, 2) as u32)
                            / 3
                    };
                    (v >> shift).min(255) as u8
                })
                .collect()
        })
        .collect();

    let regions = if options.use_regions {
        scan_area::declared_regions(obj, rows, columns)
    } else {
        Vec::new()
    };
    let hull = if options.detect_sector {
        let refs: Vec<&[u8]> = luma.iter().map(|f| f.as_slice()).collect();
        scan_area::detect_sector(&refs, rows, columns)
    } else {
        None
    };
    // Without a known scan area only text found by OCR (or given boxes) can be blanked; without
    // OCR either, the object cannot be cleaned and is refused.
    if regions.is_empty()
        && hull.is_none()
        && options.blank_boxes.is_empty()
        && options.ocr.is_none()
    {
        return Err(PixelError::ScanAreaUnknown);
    }
    let mut keep = if regions.is_empty() && hull.is_none() {
        vec![1u8; plane]
    } else {
        scan_area::keep_mask(rows, columns, &regions, hull.as_deref(), options.margin)
    };
    let (mut ocr_words, mut ocr_lines, mut ocr_runs) = (0, 0, 0);
    let mut boxes = Vec::new();
    if let Some((deny, policy)) = &options.ocr {
        let refs: Vec<&[u8]> = luma.iter().map(|f| f.as_slice()).collect();
        // With no known scan area, text cannot be told from the scanner's interface: all of it
        // goes.
        let policy = if regions.is_empty() && hull.is_none() {
            crate::ocr::TextPolicy::AllText
        } else {
            *policy
        };
        let found = crate::ocr::find_text(&refs, &keep, rows, columns, deny, policy)?;
        ocr_words = found.words;
        ocr_lines = found.lines;
        ocr_runs = 1;
        boxes = found.boxes;
        for (k, b) in keep.iter_mut().zip(&found.blank) {
            if *b {
                *k = 0;
            }
        }
    }
    for b in &options.blank_boxes {
        for y in b.y0..=b.y1.min(rows.saturating_sub(1)) {
            for x in b.x0..=b.x1.min(columns.saturating_sub(1)) {
                keep[y * columns + x] = 0;
            }
        }
    }
    let kept = keep.iter().filter(|&&k| k == 1).count();

    let black = blank_samples(&pm, bits_stored, palette_black(obj));
    let worst = fill_samples(
        &mut data,
        frame_len,
        frames as usize,
        SampleLayout {
            plane,
            spp,
            bps,
            planar,
        },
        &black,
        |i| keep[i] == 0,
    );
    let mut outcome = CleanOutcome {
        changed: worst > 0,
        frames,
        regions: regions.len(),
        sector_detected: hull.is_some(),
        kept_fraction: kept as f64 / plane as f64,
        blanked_per_frame: worst,
        ocr_words,
        ocr_lines,
        ocr_runs,
        boxes,
        photometric: obj
            .element(tags::PHOTOMETRIC_INTERPRETATION)
            .ok()
            .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
            .unwrap_or_default(),
    };
    if !outcome.changed {
        return Ok(outcome);
    }
    data.truncate(frame_len * frames as usize);
    outcome.photometric = write_native(obj, data, bps, &pm, spp, planar);
    Ok(outcome)
}

/// Replaces the pixel data by decoded samples, uncompressed, in Explicit VR Little Endian (the
/// only re-encoding that can never lose information), and says so in the header: photometric
/// interpretation of the decoded samples, planar configuration, transfer syntax. Returns the
/// photometric interpretation written.
pub(crate) fn write_native(
    obj: &mut FileDicomObject<InMemDicomObject>,
    mut data: Vec<u8>,
    bps: usize,
    pm: &PhotometricInterpretation,
    spp: usize,
    planar: bool,
) -> String {
    let element = if bps == 1 {
        if data.len() % 2 == 1 {
            data.push(0);
        }
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(data.into()))
    } else {
        let words: Vec<u16> = data
            .chunks_exact(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]))
            .collect();
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(words.into()))
    };
    obj.put(element);
    let pm_text = pm.to_string();
    obj.put(DataElement::new(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        PrimitiveValue::from(pm_text.as_str()),
    ));
    if spp == 3 {
        obj.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(planar as u16),
        ));
    }
    let meta = obj.meta_mut();
    meta.transfer_syntax = EXPLICIT_VR_LE.to_string();
    meta.update_information_group_length();
    pm_text
}
