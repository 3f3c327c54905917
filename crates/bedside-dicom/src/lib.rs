//! DICOM building blocks shared by the Bedside crates that write DICOM.
//!
//! - [`uid`]: UID generation (`2.25.` UIDs from keyed hashes, and vendor-style UIDs that embed a
//!   timestamp, as many scanners write them).
//! - [`elements`]: terse helpers to put typed elements and sequences into an `InMemDicomObject`.
//! - [`pixel`]: encapsulated pixel data (basic offset table + one fragment per frame) and JPEG
//!   baseline frame encoding (monochrome and YBR_FULL_422).
//! - [`seg`]: DICOM Segmentation (binary segments per frame of a source cine or series).
//! - [`write`]: atomic writing of a Part 10 file with a chosen transfer syntax.
//! - [`scan`] and [`read`]: reading with memory bounded by the input — every declared length is
//!   checked against the bytes present before the parser allocates; files with or without the
//!   preamble and bare data sets without a meta group are accepted.
//!
//! ```
//! use bedside_dicom::{elements::*, uid, write};
//! use dicom_dictionary_std::tags;
//! let mut obj = dicom_object::InMemDicomObject::new_empty();
//! put_str(&mut obj, tags::PATIENT_NAME, dicom_core::VR::PN, "DOE^JANE");
//! let u = uid::from_hash(b"anything");
//! assert!(u.starts_with("2.25.") && u.len() <= 64);
//! ```

pub mod elements;
pub mod metadata;
pub mod pixel;
pub mod read;
pub mod sc;
pub mod scan;
pub mod seg;
pub mod sr;
pub mod uid;
pub mod write;

/// Transfer syntax UIDs Bedside writes.
pub mod ts {
    /// Explicit VR Little Endian.
    pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
    /// JPEG Baseline (Process 1), lossy 8-bit.
    pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
}

/// SOP class UIDs Bedside writes.
pub mod sop {
    /// Ultrasound Multi-frame Image Storage.
    pub const US_MULTIFRAME: &str = "1.2.840.10008.5.1.4.1.1.3.1";
}
