//! The storage contract the DICOMweb router serves from.
//!
//! A store knows which instances exist, returns their attributes for QIDO matching, and reads
//! and writes their bytes. It does not parse pixel data or speak HTTP: the router does both, so
//! the annotation server and a future inference server share one DICOMweb implementation.

use bytes::Bytes;
use serde_json::{Map, Value};

/// A QIDO-RS record: attributes in the DICOM JSON model (PS3.18 F.2), keyed by the tag as eight
/// upper-case hexadecimal digits.
pub type Record = Map<String, Value>;

/// The information-model level a query or retrieve addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Studies.
    Study,
    /// Series.
    Series,
    /// Instances (SOP instances).
    Instance,
}

/// Which part of the hierarchy a request is limited to (from the URL path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Study Instance UID, if the path names one.
    pub study_instance_uid: Option<String>,
    /// Series Instance UID, if the path names one.
    pub series_instance_uid: Option<String>,
    /// SOP Instance UID, if the path names one.
    pub sop_instance_uid: Option<String>,
}

impl Scope {
    /// The whole store.
    pub fn all() -> Self {
        Self::default()
    }

    /// One study.
    pub fn study(study: &str) -> Self {
        Self {
            study_instance_uid: Some(study.to_string()),
            ..Self::default()
        }
    }

    /// One series of a study.
    pub fn series(study: &str, series: &str) -> Self {
        Self {
            study_instance_uid: Some(study.to_string()),
            series_instance_uid: Some(series.to_string()),
            sop_instance_uid: None,
        }
    }

    /// One instance.
    pub fn instance(study: &str, series: &str, instance: &str) -> Self {
        Self {
            study_instance_uid: Some(study.to_string()),
            series_instance_uid: Some(series.to_string()),
            sop_instance_uid: Some(instance.to_string()),
        }
    }
}

/// Where a stored instance is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceLocator {
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Series Instance UID.
    pub series_instance_uid: String,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// Transfer syntax the instance is stored in.
    pub transfer_syntax_uid: String,
    /// A key that changes whenever the stored bytes change (e.g. their SHA-256), so caches can
    /// tell a replaced instance from the one they hold.
    pub content_key: String,
}

/// What happened to an instance offered to [`StudyStore::store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Newly stored.
    Stored(InstanceLocator),
    /// The same bytes were already stored under this SOP Instance UID; nothing changed.
    AlreadyStored(InstanceLocator),
}

impl StoreOutcome {
    /// The stored instance, whether new or not.
    pub fn locator(&self) -> &InstanceLocator {
        match self {
            Self::Stored(l) | Self::AlreadyStored(l) => l,
        }
    }
}

/// Why a store operation failed. Messages name the problem, never identifying values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The instance was refused because of its content (not DICOM, missing UIDs, ...).
    #[error("instance refused: {0}")]
    Refused(String),
    /// A different instance with the same SOP Instance UID is already stored.
    #[error("a different instance with the same SOP Instance UID is already stored")]
    Conflict,
    /// The instance or its stored bytes are gone.
    #[error("not found: {0}")]
    NotFound(String),
    /// The store itself failed (disk, database).
    #[error("storage failure: {0}")]
    Backend(String),
}

/// Storage behind the DICOMweb router. Implementations are called from blocking threads
/// (`tokio::task::spawn_blocking`), so they may do file and database I/O directly.
pub trait StudyStore: Send + Sync + 'static {
    /// Candidate records at `level` within `scope`. The router applies QIDO matching, paging
    /// and attribute selection, so a store may return more than matches (but never records
    /// outside `scope`).
    ///
    /// Study records carry patient and study attributes plus NumberOfStudyRelatedSeries
    /// (0020,1206), NumberOfStudyRelatedInstances (0020,1208) and ModalitiesInStudy
    /// (0008,0061); series records carry study and series attributes plus
    /// NumberOfSeriesRelatedInstances (0020,1209); instance records carry the instance's
    /// top-level attributes without binary values.
    fn find(&self, level: Level, scope: &Scope) -> Result<Vec<Record>, StoreError>;

    /// The instances within `scope`, ordered by series and instance number.
    fn locate(&self, scope: &Scope) -> Result<Vec<InstanceLocator>, StoreError>;

    /// The stored Part 10 bytes of an instance.
    fn read(&self, instance: &InstanceLocator) -> Result<Bytes, StoreError>;

    /// Stores one instance given as DICOM bytes (Part 10, with or without preamble, or a bare
    /// data set). Storing identical bytes again is not an error.
    fn store(&self, bytes: Bytes) -> Result<StoreOutcome, StoreError>;
}
