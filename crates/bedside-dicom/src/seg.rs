//! DICOM Segmentation (SEG) objects: binary segments, one frame per segment and source frame,
//! referencing the frames of a multi-frame image (an ultrasound cine) or the instances of a
//! single-frame series.
//!
//! The object is the Segmentation IOD (PS3.3 A.51) with `SegmentationType` BINARY
//! (`BitsAllocated` 1; pixels packed eight to a byte, first pixel in the least significant bit,
//! frames following each other without padding). Each frame carries, in its per-frame
//! functional group, the segment it belongs to (Segment Identification), where it came from
//! (Derivation Image → Source Image with `ReferencedFrameNumber` for multi-frame sources) and
//! its position in the two dimensions segment × source frame (Frame Content →
//! `DimensionIndexValues`, the second index held in `TemporalPositionIndex`). Sources without
//! a frame of reference (ultrasound) need no plane position or orientation, and none is
//! written. Sources with one (CT, MR, PET: [`PlaneGeometry`], read from the classic image
//! attributes or an enhanced image's functional groups) give the segmentation their Frame of
//! Reference, Pixel Measures and Plane Orientation (shared) and each frame's Plane Position,
//! and the second dimension is then Image Position (Patient), indexed in order along the
//! slice normal, as the IOD requires of segmentations in a frame of reference.
//!
//! ```
//! use bedside_dicom::seg::{Segment, SegmentAlgorithm, SegmentFrame, Segmentation, SourceImage};
//! use bedside_dicom::sr::SourceStudy;
//! let source = SourceImage {
//!     sop_class_uid: "1.2.840.10008.5.1.4.1.1.3.1".into(),
//!     sop_instance_uid: "2.25.1".into(),
//!     series_instance_uid: "2.25.2".into(),
//!     number_of_frames: 2,
//!     rows: 2,
//!     columns: 4,
//!     geometry: None,
//! };
//! let study = SourceStudy { study_instance_uid: "2.25.3".into(), ..Default::default() };
//! let mut seg = Segmentation::new(study, vec![source], "2.25.4", "2.25.5");
//! seg.content_date = "20260101".into();
//! seg.content_time = "120000".into();
//! seg.segments.push(Segment::left_ventricle(
//!     SegmentAlgorithm::Manual,
//!     vec![SegmentFrame { source: 0, frame: 2, mask: vec![0, 1, 1, 0, 0, 1, 1, 0] }],
//! ));
//! let obj = seg.to_object().unwrap();
//! assert!(bedside_dicom::write::encode_file(obj, bedside_dicom::ts::EXPLICIT_VR_LE).is_ok());
//! ```

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::elements::{
    code_item, put_ds, put_empty, put_is, put_seq, put_str, put_tag, put_u16, put_u32,
};
use crate::sr::{Code, SourceStudy};

/// SOP Class UID of Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// Why a segmentation could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegError {
    /// A required UID is missing or malformed.
    #[error("{0} is missing or not a valid UID")]
    InvalidUid(&'static str),
    /// There is nothing to write.
    #[error("the segmentation has no segments or no frames")]
    Empty,
    /// A mask does not have one value per pixel of the source.
    #[error("segment {segment} frame {frame}: mask has {actual} pixels, the source has {expected}")]
    MaskSize {
        /// Segment number (1-based).
        segment: usize,
        /// Frame number in the source (1-based).
        frame: u32,
        /// Pixels needed.
        expected: usize,
        /// Pixels given.
        actual: usize,
    },
    /// A frame refers to a source or frame number that does not exist.
    #[error("segment {segment}: source {source_index} frame {frame} does not exist")]
    NoSuchSourceFrame {
        /// Segment number (1-based).
        segment: usize,
        /// Index into the sources.
        source_index: usize,
        /// Frame number (1-based).
        frame: u32,
    },
    /// The same source frame appears twice in one segment.
    #[error("segment {segment}: source {source_index} frame {frame} is given twice")]
    DuplicateFrame {
        /// Segment number (1-based).
        segment: usize,
        /// Index into the sources.
        source_index: usize,
        /// Frame number (1-based).
        frame: u32,
    },
    /// The sources differ in size.
    #[error("the source images differ in rows or columns")]
    SourceGeometry,
    /// A source attribute is missing.
    #[error("the source image lacks {0}")]
    MissingSourceAttribute(&'static str),
    /// The sources mix frames of reference (or some have one and others not).
    #[error("the source images are not all in one frame of reference")]
    MixedFrameOfReference,
    /// A text value does not fit its VR.
    #[error("{what}: {reason}")]
    InvalidText {
        /// The attribute.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// More frames than a 32-bit count or a packed pixel stream can address.
    #[error("the segmentation is too large ({0} frames)")]
    TooLarge(usize),
}

/// Where the frames of a source in a frame of reference lie in the patient.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaneGeometry {
    /// Frame of Reference UID.
    pub frame_of_reference_uid: String,
    /// Image Orientation (Patient): the row, then the column direction cosines.
    pub orientation: [f64; 6],
    /// Pixel Spacing in mm: between rows, then between columns.
    pub pixel_spacing: [f64; 2],
    /// Slice Thickness in mm, when the source gives it.
    pub slice_thickness: Option<f64>,
    /// Image Position (Patient) of each frame, in frame order.
    pub positions: Vec<[f64; 3]>,
}

impl PlaneGeometry {
    /// The distance of frame `frame` (1-based) along the slice normal.
    fn depth(&self, frame: u32) -> f64 {
        let o = &self.orientation;
        let n = [
            o[1] * o[5] - o[2] * o[4],
            o[2] * o[3] - o[0] * o[5],
            o[0] * o[4] - o[1] * o[3],
        ];
        self.positions
            .get(frame.saturating_sub(1) as usize)
            .map_or(0.0, |p| p[0] * n[0] + p[1] * n[1] + p[2] * n[2])
    }

    /// Reads the geometry of an image with a Frame of Reference: the classic attributes
    /// (Image Orientation/Position (Patient), Pixel Spacing) or, for enhanced multi-frame
    /// images, the shared and per-frame functional groups.
    fn from_object(
        obj: &InMemDicomObject,
        frame_of_reference_uid: String,
        frames: u32,
    ) -> Result<Self, SegError> {
        // Decimal strings as text split on backslashes: one way for values read from a file
        // and for those built in memory as one string.
        fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
            let text = obj.element_opt(tag).ok().flatten()?.to_str().ok()?;
            text.split('\\')
                .map(|x| x.trim_matches(['\0', ' ']).parse::<f64>().ok())
                .collect::<Option<Vec<f64>>>()
                .filter(|v| v.iter().all(|x| x.is_finite()))
        }
        fn item(obj: &InMemDicomObject, seq: Tag) -> Option<&InMemDicomObject> {
            obj.element_opt(seq)
                .ok()
                .flatten()
                .and_then(|e| e.items())
                .and_then(|items| items.first())
        }
        // An attribute in a functional group: per-frame first, else shared, else top level.
        let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
        let per_frame: Vec<&InMemDicomObject> = obj
            .element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .ok()
            .flatten()
            .and_then(|e| e.items())
            .map(|items| items.iter().collect())
            .unwrap_or_default();
        let grouped = |frame: Option<usize>, group: Tag, tag: Tag| -> Option<Vec<f64>> {
            frame
                .and_then(|f| per_frame.get(f))
                .and_then(|pf| item(pf, group))
                .and_then(|g| floats(g, tag))
                .or_else(|| {
                    shared
                        .and_then(|s| item(s, group))
                        .and_then(|g| floats(g, tag))
                })
                .or_else(|| floats(obj, tag))
        };
        let orientation: [f64; 6] = grouped(
            Some(0),
            tags::PLANE_ORIENTATION_SEQUENCE,
            tags::IMAGE_ORIENTATION_PATIENT,
        )
        .and_then(|v| v.try_into().ok())
        .ok_or(SegError::MissingSourceAttribute(
            "Image Orientation (Patient)",
        ))?;
        let pixel_spacing: [f64; 2] =
            grouped(Some(0), tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING)
                .and_then(|v| v.try_into().ok())
                .filter(|v: &[f64; 2]| v.iter().all(|x| *x > 0.0))
                .ok_or(SegError::MissingSourceAttribute("Pixel Spacing"))?;
        let slice_thickness = grouped(
            Some(0),
            tags::PIXEL_MEASURES_SEQUENCE,
            tags::SLICE_THICKNESS,
        )
        .and_then(|v| v.first().copied())
        .filter(|t| *t > 0.0);
        let positions = (0..frames as usize)
            .map(|f| {
                grouped(
                    Some(f),
                    tags::PLANE_POSITION_SEQUENCE,
                    tags::IMAGE_POSITION_PATIENT,
                )
                .and_then(|v| v.try_into().ok())
                .ok_or(SegError::MissingSourceAttribute("Image Position (Patient)"))
            })
            .collect::<Result<Vec<[f64; 3]>, _>>()?;
        Ok(Self {
            frame_of_reference_uid,
            orientation,
            pixel_spacing,
            slice_thickness,
            positions,
        })
    }
}

/// One image that the segmentation is derived from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceImage {
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// Series Instance UID.
    pub series_instance_uid: String,
    /// Number of Frames (1 for a single-frame image).
    pub number_of_frames: u32,
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub columns: u16,
    /// Where the frames lie, for sources in a frame of reference (`None` for ultrasound).
    pub geometry: Option<PlaneGeometry>,
}

impl SourceImage {
    /// Reads the references and geometry from a source image (with its plane geometry when
    /// it has a Frame of Reference).
    pub fn from_object(obj: &InMemDicomObject) -> Result<Self, SegError> {
        let text = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_str().ok())
                .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
                .filter(|v| !v.is_empty())
        };
        let int = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_int::<u32>().ok())
        };
        let number_of_frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
        let geometry = match text(tags::FRAME_OF_REFERENCE_UID) {
            Some(uid) if crate::uid::is_valid(&uid) => {
                Some(PlaneGeometry::from_object(obj, uid, number_of_frames)?)
            }
            Some(_) => return Err(SegError::InvalidUid("source Frame of Reference UID")),
            None => None,
        };
        let rows = int(tags::ROWS).ok_or(SegError::MissingSourceAttribute("Rows"))?;
        let columns = int(tags::COLUMNS).ok_or(SegError::MissingSourceAttribute("Columns"))?;
        Ok(Self {
            sop_class_uid: text(tags::SOP_CLASS_UID)
                .ok_or(SegError::MissingSourceAttribute("SOP Class UID"))?,
            sop_instance_uid: text(tags::SOP_INSTANCE_UID)
                .ok_or(SegError::MissingSourceAttribute("SOP Instance UID"))?,
            series_instance_uid: text(tags::SERIES_INSTANCE_UID)
                .ok_or(SegError::MissingSourceAttribute("Series Instance UID"))?,
            number_of_frames,
            rows: u16::try_from(rows).map_err(|_| SegError::MissingSourceAttribute("Rows"))?,
            columns: u16::try_from(columns)
                .map_err(|_| SegError::MissingSourceAttribute("Columns"))?,
            geometry,
        })
    }

    fn is_multiframe(&self) -> bool {
        self.number_of_frames > 1
    }
}

/// How a segment was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentAlgorithm {
    /// Drawn by a person.
    Manual,
    /// Drawn by a person with the help of an algorithm (named).
    SemiAutomatic(String),
    /// Computed by an algorithm (named), such as a model or a phantom's ground truth.
    Automatic(String),
}

/// One mask frame of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFrame {
    /// Index into [`Segmentation::sources`].
    pub source: usize,
    /// Frame number in that source (1-based; 1 for single-frame sources).
    pub frame: u32,
    /// One value per pixel, row by row; non-zero is inside the segment.
    pub mask: Vec<u8>,
}

/// One segment: what it is and its mask frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Segment Label.
    pub label: String,
    /// Segmented Property Category (for example SCT 91723000 "Anatomical structure").
    pub category: Code,
    /// Segmented Property Type (for example SCT 87878005 "Left ventricle of heart").
    pub property_type: Code,
    /// How it was made.
    pub algorithm: SegmentAlgorithm,
    /// Mask frames (any order; written sorted by source and frame).
    pub frames: Vec<SegmentFrame>,
}

impl Segment {
    /// The left ventricle (SCT 87878005) as an anatomical structure (SCT 91723000).
    pub fn left_ventricle(algorithm: SegmentAlgorithm, frames: Vec<SegmentFrame>) -> Self {
        Self {
            label: "Left ventricle".into(),
            category: Code::new("91723000", "SCT", "Anatomical Structure"),
            property_type: Code::new("87878005", "SCT", "Left ventricle of heart"),
            algorithm,
            frames,
        }
    }
}

/// A Segmentation instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Segmentation {
    /// Patient and study of the sources.
    pub study: SourceStudy,
    /// Images the segments are derived from (all in one study, same rows and columns).
    pub sources: Vec<SourceImage>,
    /// Segments, numbered from 1 in this order.
    pub segments: Vec<Segment>,
    /// Series Instance UID of the segmentation.
    pub series_instance_uid: String,
    /// SOP Instance UID of the segmentation.
    pub sop_instance_uid: String,
    /// Series Number.
    pub series_number: i64,
    /// Instance Number.
    pub instance_number: i64,
    /// Series Description (omitted when empty).
    pub series_description: String,
    /// Content Label (CS: capitals, digits, space, underscore; up to 16 characters).
    pub content_label: String,
    /// Content Description (may be empty).
    pub content_description: String,
    /// Content Creator's Name (PN; may be empty).
    pub content_creator: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Manufacturer's Model Name.
    pub model_name: String,
    /// Device Serial Number.
    pub device_serial_number: String,
    /// Software Versions.
    pub software_versions: String,
    /// Content Date (`YYYYMMDD`).
    pub content_date: String,
    /// Content Time (`HHMMSS`).
    pub content_time: String,
    /// Leave out frames whose mask is empty (the source frame then has no frame in the
    /// segment, which readers take as empty).
    pub skip_empty_frames: bool,
}

impl Segmentation {
    /// A segmentation of `sources` with the given UIDs and Bedside's equipment attributes;
    /// segments and content date and time still to be set.
    pub fn new(
        study: SourceStudy,
        sources: Vec<SourceImage>,
        series_uid: &str,
        sop_uid: &str,
    ) -> Self {
        Self {
            study,
            sources,
            segments: Vec::new(),
            series_instance_uid: series_uid.into(),
            sop_instance_uid: sop_uid.into(),
            series_number: 9101,
            instance_number: 1,
            series_description: String::new(),
            content_label: "SEGMENTATION".into(),
            content_description: String::new(),
            content_creator: String::new(),
            manufacturer: "Bedside".into(),
            model_name: "bedside".into(),
            device_serial_number: "1".into(),
            software_versions: env!("CARGO_PKG_VERSION").into(),
            content_date: String::new(),
            content_time: String::new(),
            skip_empty_frames: false,
        }
    }

    fn check(&self) -> Result<(u16, u16), SegError> {
        for (uid, what) in [
            (&self.sop_instance_uid, "SOP Instance UID"),
            (&self.series_instance_uid, "Series Instance UID"),
            (&self.study.study_instance_uid, "Study Instance UID"),
        ] {
            if !crate::uid::is_valid(uid) {
                return Err(SegError::InvalidUid(what));
            }
        }
        for s in &self.sources {
            for (uid, what) in [
                (&s.sop_instance_uid, "source SOP Instance UID"),
                (&s.sop_class_uid, "source SOP Class UID"),
                (&s.series_instance_uid, "source Series Instance UID"),
            ] {
                if !crate::uid::is_valid(uid) {
                    return Err(SegError::InvalidUid(what));
                }
            }
        }
        let label_ok = !self.content_label.is_empty()
            && self.content_label.len() <= 16
            && self
                .content_label
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'_');
        if !label_ok {
            return Err(SegError::InvalidText {
                what: "Content Label",
                reason: "needs 1–16 capitals, digits, spaces or underscores".into(),
            });
        }
        for (v, what, len) in [
            (&self.content_date, "Content Date", 8),
            (&self.content_time, "Content Time", 6),
        ] {
            if v.len() < len || !v.bytes().take(len).all(|b| b.is_ascii_digit()) {
                return Err(SegError::InvalidText {
                    what,
                    reason: format!("needs at least {len} digits"),
                });
            }
        }
        let first = self.sources.first().ok_or(SegError::Empty)?;
        let (rows, columns) = (first.rows, first.columns);
        if self
            .sources
            .iter()
            .any(|s| s.rows != rows || s.columns != columns)
        {
            return Err(SegError::SourceGeometry);
        }
        if rows == 0 || columns == 0 {
            return Err(SegError::SourceGeometry);
        }
        let frame_of_reference = first.geometry.as_ref().map(|g| &g.frame_of_reference_uid);
        if self.sources.iter().any(|s| {
            s.geometry.as_ref().map(|g| &g.frame_of_reference_uid) != frame_of_reference
                || s.geometry
                    .as_ref()
                    .is_some_and(|g| g.positions.len() != s.number_of_frames as usize)
        }) {
            return Err(SegError::MixedFrameOfReference);
        }
        Ok((rows, columns))
    }

    /// The sources' common plane geometry, if they are in a frame of reference.
    fn geometry(&self) -> Option<&PlaneGeometry> {
        self.sources.first().and_then(|s| s.geometry.as_ref())
    }

    /// The frames to write, in order: (segment index, frame) sorted by segment, source, frame.
    fn ordered_frames(&self, pixels: usize) -> Result<Vec<(usize, &SegmentFrame)>, SegError> {
        let mut out = Vec::new();
        for (k, seg) in self.segments.iter().enumerate() {
            let mut frames: Vec<&SegmentFrame> = seg.frames.iter().collect();
            frames.sort_by_key(|f| (f.source, f.frame));
            for (i, f) in frames.iter().enumerate() {
                let exists = self
                    .sources
                    .get(f.source)
                    .is_some_and(|s| f.frame >= 1 && f.frame <= s.number_of_frames);
                if !exists {
                    return Err(SegError::NoSuchSourceFrame {
                        segment: k + 1,
                        source_index: f.source,
                        frame: f.frame,
                    });
                }
                if i > 0 && (frames[i - 1].source, frames[i - 1].frame) == (f.source, f.frame) {
                    return Err(SegError::DuplicateFrame {
                        segment: k + 1,
                        source_index: f.source,
                        frame: f.frame,
                    });
                }
                if f.mask.len() != pixels {
                    return Err(SegError::MaskSize {
                        segment: k + 1,
                        frame: f.frame,
                        expected: pixels,
                        actual: f.mask.len(),
                    });
                }
                if self.skip_empty_frames && f.mask.iter().all(|&v| v == 0) {
                    continue;
                }
                out.push((k, *f));
            }
        }
        if out.is_empty() {
            return Err(SegError::Empty);
        }
        Ok(out)
    }

    /// The data set (no file meta group; write it with [`crate::write::encode_file`] in
    /// Explicit VR Little Endian).
    pub fn to_object(&self) -> Result<InMemDicomObject, SegError> {
        let (rows, columns) = self.check()?;
        let pixels = rows as usize * columns as usize;
        let frames = self.ordered_frames(pixels)?;
        if frames.len() > u32::MAX as usize
            || (frames.len() as u128) * (pixels as u128) > u32::MAX as u128 * 8 - 16
        {
            return Err(SegError::TooLarge(frames.len()));
        }
        // The second dimension: each referenced source frame's position, in source order, or
        // in a frame of reference along the slice normal (the order of Image Position).
        let mut positions: Vec<(usize, u32)> =
            frames.iter().map(|(_, f)| (f.source, f.frame)).collect();
        positions.sort_unstable();
        positions.dedup();
        let geometry = self.geometry();
        if geometry.is_some() {
            let depth = |(s, f): (usize, u32)| {
                self.sources[s]
                    .geometry
                    .as_ref()
                    .map_or(0.0, |g| g.depth(f))
            };
            positions.sort_by(|a, b| depth(*a).total_cmp(&depth(*b)).then(a.cmp(b)));
        }

        let mut obj =
            crate::sr::object_of_study(SEGMENTATION_STORAGE, &self.sop_instance_uid, &self.study);
        // General Series and Segmentation Series.
        crate::sr::put_series(
            &mut obj,
            "SEG",
            &self.series_instance_uid,
            self.series_number,
            &self.series_description,
        );
        // General and Enhanced General Equipment.
        put_str(&mut obj, tags::MANUFACTURER, VR::LO, &self.manufacturer);
        put_str(
            &mut obj,
            tags::MANUFACTURER_MODEL_NAME,
            VR::LO,
            &self.model_name,
        );
        put_str(
            &mut obj,
            tags::DEVICE_SERIAL_NUMBER,
            VR::LO,
            &self.device_serial_number,
        );
        put_str(
            &mut obj,
            tags::SOFTWARE_VERSIONS,
            VR::LO,
            &self.software_versions,
        );
        // General Image and Segmentation Image (Content Identification).
        put_is(&mut obj, tags::INSTANCE_NUMBER, self.instance_number);
        put_str(&mut obj, tags::CONTENT_DATE, VR::DA, &self.content_date);
        put_str(&mut obj, tags::CONTENT_TIME, VR::TM, &self.content_time);
        match geometry {
            // Frame of Reference module.
            Some(g) => {
                put_str(
                    &mut obj,
                    tags::FRAME_OF_REFERENCE_UID,
                    VR::UI,
                    &g.frame_of_reference_uid,
                );
                put_empty(&mut obj, tags::POSITION_REFERENCE_INDICATOR, VR::LO);
            }
            // Type 2C in General Image whenever no plane orientation is given.
            None => put_empty(&mut obj, tags::PATIENT_ORIENTATION, VR::CS),
        }
        put_str(&mut obj, tags::IMAGE_TYPE, VR::CS, "DERIVED\\PRIMARY");
        put_str(&mut obj, tags::CONTENT_LABEL, VR::CS, &self.content_label);
        put_str(
            &mut obj,
            tags::CONTENT_DESCRIPTION,
            VR::LO,
            &self.content_description,
        );
        put_str(
            &mut obj,
            tags::CONTENT_CREATOR_NAME,
            VR::PN,
            &self.content_creator,
        );
        put_str(&mut obj, tags::SEGMENTATION_TYPE, VR::CS, "BINARY");
        put_str(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
        // Image Pixel.
        put_u16(&mut obj, tags::SAMPLES_PER_PIXEL, &[1]);
        put_str(
            &mut obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2",
        );
        put_u16(&mut obj, tags::ROWS, &[rows]);
        put_u16(&mut obj, tags::COLUMNS, &[columns]);
        put_u16(&mut obj, tags::BITS_ALLOCATED, &[1]);
        put_u16(&mut obj, tags::BITS_STORED, &[1]);
        put_u16(&mut obj, tags::HIGH_BIT, &[0]);
        put_u16(&mut obj, tags::PIXEL_REPRESENTATION, &[0]);
        put_is(&mut obj, tags::NUMBER_OF_FRAMES, frames.len() as i64);
        // Segments.
        let segment_items = self
            .segments
            .iter()
            .enumerate()
            .map(|(k, seg)| segment_item(k + 1, seg))
            .collect();
        put_seq(&mut obj, tags::SEGMENT_SEQUENCE, segment_items);
        // Multi-frame Dimension: segment × source frame.
        let organization = crate::uid::from_hash(
            format!("{}/dimension-organization", self.sop_instance_uid).as_bytes(),
        );
        let mut org = InMemDicomObject::new_empty();
        put_str(
            &mut org,
            tags::DIMENSION_ORGANIZATION_UID,
            VR::UI,
            &organization,
        );
        put_seq(&mut obj, tags::DIMENSION_ORGANIZATION_SEQUENCE, vec![org]);
        let dim = |pointer: Tag, group: Tag, label: &str| {
            let mut d = InMemDicomObject::new_empty();
            put_str(
                &mut d,
                tags::DIMENSION_ORGANIZATION_UID,
                VR::UI,
                &organization,
            );
            put_tag(&mut d, tags::DIMENSION_INDEX_POINTER, pointer);
            put_tag(&mut d, tags::FUNCTIONAL_GROUP_POINTER, group);
            put_str(&mut d, tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label);
            d
        };
        put_seq(
            &mut obj,
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                dim(
                    tags::REFERENCED_SEGMENT_NUMBER,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                    "Segment Number",
                ),
                if geometry.is_some() {
                    dim(
                        tags::IMAGE_POSITION_PATIENT,
                        tags::PLANE_POSITION_SEQUENCE,
                        "Image Position (Patient)",
                    )
                } else {
                    dim(
                        tags::TEMPORAL_POSITION_INDEX,
                        tags::FRAME_CONTENT_SEQUENCE,
                        "Source Frame",
                    )
                },
            ],
        );
        // Multi-frame Functional Groups.
        let mut shared = InMemDicomObject::new_empty();
        if let Some(g) = geometry {
            let mut measures = InMemDicomObject::new_empty();
            put_ds(&mut measures, tags::PIXEL_SPACING, &g.pixel_spacing);
            if let Some(t) = g.slice_thickness {
                put_ds(&mut measures, tags::SLICE_THICKNESS, &[t]);
            }
            put_seq(&mut shared, tags::PIXEL_MEASURES_SEQUENCE, vec![measures]);
            let mut orientation = InMemDicomObject::new_empty();
            put_ds(
                &mut orientation,
                tags::IMAGE_ORIENTATION_PATIENT,
                &g.orientation,
            );
            put_seq(
                &mut shared,
                tags::PLANE_ORIENTATION_SEQUENCE,
                vec![orientation],
            );
        }
        put_seq(
            &mut obj,
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![shared],
        );
        let index: std::collections::HashMap<(usize, u32), usize> =
            positions.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let per_frame = frames
            .iter()
            .map(|(k, f)| {
                let position = index.get(&(f.source, f.frame)).map_or(0, |p| p + 1) as u32;
                self.frame_item(*k + 1, f, position)
            })
            .collect();
        put_seq(
            &mut obj,
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            per_frame,
        );
        // Common Instance Reference: every source, by series.
        let mut series: Vec<&str> = Vec::new();
        for src in &self.sources {
            if !series.contains(&src.series_instance_uid.as_str()) {
                series.push(&src.series_instance_uid);
            }
        }
        let series_items = series
            .iter()
            .map(|uid| {
                let instances = self
                    .sources
                    .iter()
                    .filter(|src| src.series_instance_uid == *uid)
                    .map(|src| {
                        let mut i = InMemDicomObject::new_empty();
                        put_str(
                            &mut i,
                            tags::REFERENCED_SOP_CLASS_UID,
                            VR::UI,
                            &src.sop_class_uid,
                        );
                        put_str(
                            &mut i,
                            tags::REFERENCED_SOP_INSTANCE_UID,
                            VR::UI,
                            &src.sop_instance_uid,
                        );
                        i
                    })
                    .collect();
                let mut item = InMemDicomObject::new_empty();
                put_seq(&mut item, tags::REFERENCED_INSTANCE_SEQUENCE, instances);
                put_str(&mut item, tags::SERIES_INSTANCE_UID, VR::UI, uid);
                item
            })
            .collect();
        put_seq(&mut obj, tags::REFERENCED_SERIES_SEQUENCE, series_items);
        // Pixel Data: one bit per pixel, frames back to back.
        let packed = pack_bits(frames.iter().map(|(_, f)| f.mask.as_slice()));
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(packed.into()),
        ));
        Ok(obj)
    }

    fn frame_item(&self, segment: usize, f: &SegmentFrame, position: u32) -> InMemDicomObject {
        let src = &self.sources[f.source];
        let mut source_ref = InMemDicomObject::new_empty();
        put_str(
            &mut source_ref,
            tags::REFERENCED_SOP_CLASS_UID,
            VR::UI,
            &src.sop_class_uid,
        );
        put_str(
            &mut source_ref,
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &src.sop_instance_uid,
        );
        if src.is_multiframe() {
            put_is(
                &mut source_ref,
                tags::REFERENCED_FRAME_NUMBER,
                f.frame as i64,
            );
        }
        // The masks are drawn on the source's own pixel grid.
        put_str(
            &mut source_ref,
            tags::SPATIAL_LOCATIONS_PRESERVED,
            VR::CS,
            "YES",
        );
        put_seq(
            &mut source_ref,
            tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
            vec![code_item(
                "121322",
                "DCM",
                "Source image for image processing operation",
            )],
        );
        let mut derivation = InMemDicomObject::new_empty();
        put_seq(
            &mut derivation,
            tags::DERIVATION_CODE_SEQUENCE,
            vec![code_item("113076", "DCM", "Segmentation")],
        );
        put_seq(
            &mut derivation,
            tags::SOURCE_IMAGE_SEQUENCE,
            vec![source_ref],
        );

        let mut content = InMemDicomObject::new_empty();
        if src.geometry.is_none() {
            put_u32(&mut content, tags::TEMPORAL_POSITION_INDEX, &[position]);
        }
        put_u32(
            &mut content,
            tags::DIMENSION_INDEX_VALUES,
            &[segment as u32, position],
        );
        let mut ident = InMemDicomObject::new_empty();
        put_u16(
            &mut ident,
            tags::REFERENCED_SEGMENT_NUMBER,
            &[segment as u16],
        );

        let mut item = InMemDicomObject::new_empty();
        put_seq(&mut item, tags::DERIVATION_IMAGE_SEQUENCE, vec![derivation]);
        put_seq(&mut item, tags::FRAME_CONTENT_SEQUENCE, vec![content]);
        if let Some(p) = src
            .geometry
            .as_ref()
            .and_then(|g| g.positions.get(f.frame.saturating_sub(1) as usize))
        {
            let mut plane = InMemDicomObject::new_empty();
            put_ds(&mut plane, tags::IMAGE_POSITION_PATIENT, p);
            put_seq(&mut item, tags::PLANE_POSITION_SEQUENCE, vec![plane]);
        }
        put_seq(
            &mut item,
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            vec![ident],
        );
        item
    }
}

fn segment_item(number: usize, seg: &Segment) -> InMemDicomObject {
    let code = |c: &Code| code_item(&c.value, &c.scheme, &c.meaning);
    let mut item = InMemDicomObject::new_empty();
    put_u16(&mut item, tags::SEGMENT_NUMBER, &[number as u16]);
    put_str(&mut item, tags::SEGMENT_LABEL, VR::LO, &seg.label);
    put_seq(
        &mut item,
        tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
        vec![code(&seg.category)],
    );
    put_seq(
        &mut item,
        tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
        vec![code(&seg.property_type)],
    );
    let (kind, name) = match &seg.algorithm {
        SegmentAlgorithm::Manual => ("MANUAL", None),
        SegmentAlgorithm::SemiAutomatic(n) => ("SEMIAUTOMATIC", Some(n)),
        SegmentAlgorithm::Automatic(n) => ("AUTOMATIC", Some(n)),
    };
    put_str(&mut item, tags::SEGMENT_ALGORITHM_TYPE, VR::CS, kind);
    if let Some(name) = name {
        put_str(&mut item, tags::SEGMENT_ALGORITHM_NAME, VR::LO, name);
    }
    item
}

/// Packs masks (non-zero = 1) into bits, first pixel in the least significant bit of the
/// first byte, frames back to back without padding; the result is padded to an even length.
pub fn pack_bits<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut byte, mut bit) = (0u8, 0u32);
    for frame in frames {
        for &v in frame {
            if v != 0 {
                byte |= 1 << bit;
            }
            bit += 1;
            if bit == 8 {
                out.push(byte);
                byte = 0;
                bit = 0;
            }
        }
    }
    if bit > 0 {
        out.push(byte);
    }
    if out.len() % 2 == 1 {
        out.push(0);
    }
    out
}

/// Unpacks `count` pixels packed by [`pack_bits`] into 0/1 values.
pub fn unpack_bits(packed: &[u8], count: usize) -> Vec<u8> {
    (0..count)
        .map(|i| packed.get(i / 8).map_or(0, |b| (b >> (i % 8)) & 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(frames: u32) -> SourceImage {
        SourceImage {
            sop_class_uid: crate::sop::US_MULTIFRAME.into(),
            sop_instance_uid: "2.25.11".into(),
            series_instance_uid: "2.25.12".into(),
            number_of_frames: frames,
            rows: 3,
            columns: 5,
            geometry: None,
        }
    }

    fn seg(frames: Vec<SegmentFrame>) -> Segmentation {
        let study = SourceStudy {
            study_instance_uid: "2.25.13".into(),
            ..Default::default()
        };
        let mut s = Segmentation::new(study, vec![source(4)], "2.25.14", "2.25.15");
        s.content_date = "20260101".into();
        s.content_time = "101010".into();
        s.segments
            .push(Segment::left_ventricle(SegmentAlgorithm::Manual, frames));
        s
    }

    /// An enhanced multi-frame source: orientation and spacing shared, one position per frame,
    /// the frames running against the slice normal (z falls as frames go on).
    fn enhanced(frames: u32) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        put_str(
            &mut o,
            tags::SOP_CLASS_UID,
            VR::UI,
            "1.2.840.10008.5.1.4.1.1.4.1",
        );
        put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, "2.25.21");
        put_str(&mut o, tags::SERIES_INSTANCE_UID, VR::UI, "2.25.22");
        put_str(&mut o, tags::FRAME_OF_REFERENCE_UID, VR::UI, "2.25.23");
        put_u16(&mut o, tags::ROWS, &[3]);
        put_u16(&mut o, tags::COLUMNS, &[5]);
        put_is(&mut o, tags::NUMBER_OF_FRAMES, frames as i64);
        let mut measures = InMemDicomObject::new_empty();
        put_ds(&mut measures, tags::PIXEL_SPACING, &[0.7, 0.8]);
        let mut orientation = InMemDicomObject::new_empty();
        put_ds(
            &mut orientation,
            tags::IMAGE_ORIENTATION_PATIENT,
            &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
        );
        let mut shared = InMemDicomObject::new_empty();
        put_seq(&mut shared, tags::PIXEL_MEASURES_SEQUENCE, vec![measures]);
        put_seq(
            &mut shared,
            tags::PLANE_ORIENTATION_SEQUENCE,
            vec![orientation],
        );
        put_seq(
            &mut o,
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![shared],
        );
        let per_frame = (0..frames)
            .map(|f| {
                let mut plane = InMemDicomObject::new_empty();
                put_ds(
                    &mut plane,
                    tags::IMAGE_POSITION_PATIENT,
                    &[-1.0, 2.0, 10.0 - 2.5 * f as f64],
                );
                let mut item = InMemDicomObject::new_empty();
                put_seq(&mut item, tags::PLANE_POSITION_SEQUENCE, vec![plane]);
                item
            })
            .collect();
        put_seq(
            &mut o,
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            per_frame,
        );
        o
    }

    #[test]
    fn enhanced_sources_place_every_frame_along_the_normal() {
        let src = SourceImage::from_object(&enhanced(4)).unwrap();
        let g = src.geometry.clone().unwrap();
        assert_eq!(g.frame_of_reference_uid, "2.25.23");
        assert_eq!(g.pixel_spacing, [0.7, 0.8]);
        assert_eq!(g.slice_thickness, None);
        assert_eq!(g.positions[3], [-1.0, 2.0, 2.5]);
        let study = SourceStudy {
            study_instance_uid: "2.25.13".into(),
            ..Default::default()
        };
        let mut s = Segmentation::new(study, vec![src], "2.25.14", "2.25.15");
        s.content_date = "20260101".into();
        s.content_time = "101010".into();
        let mask = vec![1u8; 15];
        s.segments.push(Segment::left_ventricle(
            SegmentAlgorithm::Manual,
            [1, 2, 4]
                .iter()
                .map(|&frame| SegmentFrame {
                    source: 0,
                    frame,
                    mask: mask.clone(),
                })
                .collect(),
        ));
        let obj = s.to_object().unwrap();
        let frames = obj
            .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .unwrap()
            .items()
            .unwrap()
            .to_vec();
        let z: Vec<f64> = frames
            .iter()
            .map(|f| {
                let plane = &f
                    .element(tags::PLANE_POSITION_SEQUENCE)
                    .unwrap()
                    .items()
                    .unwrap()[0];
                let text = plane
                    .element(tags::IMAGE_POSITION_PATIENT)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                text.split('\\').nth(2).unwrap().parse::<f64>().unwrap()
            })
            .collect();
        assert_eq!(
            z,
            vec![10.0, 7.5, 2.5],
            "each frame at its source frame's position"
        );
        // Positions are indexed along the normal (+z): the last source frame comes first.
        let index: Vec<u32> = frames
            .iter()
            .map(|f| {
                let c = &f
                    .element(tags::FRAME_CONTENT_SEQUENCE)
                    .unwrap()
                    .items()
                    .unwrap()[0];
                c.element(tags::DIMENSION_INDEX_VALUES)
                    .unwrap()
                    .to_multi_int::<u32>()
                    .unwrap()[1]
            })
            .collect();
        assert_eq!(index, vec![3, 2, 1]);
        let encoded = crate::write::encode_file(obj, crate::ts::EXPLICIT_VR_LE).unwrap();
        assert!(encoded.len() > 132);
    }

    #[test]
    fn frames_of_reference_must_agree_and_be_complete() {
        let mut partial = enhanced(3);
        partial.remove_element(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
        assert!(matches!(
            SourceImage::from_object(&partial),
            Err(SegError::MissingSourceAttribute(
                "Image Orientation (Patient)"
            ))
        ));
        let a = SourceImage::from_object(&enhanced(2)).unwrap();
        let mut b = a.clone();
        b.sop_instance_uid = "2.25.24".into();
        b.geometry = None;
        let study = SourceStudy {
            study_instance_uid: "2.25.13".into(),
            ..Default::default()
        };
        let mut s = Segmentation::new(study, vec![a, b], "2.25.14", "2.25.15");
        s.content_date = "20260101".into();
        s.content_time = "101010".into();
        s.segments.push(Segment::left_ventricle(
            SegmentAlgorithm::Manual,
            vec![SegmentFrame {
                source: 1,
                frame: 1,
                mask: vec![1; 15],
            }],
        ));
        assert!(matches!(
            s.to_object(),
            Err(SegError::MixedFrameOfReference)
        ));
    }

    #[test]
    fn bits_pack_lsb_first_without_frame_padding() {
        let a = [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0];
        let b = [0, 1, 0];
        let p = pack_bits([&a[..], &b[..]]);
        // 14 pixels → 2 bytes: 0b0000_0001, then bits 8,9 and 12 set.
        assert_eq!(p, vec![0x01, 0b0001_0011]);
        let mut all = a.to_vec();
        all.extend_from_slice(&b);
        assert_eq!(unpack_bits(&p, 14), all);
    }

    #[test]
    fn frames_are_sorted_and_checked() {
        let m = |v: u8| vec![v; 15];
        let s = seg(vec![
            SegmentFrame {
                source: 0,
                frame: 3,
                mask: m(1),
            },
            SegmentFrame {
                source: 0,
                frame: 1,
                mask: m(0),
            },
        ]);
        let obj = s.to_object().unwrap();
        let frames = obj
            .element(tags::NUMBER_OF_FRAMES)
            .unwrap()
            .to_int::<i32>()
            .unwrap();
        assert_eq!(frames, 2);
        let pf = obj
            .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .unwrap();
        let items = pf.items().unwrap();
        let frame_no = |i: usize| {
            items[i]
                .element(tags::DERIVATION_IMAGE_SEQUENCE)
                .unwrap()
                .items()
                .unwrap()[0]
                .element(tags::SOURCE_IMAGE_SEQUENCE)
                .unwrap()
                .items()
                .unwrap()[0]
                .element(tags::REFERENCED_FRAME_NUMBER)
                .unwrap()
                .to_int::<i32>()
                .unwrap()
        };
        assert_eq!((frame_no(0), frame_no(1)), (1, 3));
        let mut skip = s.clone();
        skip.skip_empty_frames = true;
        assert_eq!(
            skip.to_object()
                .unwrap()
                .element(tags::NUMBER_OF_FRAMES)
                .unwrap()
                .to_int::<i32>()
                .unwrap(),
            1
        );
        assert!(matches!(
            seg(vec![SegmentFrame {
                source: 0,
                frame: 5,
                mask: m(1)
            }])
            .to_object(),
            Err(SegError::NoSuchSourceFrame { .. })
        ));
        assert!(matches!(
            seg(vec![SegmentFrame {
                source: 0,
                frame: 1,
                mask: vec![1; 4]
            }])
            .to_object(),
            Err(SegError::MaskSize { .. })
        ));
        assert!(matches!(
            seg(vec![
                SegmentFrame {
                    source: 0,
                    frame: 2,
                    mask: m(1)
                },
                SegmentFrame {
                    source: 0,
                    frame: 2,
                    mask: m(1)
                }
            ])
            .to_object(),
            Err(SegError::DuplicateFrame { .. })
        ));
        let mut bad = seg(vec![SegmentFrame {
            source: 0,
            frame: 1,
            mask: m(1),
        }]);
        bad.content_label = "lower case".into();
        assert!(matches!(bad.to_object(), Err(SegError::InvalidText { .. })));
    }
}
