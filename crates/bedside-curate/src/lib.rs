//! Curation of clinical DICOM: the pixel side of de-identification and the metadata table.
//!
//! Ultrasound scanners burn names, IDs and dates into the pixels, outside the scan area and
//! sometimes inside it. [`scan_area`] finds the area to keep — the union of the declared
//! `SequenceOfUltrasoundRegions` and the scan sector detected from the cine itself (pixels that
//! change over time, closed to their convex fan) — and [`pixels::clean_ultrasound`] blanks
//! everything else, per frame, for monochrome, RGB, YBR and palette images, single and
//! multi-frame, without ever reordering or mixing frames. Pixel data that did not change keeps its
//! transfer syntax; masked pixel data is written uncompressed (lossless), never re-encoded lossy.
//! Other modalities have no scan area: [`text_cleaning::clean_text`] reads the text anywhere in
//! the image with Tesseract and masks the lines the per-modality policy selects.
//!
//! [`metadata::extract`] gives one record per instance for the curation table: acquisition
//! (modality, vendor, geometry, frames, frame time, pixel spacing or ultrasound deltas), MR
//! sequence fields with an inferred T1/T2/cine/other contrast, and a SHA-256 of the pixel data.
//!
//! ```no_run
//! use bedside_curate::pixels::{clean_ultrasound, CleanOptions};
//! let mut obj = dicom_object::open_file("cine.dcm")?;
//! let outcome = clean_ultrasound(&mut obj, &CleanOptions::default())?;
//! println!("{} pixels blanked per frame", outcome.blanked_per_frame);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod arrays;
pub mod bench;
pub mod ingest;
pub mod labels;
/// Scan-level metadata extraction (lives in `bedside-dicom`, which the fuzz harness builds alone).
pub use bedside_dicom::metadata;
pub mod ocr;
pub mod parquet_table;
pub mod pipeline;
pub mod pixels;
pub mod resize;
pub mod scan_area;
pub mod text_cleaning;
