//! Scan-level metadata, one record per instance, for the curation table.
//!
//! Records are taken from the object as it leaves curation (so identifiers are pseudonyms and
//! dates are shifted) and hold no free text beyond series descriptions.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// MR contrast inferred from the sequence parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MrKind {
    /// T1-weighted (short TR, short TE, or inversion recovery with short TI).
    T1,
    /// T2-weighted (long TR, long TE).
    T2,
    /// Cardiac cine (gradient echo over cardiac phases).
    Cine,
    /// Anything else (proton density, diffusion, localisers, …).
    Other,
}

/// One row of the metadata table.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct InstanceRecord {
    /// Pseudonymous patient ID (after de-identification).
    pub patient_id: String,
    /// Study Instance UID (after de-identification).
    pub study_instance_uid: String,
    /// Series Instance UID (after de-identification).
    pub series_instance_uid: String,
    /// SOP Instance UID (after de-identification).
    pub sop_instance_uid: String,
    /// Study date (shifted).
    pub study_date: String,
    /// Modality.
    pub modality: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Manufacturer's model name.
    pub model: String,
    /// Series description.
    pub series_description: String,
    /// Instance number.
    pub instance_number: Option<i64>,
    /// Rows.
    pub rows: Option<u32>,
    /// Columns.
    pub columns: Option<u32>,
    /// Number of frames (1 for single-frame objects with pixel data).
    pub frames: Option<u32>,
    /// Frame time in milliseconds (FrameTime, else derived from CineRate or RecommendedDisplayFrameRate).
    pub frame_time_ms: Option<f64>,
    /// Frame rate in frames per second.
    pub frame_rate: Option<f64>,
    /// Pixel spacing, row then column, millimetres (PixelSpacing, else ImagerPixelSpacing).
    pub pixel_spacing_mm: Option<(f64, f64)>,
    /// Physical size of an ultrasound pixel, x then y, in the region's units (first 2D region).
    pub us_physical_delta: Option<(f64, f64)>,
    /// Unit code of the ultrasound deltas (3 = cm).
    pub us_physical_units: Option<u16>,
    /// Slice thickness, millimetres.
    pub slice_thickness_mm: Option<f64>,
    /// Photometric interpretation.
    pub photometric: String,
    /// Samples per pixel.
    pub samples_per_pixel: Option<u16>,
    /// Bits allocated.
    pub bits_allocated: Option<u16>,
    /// Bits stored.
    pub bits_stored: Option<u16>,
    /// Transfer syntax UID.
    pub transfer_syntax: String,
    /// MR scanning sequence (e.g. `SE`, `GR`, `IR`).
    pub scanning_sequence: String,
    /// MR sequence variant.
    pub sequence_variant: String,
    /// Echo time, milliseconds.
    pub echo_time_ms: Option<f64>,
    /// Repetition time, milliseconds.
    pub repetition_time_ms: Option<f64>,
    /// Inversion time, milliseconds.
    pub inversion_time_ms: Option<f64>,
    /// Inferred MR contrast (MR only).
    pub mr_kind: Option<MrKind>,
    /// SHA-256 of the pixel data as stored (native bytes with 16-bit words little endian, or the
    /// fragments concatenated without the Basic Offset Table), hex.
    pub pixel_sha256: String,
}

fn text(obj: &DefaultDicomObject, tag: Tag) -> String {
    let Ok(e) = obj.element(tag) else {
        return String::new();
    };
    // Values of unknown VR (UN) arrive as bytes: read them as the text they hold.
    let raw = match e.value().primitive() {
        Some(dicom_core::PrimitiveValue::U8(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        _ => e.to_str().map(|s| s.into_owned()).unwrap_or_default(),
    };
    raw.trim_matches(|c: char| c.is_whitespace() || c == '\0')
        .to_string()
}

/// The raw bytes of a value read with unknown VR (UN), if that is how it arrived.
fn unknown_bytes(obj: &DefaultDicomObject, tag: Tag) -> Option<Vec<u8>> {
    match obj.element(tag).ok()?.value().primitive() {
        Some(dicom_core::PrimitiveValue::U8(bytes)) => Some(bytes.to_vec()),
        _ => None,
    }
}

/// Numbers of a decimal or integer string, also when the value arrived with unknown VR.
fn floats(obj: &DefaultDicomObject, tag: Tag) -> Vec<f64> {
    if unknown_bytes(obj, tag).is_some() {
        return text(obj, tag)
            .split('\\')
            .filter_map(|t| t.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .collect();
    }
    obj.element(tag)
        .ok()
        .and_then(|e| e.to_multi_float64().ok())
        .map(|v| v.into_iter().filter(|x| x.is_finite()).collect())
        .unwrap_or_default()
}

fn float(obj: &DefaultDicomObject, tag: Tag) -> Option<f64> {
    floats(obj, tag).first().copied()
}

/// An unsigned short (US), also when it arrived with unknown VR (binary little endian).
fn u16_of(obj: &DefaultDicomObject, tag: Tag) -> Option<u16> {
    if let Some(b) = unknown_bytes(obj, tag) {
        return (b.len() >= 2).then(|| u16::from_le_bytes([b[0], b[1]]));
    }
    obj.element(tag).ok()?.to_int::<u16>().ok()
}

/// An integer string (IS), also when it arrived with unknown VR.
fn i64_of(obj: &DefaultDicomObject, tag: Tag) -> Option<i64> {
    if unknown_bytes(obj, tag).is_some() {
        return text(obj, tag).split('\\').next()?.trim().parse().ok();
    }
    obj.element(tag).ok()?.to_int::<i64>().ok()
}

fn u32_of(obj: &DefaultDicomObject, tag: Tag) -> Option<u32> {
    i64_of(obj, tag).and_then(|v| u32::try_from(v).ok())
}

fn pair(obj: &DefaultDicomObject, tag: Tag) -> Option<(f64, f64)> {
    match floats(obj, tag).as_slice() {
        [a, b, ..] => Some((*a, *b)),
        _ => None,
    }
}

/// Infers the MR contrast from sequence parameters (and the series description for cines).
pub fn infer_mr_kind(
    scanning_sequence: &str,
    description: &str,
    tr: Option<f64>,
    te: Option<f64>,
    ti: Option<f64>,
    frames_or_phases: u32,
) -> MrKind {
    let desc = description.to_ascii_lowercase();
    let gradient = scanning_sequence.contains("GR");
    if desc.contains("cine") || (gradient && frames_or_phases > 1 && tr.is_some_and(|t| t < 100.0))
    {
        return MrKind::Cine;
    }
    if scanning_sequence.contains("IR") {
        return match ti {
            Some(t) if t < 1500.0 && t > 0.0 => MrKind::T1,
            Some(_) => MrKind::T2, // long-TI inversion recovery (FLAIR) is T2-weighted
            None => MrKind::Other,
        };
    }
    match (tr, te) {
        (Some(tr), Some(te)) if tr < 1000.0 && te < 30.0 => MrKind::T1,
        (Some(tr), Some(te)) if tr >= 2000.0 && te >= 60.0 => MrKind::T2,
        _ => MrKind::Other,
    }
}

/// Extracts the record of one (curated) object.
pub fn extract(obj: &DefaultDicomObject) -> InstanceRecord {
    InstanceRecord {
        pixel_sha256: pixel_sha256(obj),
        ..extract_header(obj)
    }
}

/// The record without the pixel data hash (left empty): header fields only, whose cost does not
/// grow with the image size.
pub fn extract_header(obj: &DefaultDicomObject) -> InstanceRecord {
    let modality = text(obj, tags::MODALITY);
    let frames = u32_of(obj, tags::NUMBER_OF_FRAMES)
        .or_else(|| obj.element(tags::PIXEL_DATA).ok().map(|_| 1));
    let frame_time_ms = float(obj, tags::FRAME_TIME)
        .filter(|t| *t > 0.0)
        .or_else(|| {
            float(obj, tags::CINE_RATE)
                .filter(|r| *r > 0.0)
                .map(|r| 1000.0 / r)
        })
        .or_else(|| {
            float(obj, tags::RECOMMENDED_DISPLAY_FRAME_RATE)
                .filter(|r| *r > 0.0)
                .map(|r| 1000.0 / r)
        });
    let (mut us_delta, mut us_units) = (None, None);
    if let Ok(seq) = obj.element(tags::SEQUENCE_OF_ULTRASOUND_REGIONS)
        && let Some(items) = seq.items()
    {
        for item in items {
            let spatial = item
                .element(tags::REGION_SPATIAL_FORMAT)
                .ok()
                .and_then(|e| e.to_int::<u16>().ok());
            let dx = item
                .element(tags::PHYSICAL_DELTA_X)
                .ok()
                .and_then(|e| e.to_float64().ok());
            let dy = item
                .element(tags::PHYSICAL_DELTA_Y)
                .ok()
                .and_then(|e| e.to_float64().ok());
            if spatial == Some(1)
                && let (Some(dx), Some(dy)) = (dx, dy)
            {
                us_delta = Some((dx, dy));
                us_units = item
                    .element(tags::PHYSICAL_UNITS_X_DIRECTION)
                    .ok()
                    .and_then(|e| e.to_int::<u16>().ok());
                break;
            }
        }
    }
    let scanning_sequence = text(obj, tags::SCANNING_SEQUENCE);
    let description = text(obj, tags::SERIES_DESCRIPTION);
    let tr = float(obj, tags::REPETITION_TIME);
    let te = float(obj, tags::ECHO_TIME);
    let ti = float(obj, tags::INVERSION_TIME);
    let phases = obj
        .element(tags::CARDIAC_NUMBER_OF_IMAGES)
        .ok()
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(0)
        .max(frames.unwrap_or(1));
    let mr_kind = (modality == "MR")
        .then(|| infer_mr_kind(&scanning_sequence, &description, tr, te, ti, phases));
    InstanceRecord {
        patient_id: text(obj, tags::PATIENT_ID),
        study_instance_uid: text(obj, tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(obj, tags::SERIES_INSTANCE_UID),
        sop_instance_uid: text(obj, tags::SOP_INSTANCE_UID),
        study_date: text(obj, tags::STUDY_DATE),
        modality,
        sop_class_uid: text(obj, tags::SOP_CLASS_UID),
        manufacturer: text(obj, tags::MANUFACTURER),
        model: text(obj, tags::MANUFACTURER_MODEL_NAME),
        series_description: description,
        instance_number: i64_of(obj, tags::INSTANCE_NUMBER),
        rows: u16_of(obj, tags::ROWS).map(u32::from),
        columns: u16_of(obj, tags::COLUMNS).map(u32::from),
        frames,
        frame_time_ms,
        frame_rate: frame_time_ms.map(|t| 1000.0 / t),
        pixel_spacing_mm: pair(obj, tags::PIXEL_SPACING)
            .or_else(|| pair(obj, tags::IMAGER_PIXEL_SPACING)),
        us_physical_delta: us_delta,
        us_physical_units: us_units,
        slice_thickness_mm: float(obj, tags::SLICE_THICKNESS),
        photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION),
        samples_per_pixel: u16_of(obj, tags::SAMPLES_PER_PIXEL),
        bits_allocated: u16_of(obj, tags::BITS_ALLOCATED),
        bits_stored: u16_of(obj, tags::BITS_STORED),
        transfer_syntax: obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string(),
        scanning_sequence,
        sequence_variant: text(obj, tags::SEQUENCE_VARIANT),
        echo_time_ms: te,
        repetition_time_ms: tr,
        inversion_time_ms: ti,
        mr_kind,
        pixel_sha256: String::new(),
    }
}

/// SHA-256 of the stored pixel data (native bytes, or encapsulated fragments concatenated
/// without the Basic Offset Table, so that filling the table does not change the hash).
pub fn pixel_sha256(obj: &DefaultDicomObject) -> String {
    let Ok(el) = obj.element(tags::PIXEL_DATA) else {
        return String::new();
    };
    let mut h = Sha256::new();
    if let Some(fragments) = el.fragments() {
        for f in fragments {
            h.update(f);
        }
    } else if let Ok(bytes) = el.to_bytes() {
        h.update(&bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mr_contrast_rules() {
        assert_eq!(
            infer_mr_kind("SE", "", Some(500.0), Some(15.0), None, 1),
            MrKind::T1
        );
        assert_eq!(
            infer_mr_kind("SE", "", Some(4000.0), Some(100.0), None, 1),
            MrKind::T2
        );
        assert_eq!(
            infer_mr_kind("SE", "", Some(4000.0), Some(20.0), None, 1),
            MrKind::Other
        );
        assert_eq!(
            infer_mr_kind("GR", "SAX", Some(3.2), Some(1.4), None, 25),
            MrKind::Cine
        );
        assert_eq!(
            infer_mr_kind("GR", "cine 4ch", None, None, None, 1),
            MrKind::Cine
        );
        assert_eq!(
            infer_mr_kind("SE\\IR", "", Some(9000.0), Some(90.0), Some(2500.0), 1),
            MrKind::T2
        );
        assert_eq!(
            infer_mr_kind("IR", "", Some(2000.0), Some(3.0), Some(900.0), 1),
            MrKind::T1
        );
    }
}
