//! DICOM header de-identification for Bedside.
//!
//! The Application Level Confidentiality Profile of DICOM PS3.15 Annex E (table E.1-1) is data:
//! [`table::ConfidentialityTable::standard`] loads every attribute with its Basic Profile action
//! and its action under each option column from a TOML file embedded in the crate. A
//! [`profile::Profile`] (TOML too) picks the options, the date shift range, per-tag overrides,
//! the Retain Safe Private list, or the safe-list mode. A [`Deidentifier`] compiles a profile with
//! the site's [`secret::SiteSecret`] and applies it:
//!
//! - recursively in every sequence; private attributes removed except the safe list; overlays
//!   and curves removed; group lengths dropped;
//! - UIDs replaced by keyed `2.25.` UIDs (the same everywhere, so references stay consistent);
//!   PatientID, PatientName, AccessionNumber and StudyID replaced by keyed pseudonyms;
//! - dates shifted by a keyed per-patient offset (falling back to name and birth date, then the
//!   study, when PatientID is missing, with a warning); ages over 89 capped at `090Y`;
//! - PatientIdentityRemoved, DeidentificationMethod, DeidentificationMethodCodeSequence and
//!   LongitudinalTemporalInformationModified set to what was done;
//! - a per-object [`report::ObjectReport`] of tags and actions, never values.
//!
//! Files ([`Deidentifier::deidentify_bytes`], [`Deidentifier::deidentify_to`] for any writer,
//! [`Deidentifier::deidentify_file`] for atomic output) are checked element by element against
//! their own size before anything is parsed (a malformed file is a typed error, and memory stays
//! bounded by the file's size), parsed up to the pixel data, and written with the Pixel Data
//! element copied through byte for byte in the original transfer syntax. Deflated data sets are
//! inflated and written as Explicit VR Little Endian. A site secret is created on first use by
//! [`SiteSecret::load_or_create`]; an optional [`Crosswalk`] of originals and pseudonyms is kept
//! only when asked for ([`Deidentifier::with_crosswalk`]) and written apart from the outputs.
//!
//! ```
//! use bedside_deid::{Deidentifier, ObjectContext, Profile, SiteSecret};
//! use dicom_core::{DataElement, PrimitiveValue, VR};
//! use dicom_dictionary_std::tags;
//! use dicom_object::InMemDicomObject;
//!
//! let deid = Deidentifier::new(Profile::default(), SiteSecret::from_bytes([42; 32]))?;
//! let mut obj = InMemDicomObject::from_element_iter([
//!     DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("DOE^JANE")),
//!     DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("12345")),
//!     DataElement::new(tags::STUDY_DATE, VR::DA, PrimitiveValue::from("20240115")),
//!     DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4")),
//! ]);
//! let report = deid.deidentify_object(&mut obj, ObjectContext::default());
//! let uid = obj.get(tags::STUDY_INSTANCE_UID).unwrap().to_str()?;
//! assert!(uid.starts_with("2.25."));
//! assert_ne!(obj.get(tags::STUDY_DATE).unwrap().to_str()?, "20240115");
//! assert!(report.method_codes.contains(&"113107".to_string()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod engine;
pub mod error;
pub mod file;
pub mod profile;
pub mod report;
pub mod secret;
pub mod table;
pub mod temporal;

pub use engine::{Crosswalk, CrosswalkKind, Deidentifier, ObjectContext};
pub use error::DeidError;
pub use file::Deidentified;
pub use profile::{
    BurnedInText, Longitudinal, Mode, Profile, ProfileOptions, RuleAction, SafePrivate, TagRule,
    TextRule,
};
pub use report::{ActionTaken, ObjectReport, PatientKeySource, Warning};
pub use secret::SiteSecret;
pub use table::{Action, ConfidentialityTable, OptionColumn, TagPattern};
