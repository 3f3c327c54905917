//! Scan-level metadata, one record per instance, for the curation table.
//!
//! Records are taken from the object as it leaves curation (so identifiers are pseudonyms and
//! dates are shifted) and hold no free text beyond series descriptions.

use crate::read::ReadError;
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
    hex(&h.finalize())
}

fn hex(digest: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * digest.len());
    for b in digest {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Extracts the record of a Part 10 file straight from its bytes, as [`extract`] would from
/// [`crate::read::read_bytes`]'s object, without building that object: one walk of the
/// data set (the bounded structure scan, [`crate::scan::scan_dataset_visit`]) picks
/// the values out and hashes the pixel data where it lies. Files the walk does not cover
/// (bare data sets, deflated or big-endian syntaxes, non-ASCII or unusually typed values of the
/// attributes read) go through the full reader instead, so the record is the same either way.
///
/// It refuses what the structure scan and the encapsulated-geometry check refuse; a file whose
/// values dicom-rs alone would refuse to parse may still give a record here.
pub fn extract_bytes(bytes: &[u8]) -> Result<InstanceRecord, ReadError> {
    match fast::extract(bytes, true)? {
        Some(record) => Ok(record),
        None => Ok(extract(&crate::read::read_bytes(bytes)?)),
    }
}

/// [`extract_bytes`] without the pixel data hash (left empty), as [`extract_header`].
pub fn extract_header_bytes(bytes: &[u8]) -> Result<InstanceRecord, ReadError> {
    match fast::extract(bytes, false)? {
        Some(record) => Ok(record),
        None => Ok(extract_header(&crate::read::read_bytes(bytes)?)),
    }
}

/// Whether [`extract_bytes`] takes the single-walk path for these bytes (rather than the full
/// reader); for tests and benchmarks.
pub fn takes_fast_path(bytes: &[u8]) -> bool {
    matches!(fast::extract(bytes, false), Ok(Some(_)))
}

/// The single-walk extraction. Every value is interpreted exactly as dicom-object 0.10 reads it
/// ("preserved" strings split at backslashes, decoded text, little-endian binary) and then as
/// the accessors above convert it; any value outside the cases mirrored here makes the whole
/// file go through the full reader.
mod fast {
    use crate::read::{self, EncapsulatedGeometry, ReadError};
    use crate::scan::{self, Visitor};
    use dicom_core::{Tag, VR};
    use dicom_dictionary_std::tags;
    use sha2::{Digest, Sha256};

    use super::{InstanceRecord, infer_mr_kind};

    /// Top-level attributes read, sorted by tag (for the binary search), in the order of
    /// [`Slot`].
    const TAGS: [Tag; 31] = [
        tags::SOP_CLASS_UID,
        tags::SOP_INSTANCE_UID,
        tags::STUDY_DATE,
        tags::MODALITY,
        tags::MANUFACTURER,
        tags::SERIES_DESCRIPTION,
        tags::MANUFACTURER_MODEL_NAME,
        tags::RECOMMENDED_DISPLAY_FRAME_RATE,
        tags::PATIENT_ID,
        tags::SCANNING_SEQUENCE,
        tags::SEQUENCE_VARIANT,
        tags::CINE_RATE,
        tags::SLICE_THICKNESS,
        tags::REPETITION_TIME,
        tags::ECHO_TIME,
        tags::INVERSION_TIME,
        tags::FRAME_TIME,
        tags::CARDIAC_NUMBER_OF_IMAGES,
        tags::IMAGER_PIXEL_SPACING,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::INSTANCE_NUMBER,
        tags::SAMPLES_PER_PIXEL,
        tags::PHOTOMETRIC_INTERPRETATION,
        tags::NUMBER_OF_FRAMES,
        tags::ROWS,
        tags::COLUMNS,
        tags::PIXEL_SPACING,
        tags::BITS_ALLOCATED,
        tags::BITS_STORED,
        tags::PIXEL_DATA,
    ];

    #[derive(Clone, Copy)]
    enum Slot {
        SopClass,
        SopUid,
        StudyDate,
        Modality,
        Manufacturer,
        Description,
        Model,
        DisplayRate,
        PatientId,
        ScanningSequence,
        SequenceVariant,
        CineRate,
        SliceThickness,
        RepetitionTime,
        EchoTime,
        InversionTime,
        FrameTime,
        CardiacImages,
        ImagerSpacing,
        StudyUid,
        SeriesUid,
        InstanceNumber,
        Samples,
        Photometric,
        Frames,
        Rows,
        Columns,
        PixelSpacing,
        BitsAllocated,
        BitsStored,
        PixelData,
    }

    /// A value as encoded: its VR and bytes (`None` for undefined length).
    type Raw<'a> = (VR, Option<&'a [u8]>);

    /// The first 2D region's attributes (raw) of one Sequence of Ultrasound Regions item.
    #[derive(Default, Clone, Copy)]
    struct Region<'a> {
        spatial: Option<&'a [u8]>,
        dx: Option<&'a [u8]>,
        dy: Option<&'a [u8]>,
        units: Option<&'a [u8]>,
        last: Option<Tag>,
    }

    struct Gather<'a> {
        values: [Option<Raw<'a>>; TAGS.len()],
        /// Last top-level tag seen: values must come in ascending order (as dicom-object keeps
        /// them), else the file goes through the full reader.
        last: Option<Tag>,
        unsupported: bool,
        in_regions: bool,
        regions: Vec<Region<'a>>,
        /// Top-level fragments seen (the offset table included), their bytes and hash.
        fragments: usize,
        encoded: u64,
        hash: Option<Sha256>,
    }

    impl<'a> Visitor<'a> for Gather<'a> {
        fn element(&mut self, level: usize, tag: Tag, vr: VR, value: Option<&'a [u8]>) {
            match level {
                0 => {
                    if self.last.is_some_and(|t| t >= tag) {
                        self.unsupported = true;
                    }
                    self.last = Some(tag);
                    self.in_regions = tag == tags::SEQUENCE_OF_ULTRASOUND_REGIONS;
                    if self.in_regions && vr != VR::SQ {
                        self.unsupported = true;
                    }
                    if let Ok(k) = TAGS.binary_search(&tag) {
                        self.values[k] = Some((vr, value));
                    }
                    if tag == tags::PIXEL_DATA
                        && let (Some(h), Some(v)) = (self.hash.as_mut(), value)
                    {
                        h.update(v);
                    }
                }
                1 if self.in_regions => {
                    let Some(r) = self.regions.last_mut() else {
                        self.unsupported = true;
                        return;
                    };
                    if r.last.is_some_and(|t| t >= tag) {
                        self.unsupported = true;
                    }
                    r.last = Some(tag);
                    let want = |expected: VR| {
                        if vr == expected { Ok(value) } else { Err(()) }
                    };
                    let slot = match tag {
                        t if t == tags::REGION_SPATIAL_FORMAT => (&mut r.spatial, want(VR::US)),
                        t if t == tags::PHYSICAL_DELTA_X => (&mut r.dx, want(VR::FD)),
                        t if t == tags::PHYSICAL_DELTA_Y => (&mut r.dy, want(VR::FD)),
                        t if t == tags::PHYSICAL_UNITS_X_DIRECTION => (&mut r.units, want(VR::US)),
                        _ => return,
                    };
                    match slot {
                        (s, Ok(Some(v))) => *s = Some(v),
                        _ => self.unsupported = true,
                    }
                }
                _ => {}
            }
        }

        fn item(&mut self, level: usize) {
            if level == 1 && self.in_regions {
                self.regions.push(Region::default());
            }
        }

        fn fragment(&mut self, level: usize, bytes: &'a [u8]) {
            if level != 0 {
                return;
            }
            self.fragments += 1;
            if self.fragments > 1 {
                self.encoded += bytes.len() as u64;
                if let Some(h) = self.hash.as_mut() {
                    h.update(bytes);
                }
            }
        }
    }

    /// Neither the value nor its absence can be told apart from what dicom-object would give:
    /// the file goes through the full reader.
    struct Unsupported;

    type Out<T> = Result<T, Unsupported>;

    /// Printable ASCII (and NUL padding): decoded alike by every character set.
    fn ascii(bytes: &[u8]) -> Out<&str> {
        if bytes.iter().all(|&b| b == 0 || (0x20..0x7F).contains(&b)) {
            std::str::from_utf8(bytes).map_err(|_| Unsupported)
        } else {
            Err(Unsupported)
        }
    }

    fn trim_both(s: &str) -> &str {
        s.trim_matches(|c: char| c.is_whitespace() || c == '\0')
    }

    /// `super::text`: `to_str` of the value (parts trimmed of trailing padding, joined by
    /// backslashes), or the lossy UTF-8 of a UN value; then trimmed.
    fn text(raw: Option<Raw<'_>>) -> Out<String> {
        let Some((vr, value)) = raw else {
            return Ok(String::new());
        };
        let Some(bytes) = value else {
            return Err(Unsupported);
        };
        if bytes.is_empty() {
            return Ok(String::new());
        }
        if vr == VR::UN {
            return Ok(trim_both(&String::from_utf8_lossy(bytes)).to_string());
        }
        if !crate::scan::splits_on_backslash(vr) {
            return Err(Unsupported);
        }
        let s = ascii(bytes)?;
        let joined = if s.contains('\\') {
            s.split('\\')
                .map(|p| p.trim_end_matches([' ', '\0']))
                .collect::<Vec<_>>()
                .join("\\")
        } else {
            s.trim_end_matches([' ', '\0']).to_string()
        };
        Ok(trim_both(&joined).to_string())
    }

    fn finite(v: Vec<f64>) -> Vec<f64> {
        v.into_iter().filter(|x| x.is_finite()).collect()
    }

    /// `super::floats`.
    fn floats(raw: Option<Raw<'_>>) -> Out<Vec<f64>> {
        let Some((vr, value)) = raw else {
            return Ok(Vec::new());
        };
        let Some(bytes) = value else {
            return Err(Unsupported);
        };
        if vr == VR::UN && !bytes.is_empty() {
            return Ok(finite(
                text(raw)?
                    .split('\\')
                    .filter_map(|t| t.trim().parse::<f64>().ok())
                    .collect(),
            ));
        }
        if bytes.is_empty() {
            return Ok(Vec::new());
        }
        if !crate::scan::splits_on_backslash(vr) {
            return Err(Unsupported);
        }
        let parsed: Result<Vec<f64>, _> = ascii(bytes)?
            .split('\\')
            .map(|p| trim_both(p).parse::<f64>())
            .collect();
        Ok(parsed.map(finite).unwrap_or_default())
    }

    fn float(raw: Option<Raw<'_>>) -> Out<Option<f64>> {
        Ok(floats(raw)?.first().copied())
    }

    fn pair(raw: Option<Raw<'_>>) -> Out<Option<(f64, f64)>> {
        Ok(match floats(raw)?.as_slice() {
            [a, b, ..] => Some((*a, *b)),
            _ => None,
        })
    }

    fn first_u16(bytes: &[u8]) -> Option<u16> {
        (bytes.len() >= 2).then(|| u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    /// `to_int::<T>()` of a defined, non-UN value: the first part of a string, or the first
    /// unsigned short.
    fn int<T: std::str::FromStr + TryFrom<u16>>(vr: VR, bytes: &[u8]) -> Out<Option<T>> {
        if bytes.is_empty() {
            return Ok(None);
        }
        if vr == VR::US {
            return Ok(first_u16(bytes).and_then(|v| T::try_from(v).ok()));
        }
        if !crate::scan::splits_on_backslash(vr) {
            return Err(Unsupported);
        }
        let s = ascii(bytes)?;
        let first = s.split('\\').next().unwrap_or("");
        Ok(trim_both(first).parse::<T>().ok())
    }

    /// `super::u16_of`.
    fn u16_of(raw: Option<Raw<'_>>) -> Out<Option<u16>> {
        match raw {
            None => Ok(None),
            Some((_, None)) => Err(Unsupported),
            Some((VR::UN, Some(b))) if !b.is_empty() => Ok(first_u16(b)),
            Some((vr, Some(b))) => int::<u16>(vr, b),
        }
    }

    /// `super::i64_of`.
    fn i64_of(raw: Option<Raw<'_>>) -> Out<Option<i64>> {
        match raw {
            None => Ok(None),
            Some((_, None)) => Err(Unsupported),
            Some((VR::UN, Some(b))) if !b.is_empty() => {
                let t = text(raw)?;
                Ok(t.split('\\').next().and_then(|p| p.trim().parse().ok()))
            }
            Some((vr, Some(b))) => int::<i64>(vr, b),
        }
    }

    /// `to_int::<u64>()` as the geometry check reads it (a UN value gives its first byte).
    fn u64_of(raw: Option<Raw<'_>>) -> Out<Option<u64>> {
        match raw {
            None => Ok(None),
            Some((_, None)) => Err(Unsupported),
            Some((VR::UN, Some(b))) => Ok(b.first().map(|&v| v as u64)),
            Some((vr, Some(b))) => int::<u64>(vr, b),
        }
    }

    /// `to_int::<u32>()` of Cardiac Number of Images (a UN value gives its first byte).
    fn u32_direct(raw: Option<Raw<'_>>) -> Out<Option<u32>> {
        match raw {
            None => Ok(None),
            Some((_, None)) => Err(Unsupported),
            Some((VR::UN, Some(b))) => Ok(b.first().map(|&v| v as u32)),
            Some((vr, Some(b))) => int::<u32>(vr, b),
        }
    }

    /// The record, `Ok(None)` when the file must go through the full reader.
    pub(super) fn extract(bytes: &[u8], hash: bool) -> Result<Option<InstanceRecord>, ReadError> {
        let Some(part10) = read::part10_dataset(bytes)? else {
            return Ok(None);
        };
        if !part10.encoding.little_endian {
            return Ok(None);
        }
        let mut g = Gather {
            values: [None; TAGS.len()],
            last: None,
            unsupported: false,
            in_regions: false,
            regions: Vec::new(),
            fragments: 0,
            encoded: 0,
            hash: hash.then(Sha256::new),
        };
        scan::scan_dataset_visit(part10.dataset, part10.encoding, &mut g)?;
        if g.unsupported {
            return Ok(None);
        }
        let Ok(mut record) = build(&g, part10.transfer_syntax) else {
            return Ok(None);
        };
        // The full reader's refusal of implausible encapsulated pixel data.
        if let Some((_, None)) = g.values[Slot::PixelData as usize] {
            let v = |s: Slot| u64_of(g.values[s as usize]);
            let geometry = (|| -> Out<EncapsulatedGeometry> {
                Ok(EncapsulatedGeometry {
                    frames: v(Slot::Frames)?,
                    rows: v(Slot::Rows)?,
                    columns: v(Slot::Columns)?,
                    samples_per_pixel: v(Slot::Samples)?,
                    bits_allocated: v(Slot::BitsAllocated)?,
                })
            })();
            let Ok(geometry) = geometry else {
                return Ok(None);
            };
            read::check_encapsulated_geometry(geometry, g.fragments.saturating_sub(1), g.encoded)?;
        }
        if let Some(h) = g.hash
            && g.values[Slot::PixelData as usize].is_some()
        {
            record.pixel_sha256 = super::hex(&h.finalize());
        }
        Ok(Some(record))
    }

    fn build(g: &Gather<'_>, transfer_syntax: String) -> Out<InstanceRecord> {
        let v = |s: Slot| g.values[s as usize];
        let pixel = v(Slot::PixelData);
        if let Some((vr, _)) = pixel
            && !matches!(vr, VR::OB | VR::OW | VR::UN)
        {
            return Err(Unsupported);
        }
        let modality = text(v(Slot::Modality))?;
        let frames = i64_of(v(Slot::Frames))?
            .and_then(|n| u32::try_from(n).ok())
            .or(pixel.map(|_| 1));
        let per_second = |r: Option<f64>| r.filter(|r| *r > 0.0).map(|r| 1000.0 / r);
        let frame_time_ms = match float(v(Slot::FrameTime))?.filter(|t| *t > 0.0) {
            Some(t) => Some(t),
            None => match per_second(float(v(Slot::CineRate))?) {
                Some(t) => Some(t),
                None => per_second(float(v(Slot::DisplayRate))?),
            },
        };
        let (mut us_delta, mut us_units) = (None, None);
        for r in &g.regions {
            let spatial = r.spatial.and_then(first_u16);
            let f = |b: Option<&[u8]>| {
                b.filter(|b| b.len() >= 8)
                    .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            };
            if spatial == Some(1)
                && let (Some(dx), Some(dy)) = (f(r.dx), f(r.dy))
            {
                us_delta = Some((dx, dy));
                us_units = r.units.and_then(first_u16);
                break;
            }
        }
        let scanning_sequence = text(v(Slot::ScanningSequence))?;
        let description = text(v(Slot::Description))?;
        let tr = float(v(Slot::RepetitionTime))?;
        let te = float(v(Slot::EchoTime))?;
        let ti = float(v(Slot::InversionTime))?;
        let phases = u32_direct(v(Slot::CardiacImages))?
            .unwrap_or(0)
            .max(frames.unwrap_or(1));
        let mr_kind = (modality == "MR")
            .then(|| infer_mr_kind(&scanning_sequence, &description, tr, te, ti, phases));
        Ok(InstanceRecord {
            patient_id: text(v(Slot::PatientId))?,
            study_instance_uid: text(v(Slot::StudyUid))?,
            series_instance_uid: text(v(Slot::SeriesUid))?,
            sop_instance_uid: text(v(Slot::SopUid))?,
            study_date: text(v(Slot::StudyDate))?,
            modality,
            sop_class_uid: text(v(Slot::SopClass))?,
            manufacturer: text(v(Slot::Manufacturer))?,
            model: text(v(Slot::Model))?,
            series_description: description,
            instance_number: i64_of(v(Slot::InstanceNumber))?,
            rows: u16_of(v(Slot::Rows))?.map(u32::from),
            columns: u16_of(v(Slot::Columns))?.map(u32::from),
            frames,
            frame_time_ms,
            frame_rate: frame_time_ms.map(|t| 1000.0 / t),
            pixel_spacing_mm: match pair(v(Slot::PixelSpacing))? {
                Some(p) => Some(p),
                None => pair(v(Slot::ImagerSpacing))?,
            },
            us_physical_delta: us_delta,
            us_physical_units: us_units,
            slice_thickness_mm: float(v(Slot::SliceThickness))?,
            photometric: text(v(Slot::Photometric))?,
            samples_per_pixel: u16_of(v(Slot::Samples))?,
            bits_allocated: u16_of(v(Slot::BitsAllocated))?,
            bits_stored: u16_of(v(Slot::BitsStored))?,
            transfer_syntax,
            scanning_sequence,
            sequence_variant: text(v(Slot::SequenceVariant))?,
            echo_time_ms: te,
            repetition_time_ms: tr,
            inversion_time_ms: ti,
            mr_kind,
            pixel_sha256: String::new(),
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn tags_are_sorted_and_match_their_slots() {
            assert!(TAGS.windows(2).all(|w| w[0] < w[1]));
            for (slot, tag) in [
                (Slot::SopClass, tags::SOP_CLASS_UID),
                (Slot::SopUid, tags::SOP_INSTANCE_UID),
                (Slot::StudyDate, tags::STUDY_DATE),
                (Slot::Modality, tags::MODALITY),
                (Slot::Manufacturer, tags::MANUFACTURER),
                (Slot::Description, tags::SERIES_DESCRIPTION),
                (Slot::Model, tags::MANUFACTURER_MODEL_NAME),
                (Slot::DisplayRate, tags::RECOMMENDED_DISPLAY_FRAME_RATE),
                (Slot::PatientId, tags::PATIENT_ID),
                (Slot::ScanningSequence, tags::SCANNING_SEQUENCE),
                (Slot::SequenceVariant, tags::SEQUENCE_VARIANT),
                (Slot::CineRate, tags::CINE_RATE),
                (Slot::SliceThickness, tags::SLICE_THICKNESS),
                (Slot::RepetitionTime, tags::REPETITION_TIME),
                (Slot::EchoTime, tags::ECHO_TIME),
                (Slot::InversionTime, tags::INVERSION_TIME),
                (Slot::FrameTime, tags::FRAME_TIME),
                (Slot::CardiacImages, tags::CARDIAC_NUMBER_OF_IMAGES),
                (Slot::ImagerSpacing, tags::IMAGER_PIXEL_SPACING),
                (Slot::StudyUid, tags::STUDY_INSTANCE_UID),
                (Slot::SeriesUid, tags::SERIES_INSTANCE_UID),
                (Slot::InstanceNumber, tags::INSTANCE_NUMBER),
                (Slot::Samples, tags::SAMPLES_PER_PIXEL),
                (Slot::Photometric, tags::PHOTOMETRIC_INTERPRETATION),
                (Slot::Frames, tags::NUMBER_OF_FRAMES),
                (Slot::Rows, tags::ROWS),
                (Slot::Columns, tags::COLUMNS),
                (Slot::PixelSpacing, tags::PIXEL_SPACING),
                (Slot::BitsAllocated, tags::BITS_ALLOCATED),
                (Slot::BitsStored, tags::BITS_STORED),
                (Slot::PixelData, tags::PIXEL_DATA),
            ] {
                assert_eq!(TAGS[slot as usize], tag);
            }
        }
    }
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
