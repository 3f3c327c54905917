//! Multi-frame True Color Secondary Capture images: a derived RGB cine (for example an
//! explanation overlaid on the frames a model saw) filed in the source's study.
//!
//! The object carries the source's Patient and General Study modules (the same as
//! [`crate::sr::SrDocument`] writes), a new series, the SC Equipment module (conversion type
//! `WSD`), the Cine and Multi-frame modules with the frame time, `DERIVED\SECONDARY` image type
//! and references to the source instances, and native 8-bit interleaved RGB pixels.

use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::elements::{put_ds, put_empty, put_is, put_seq, put_str, put_tag, put_u16};
use crate::sr::{InstanceRef, SourceStudy};

/// Multi-frame True Color Secondary Capture Image Storage.
pub const MULTIFRAME_TRUE_COLOR_SC: &str = "1.2.840.10008.5.1.4.1.1.7.4";

/// Why a capture cannot be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScError {
    /// A UID is empty or malformed.
    #[error("the {0} is not a valid UID")]
    InvalidUid(&'static str),
    /// No frames.
    #[error("a capture needs at least one frame")]
    NoFrames,
    /// A frame's byte count differs from rows × columns × 3.
    #[error("frame {index} has {actual} bytes, {rows}x{columns} RGB needs {expected}")]
    FrameSize {
        /// Frame index.
        index: usize,
        /// Rows.
        rows: usize,
        /// Columns.
        columns: usize,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// Rows or columns outside 1..=65535.
    #[error("{rows}x{columns} is not a valid image size")]
    Size {
        /// Rows.
        rows: usize,
        /// Columns.
        columns: usize,
    },
}

/// A Multi-frame True Color Secondary Capture image.
#[derive(Debug, Clone, PartialEq)]
pub struct TrueColorCapture {
    /// Patient and study of the source.
    pub study: SourceStudy,
    /// Series Instance UID of the new series.
    pub series_instance_uid: String,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// Series Number.
    pub series_number: i64,
    /// Instance Number.
    pub instance_number: i64,
    /// Series Description.
    pub series_description: String,
    /// Manufacturer of the software that made it.
    pub manufacturer: String,
    /// Software Versions.
    pub software_versions: String,
    /// Derivation Description: how the frames were made.
    pub derivation_description: String,
    /// The instances it was derived from (Source Image Sequence).
    pub sources: Vec<InstanceRef>,
    /// Content and secondary-capture date (`YYYYMMDD`).
    pub content_date: String,
    /// Content and secondary-capture time (`HHMMSS`).
    pub content_time: String,
    /// Rows of every frame.
    pub rows: usize,
    /// Columns of every frame.
    pub columns: usize,
    /// Frame time, milliseconds.
    pub frame_time_ms: f64,
    /// Frames, each rows × columns × 3 bytes of interleaved RGB.
    pub frames: Vec<Vec<u8>>,
}

impl TrueColorCapture {
    /// Builds the DICOM data set (without the file meta group).
    pub fn to_object(&self) -> Result<InMemDicomObject, ScError> {
        for (uid, what) in [
            (&self.sop_instance_uid, "SOP Instance UID"),
            (&self.series_instance_uid, "Series Instance UID"),
            (&self.study.study_instance_uid, "Study Instance UID"),
        ] {
            if !crate::uid::is_valid(uid) {
                return Err(ScError::InvalidUid(what));
            }
        }
        let (rows, columns) = (self.rows, self.columns);
        if rows == 0 || columns == 0 || rows > 65_535 || columns > 65_535 {
            return Err(ScError::Size { rows, columns });
        }
        if self.frames.is_empty() {
            return Err(ScError::NoFrames);
        }
        let expected = rows * columns * 3;
        if let Some((index, f)) = self
            .frames
            .iter()
            .enumerate()
            .find(|(_, f)| f.len() != expected)
        {
            return Err(ScError::FrameSize {
                index,
                rows,
                columns,
                expected,
                actual: f.len(),
            });
        }
        let mut obj = crate::sr::object_of_study(
            MULTIFRAME_TRUE_COLOR_SC,
            &self.sop_instance_uid,
            &self.study,
        );
        // General Series.
        crate::sr::put_series(
            &mut obj,
            "OT",
            &self.series_instance_uid,
            self.series_number,
            &self.series_description,
        );
        // Type 2C: a derived picture of a cine has no laterality of its own.
        put_empty(&mut obj, tags::LATERALITY, VR::CS);
        // General Equipment and SC Equipment.
        put_str(&mut obj, tags::MANUFACTURER, VR::LO, &self.manufacturer);
        if !self.software_versions.is_empty() {
            put_str(
                &mut obj,
                tags::SOFTWARE_VERSIONS,
                VR::LO,
                &self.software_versions,
            );
        }
        put_str(&mut obj, tags::CONVERSION_TYPE, VR::CS, "WSD");
        // General Image.
        put_is(&mut obj, tags::INSTANCE_NUMBER, self.instance_number);
        put_empty(&mut obj, tags::PATIENT_ORIENTATION, VR::CS);
        if !self.content_date.is_empty() {
            put_str(&mut obj, tags::CONTENT_DATE, VR::DA, &self.content_date);
            put_str(&mut obj, tags::CONTENT_TIME, VR::TM, &self.content_time);
            put_str(
                &mut obj,
                tags::DATE_OF_SECONDARY_CAPTURE,
                VR::DA,
                &self.content_date,
            );
            put_str(
                &mut obj,
                tags::TIME_OF_SECONDARY_CAPTURE,
                VR::TM,
                &self.content_time,
            );
        }
        put_str(&mut obj, tags::IMAGE_TYPE, VR::CS, "DERIVED\\SECONDARY");
        if !self.derivation_description.is_empty() {
            put_str(
                &mut obj,
                tags::DERIVATION_DESCRIPTION,
                VR::ST,
                &self.derivation_description,
            );
        }
        if !self.sources.is_empty() {
            let items = self
                .sources
                .iter()
                .map(|s| {
                    let mut item = InMemDicomObject::new_empty();
                    put_str(
                        &mut item,
                        tags::REFERENCED_SOP_CLASS_UID,
                        VR::UI,
                        &s.sop_class_uid,
                    );
                    put_str(
                        &mut item,
                        tags::REFERENCED_SOP_INSTANCE_UID,
                        VR::UI,
                        &s.sop_instance_uid,
                    );
                    item
                })
                .collect::<Vec<_>>();
            put_seq(&mut obj, tags::SOURCE_IMAGE_SEQUENCE, items);
        }
        put_str(&mut obj, tags::BURNED_IN_ANNOTATION, VR::CS, "NO");
        put_str(&mut obj, tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00");
        // Cine and Multi-frame.
        put_ds(&mut obj, tags::FRAME_TIME, &[self.frame_time_ms]);
        put_is(&mut obj, tags::NUMBER_OF_FRAMES, self.frames.len() as i64);
        put_tag(&mut obj, tags::FRAME_INCREMENT_POINTER, tags::FRAME_TIME);
        // Image Pixel (Multi-frame True Color SC Image: 8-bit RGB, interleaved).
        put_u16(&mut obj, tags::SAMPLES_PER_PIXEL, &[3]);
        put_str(&mut obj, tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB");
        put_u16(&mut obj, tags::PLANAR_CONFIGURATION, &[0]);
        put_u16(&mut obj, tags::ROWS, &[rows as u16]);
        put_u16(&mut obj, tags::COLUMNS, &[columns as u16]);
        put_u16(&mut obj, tags::BITS_ALLOCATED, &[8]);
        put_u16(&mut obj, tags::BITS_STORED, &[8]);
        put_u16(&mut obj, tags::HIGH_BIT, &[7]);
        put_u16(&mut obj, tags::PIXEL_REPRESENTATION, &[0]);
        obj.put(crate::pixel::native_pixel_data_8bit(self.frames.concat()));
        Ok(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture() -> TrueColorCapture {
        TrueColorCapture {
            study: SourceStudy {
                patient_name: String::new(),
                patient_id: "P".into(),
                patient_birth_date: String::new(),
                patient_sex: String::new(),
                study_instance_uid: "1.2.3".into(),
                study_date: String::new(),
                study_time: String::new(),
                study_id: String::new(),
                accession_number: String::new(),
                referring_physician_name: String::new(),
            },
            series_instance_uid: "1.2.3.4".into(),
            sop_instance_uid: "1.2.3.4.5".into(),
            series_number: 901,
            instance_number: 1,
            series_description: String::new(),
            manufacturer: "Bedside".into(),
            software_versions: String::new(),
            derivation_description: String::new(),
            sources: Vec::new(),
            content_date: String::new(),
            content_time: String::new(),
            rows: 2,
            columns: 3,
            frame_time_ms: 33.3,
            frames: vec![vec![7; 18]; 4],
        }
    }

    #[test]
    fn frames_are_checked_and_written_back_to_back() {
        let obj = capture().to_object().unwrap_or_else(|e| panic!("{e}"));
        let pixels = obj
            .element(tags::PIXEL_DATA)
            .ok()
            .and_then(|e| e.to_bytes().ok())
            .map(|b| b.len());
        assert_eq!(pixels, Some(72));
        let mut bad = capture();
        bad.frames[2].pop();
        assert!(matches!(
            bad.to_object(),
            Err(ScError::FrameSize {
                index: 2,
                actual: 17,
                ..
            })
        ));
        let mut none = capture();
        none.frames.clear();
        assert_eq!(none.to_object().err(), Some(ScError::NoFrames));
        let mut uid = capture();
        uid.sop_instance_uid = "1..2".into();
        assert_eq!(
            uid.to_object().err(),
            Some(ScError::InvalidUid("SOP Instance UID"))
        );
    }
}
