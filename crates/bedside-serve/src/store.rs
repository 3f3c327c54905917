//! The durable intake and work queue: every accepted instance is a Part 10 file under
//! `objects/` (written to a temporary file, fsynced, renamed, and the folder fsynced) and a row
//! of `serve.sqlite` (WAL, `synchronous = FULL`) keyed by SOP Instance UID, both before the
//! sender hears "stored". The worker takes `pending` rows in arrival order and finishes each in
//! one transaction, so a restart resumes exactly the unfinished ones.
//!
//! The same store serves DICOMweb (QIDO-RS, WADO-RS, STOW-RS) through
//! [`bedside_dicomweb::StudyStore`]: received instances and the reports made from them.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bedside_dicomweb::json::{Binary, to_json};
use bedside_dicomweb::{
    InstanceLocator, Level, Record, Scope, StoreError, StoreOutcome, StudyStore,
};
use bytes::Bytes;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where an instance came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// DICOM C-STORE.
    Dimse,
    /// DICOMweb STOW-RS.
    Stow,
    /// The REST submit endpoint.
    Rest,
    /// A report this service wrote.
    Report,
}

impl Source {
    /// Label used in the database and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dimse => "dimse",
            Self::Stow => "stow",
            Self::Rest => "rest",
            Self::Report => "report",
        }
    }
}

/// What became of a received instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Written and queued.
    Stored(InstanceLocator),
    /// The same bytes were already there (idempotent re-send).
    AlreadyStored(InstanceLocator),
}

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The instance lacks an attribute or holds an invalid one.
    #[error("instance refused: {0}")]
    Refused(String),
    /// Another instance with the same SOP Instance UID is stored.
    #[error("a different instance with the same SOP Instance UID is already stored")]
    Conflict,
    /// Database failure.
    #[error("queue database: {0}")]
    Database(#[from] rusqlite::Error),
    /// File system failure.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The database lock was poisoned by a panic elsewhere.
    #[error("queue lock poisoned")]
    Poisoned,
}

/// One row of the queue as the worker and the REST API see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// State: `pending`, `done`, `rejected`, `failed` (inputs) or `report`.
    pub state: String,
    /// Intake channel.
    pub source: String,
    /// Seconds since the epoch at intake.
    pub received_at: f64,
    /// Result JSON once processed.
    pub result: Option<String>,
    /// SOP Instance UID of the report.
    pub report_uid: Option<String>,
    /// Whether the report reached the destination.
    pub sent: bool,
    /// Seconds since the epoch when processing finished.
    pub processed_at: Option<f64>,
    /// Seconds since the epoch when the destination acknowledged the report.
    pub sent_at: Option<f64>,
}

/// The store: files, queue and a wake-up signal for the worker.
pub struct Store {
    root: PathBuf,
    db: Mutex<Connection>,
    wake: (Mutex<u64>, Condvar),
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

/// Attributes kept for QIDO-RS (everything else is read from the file on demand).
const RECORD_TAGS: &[dicom_core::Tag] = &[
    tags::SPECIFIC_CHARACTER_SET,
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::MODALITY,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::STUDY_DESCRIPTION,
    tags::SERIES_DESCRIPTION,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::SERIES_INSTANCE_UID,
    tags::STUDY_ID,
    tags::SERIES_NUMBER,
    tags::INSTANCE_NUMBER,
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::NUMBER_OF_FRAMES,
    tags::ROWS,
    tags::COLUMNS,
];

fn record_of(obj: &InMemDicomObject) -> Record {
    let mut small = InMemDicomObject::new_empty();
    for &t in RECORD_TAGS {
        if let Ok(Some(e)) = obj.element_opt(t) {
            small.put(e.clone());
        }
    }
    to_json(&small, &Binary::Omit)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // The rename that made the file visible is durable only once its folder is synced.
    std::fs::File::open(dir)?.sync_all()
}

impl Store {
    /// Opens (or creates) the store in `root`.
    pub fn open(root: &Path) -> Result<Self, QueueError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| QueueError::Io { path, source }
        };
        std::fs::create_dir_all(root.join("objects")).map_err(io(root))?;
        let db = Connection::open(root.join("serve.sqlite"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS instances (
                sop_instance_uid TEXT PRIMARY KEY,
                study_instance_uid TEXT NOT NULL,
                series_instance_uid TEXT NOT NULL,
                sop_class_uid TEXT NOT NULL,
                transfer_syntax_uid TEXT NOT NULL,
                modality TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                source TEXT NOT NULL,
                attributes TEXT NOT NULL,
                received_at REAL NOT NULL,
                state TEXT NOT NULL,
                result TEXT,
                report_uid TEXT,
                sent INTEGER NOT NULL DEFAULT 0,
                processed_at REAL,
                sent_at REAL
             );
             CREATE INDEX IF NOT EXISTS instances_state ON instances(state);
             CREATE INDEX IF NOT EXISTS instances_study ON instances(study_instance_uid);",
        )?;
        // Queues made by an earlier version lack the delivery time.
        let has_sent_at: bool = db.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('instances') WHERE name = 'sent_at'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n > 0),
        )?;
        if !has_sent_at {
            db.execute_batch("ALTER TABLE instances ADD COLUMN sent_at REAL")?;
        }
        Ok(Self {
            root: root.to_path_buf(),
            db: Mutex::new(db),
            wake: (Mutex::new(0), Condvar::new()),
        })
    }

    /// The data folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, QueueError> {
        self.db.lock().map_err(|_| QueueError::Poisoned)
    }

    /// Path of a stored object (the UID was validated at intake, so it is a safe file name).
    pub fn object_path(&self, sop_instance_uid: &str) -> PathBuf {
        self.root
            .join("objects")
            .join(format!("{sop_instance_uid}.dcm"))
    }

    /// Stores `bytes` (a Part 10 file whose parsed form is `obj`) durably and queues it
    /// (reports are stored, not queued). Returns only once the file and the row are on disk.
    pub fn put(
        &self,
        bytes: &[u8],
        obj: &DefaultDicomObject,
        source: Source,
    ) -> Result<Intake, QueueError> {
        let uid = text(obj, tags::SOP_INSTANCE_UID);
        let study = text(obj, tags::STUDY_INSTANCE_UID);
        let series = text(obj, tags::SERIES_INSTANCE_UID);
        let class = text(obj, tags::SOP_CLASS_UID);
        for (value, name) in [
            (&uid, "SOP Instance UID"),
            (&study, "Study Instance UID"),
            (&series, "Series Instance UID"),
            (&class, "SOP Class UID"),
        ] {
            if !bedside_dicom::uid::is_valid(value) {
                return Err(QueueError::Refused(format!("missing or invalid {name}")));
            }
        }
        let ts = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        let locator = InstanceLocator {
            study_instance_uid: study.clone(),
            series_instance_uid: series.clone(),
            sop_instance_uid: uid.clone(),
            sop_class_uid: class.clone(),
            transfer_syntax_uid: ts.clone(),
            content_key: uid.clone(),
        };
        let sha = format!("{:x}", Sha256::digest(bytes));
        let existing = |db: &Connection| -> Result<Option<String>, QueueError> {
            Ok(db
                .query_row(
                    "SELECT sha256 FROM instances WHERE sop_instance_uid = ?1",
                    [&uid],
                    |r| r.get::<_, String>(0),
                )
                .optional()?)
        };
        if let Some(found) = existing(&*self.lock()?)? {
            return if found == sha {
                Ok(Intake::AlreadyStored(locator))
            } else {
                Err(QueueError::Conflict)
            };
        }
        // The file first: a crash before the row leaves a file the re-send overwrites.
        let path = self.object_path(&uid);
        bedside_core::fsio::write_atomic(&path, bytes).map_err(|source| QueueError::Io {
            path: path.clone(),
            source,
        })?;
        sync_dir(&self.root.join("objects")).map_err(|source| QueueError::Io {
            path: self.root.join("objects"),
            source,
        })?;
        let attributes = Value::Object(record_of(obj)).to_string();
        let state = if source == Source::Report {
            "report"
        } else {
            "pending"
        };
        let db = self.lock()?;
        // Two senders of the same UID race here: the second finds the first's row.
        if let Some(found) = existing(&db)? {
            return if found == sha {
                Ok(Intake::AlreadyStored(locator))
            } else {
                Err(QueueError::Conflict)
            };
        }
        db.execute(
            "INSERT INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid,
                sop_class_uid, transfer_syntax_uid, modality, sha256, source, attributes,
                received_at, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                uid,
                study,
                series,
                class,
                ts,
                text(obj, tags::MODALITY),
                sha,
                source.as_str(),
                attributes,
                now(),
                state
            ],
        )?;
        drop(db);
        if source != Source::Report {
            self.notify();
        }
        Ok(Intake::Stored(locator))
    }

    /// Wakes the worker.
    pub fn notify(&self) {
        if let Ok(mut n) = self.wake.0.lock() {
            *n += 1;
            self.wake.1.notify_all();
        }
    }

    /// Waits until [`Store::notify`] is called or `timeout` passes.
    pub fn wait(&self, seen: &mut u64, timeout: std::time::Duration) {
        if let Ok(n) = self.wake.0.lock() {
            if *n != *seen {
                *seen = *n;
                return;
            }
            if let Ok((n, _)) = self.wake.1.wait_timeout(n, timeout) {
                *seen = *n;
            }
        }
    }

    /// The oldest pending instance.
    pub fn next_pending(&self) -> Result<Option<String>, QueueError> {
        Ok(self
            .lock()?
            .query_row(
                "SELECT sop_instance_uid FROM instances WHERE state = 'pending' ORDER BY rowid LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Finished instances whose report has not reached the destination yet.
    pub fn unsent(&self) -> Result<Vec<(String, String)>, QueueError> {
        let db = self.lock()?;
        let mut stmt = db.prepare(
            "SELECT sop_instance_uid, report_uid FROM instances
             WHERE state IN ('done', 'rejected') AND report_uid IS NOT NULL AND sent = 0
             ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records the outcome of an instance (one transaction: state, result, report).
    pub fn finish(
        &self,
        uid: &str,
        state: &str,
        result: &str,
        report_uid: Option<&str>,
    ) -> Result<(), QueueError> {
        self.lock()?.execute(
            "UPDATE instances SET state = ?2, result = ?3, report_uid = ?4, processed_at = ?5
             WHERE sop_instance_uid = ?1",
            params![uid, state, result, report_uid, now()],
        )?;
        Ok(())
    }

    /// Marks the report of `uid` as delivered.
    pub fn mark_sent(&self, uid: &str) -> Result<(), QueueError> {
        self.lock()?.execute(
            "UPDATE instances SET sent = 1, sent_at = ?2 WHERE sop_instance_uid = ?1",
            params![uid, now()],
        )?;
        Ok(())
    }

    /// One row.
    pub fn entry(&self, uid: &str) -> Result<Option<Entry>, QueueError> {
        Ok(self
            .lock()?
            .query_row(
                "SELECT sop_instance_uid, state, source, received_at, result, report_uid, sent,
                        processed_at, sent_at
                 FROM instances WHERE sop_instance_uid = ?1",
                [uid],
                |r| {
                    Ok(Entry {
                        sop_instance_uid: r.get(0)?,
                        state: r.get(1)?,
                        source: r.get(2)?,
                        received_at: r.get(3)?,
                        result: r.get(4)?,
                        report_uid: r.get(5)?,
                        sent: r.get::<_, i64>(6)? != 0,
                        processed_at: r.get(7)?,
                        sent_at: r.get(8)?,
                    })
                },
            )
            .optional()?)
    }

    /// Rows per state.
    pub fn counts(&self) -> Result<Vec<(String, i64)>, QueueError> {
        let db = self.lock()?;
        let mut stmt =
            db.prepare("SELECT state, COUNT(*) FROM instances GROUP BY state ORDER BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn rows(&self, scope: &Scope) -> Result<Vec<(InstanceLocator, Record)>, StoreError> {
        let db = self
            .lock()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut stmt = db
            .prepare_cached(
                "SELECT study_instance_uid, series_instance_uid, sop_instance_uid, sop_class_uid,
                        transfer_syntax_uid, attributes FROM instances
                 WHERE (?1 IS NULL OR study_instance_uid = ?1)
                   AND (?2 IS NULL OR series_instance_uid = ?2)
                   AND (?3 IS NULL OR sop_instance_uid = ?3)
                 ORDER BY study_instance_uid, series_instance_uid, rowid",
            )
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let rows = stmt
            .query_map(
                params![
                    scope.study_instance_uid,
                    scope.series_instance_uid,
                    scope.sop_instance_uid
                ],
                |r| {
                    Ok((
                        InstanceLocator {
                            study_instance_uid: r.get(0)?,
                            series_instance_uid: r.get(1)?,
                            sop_instance_uid: r.get(2)?,
                            sop_class_uid: r.get(3)?,
                            transfer_syntax_uid: r.get(4)?,
                            content_key: r.get(2)?,
                        },
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut out = Vec::new();
        for row in rows {
            let (locator, attrs) = row.map_err(|e| StoreError::Backend(e.to_string()))?;
            let record = match serde_json::from_str::<Value>(&attrs) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(StoreError::Backend(
                        "stored attributes are not an object".into(),
                    ));
                }
            };
            out.push((locator, record));
        }
        Ok(out)
    }
}

/// Attributes of one level only (the router matches on them and returns them).
fn level_record(record: &Record, level: Level) -> Record {
    use bedside_dicomweb::json::tag_key;
    let study = [
        tags::SPECIFIC_CHARACTER_SET,
        tags::STUDY_DATE,
        tags::STUDY_TIME,
        tags::ACCESSION_NUMBER,
        tags::REFERRING_PHYSICIAN_NAME,
        tags::STUDY_DESCRIPTION,
        tags::PATIENT_NAME,
        tags::PATIENT_ID,
        tags::PATIENT_BIRTH_DATE,
        tags::PATIENT_SEX,
        tags::STUDY_INSTANCE_UID,
        tags::STUDY_ID,
    ];
    let series = [
        tags::MODALITY,
        tags::SERIES_DESCRIPTION,
        tags::SERIES_INSTANCE_UID,
        tags::SERIES_NUMBER,
    ];
    let keep: Vec<String> = match level {
        Level::Study => study.iter().map(|&t| tag_key(t)).collect(),
        Level::Series => study
            .iter()
            .chain(series.iter())
            .map(|&t| tag_key(t))
            .collect(),
        Level::Instance => return record.clone(),
    };
    record
        .iter()
        .filter(|(k, _)| keep.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl StudyStore for Store {
    fn find(&self, level: Level, scope: &Scope) -> Result<Vec<Record>, StoreError> {
        let rows = self.rows(scope)?;
        let mut out: Vec<(String, Record, i64, Vec<String>)> = Vec::new();
        for (l, record) in rows {
            let key = match level {
                Level::Study => l.study_instance_uid.clone(),
                Level::Series => l.series_instance_uid.clone(),
                Level::Instance => l.sop_instance_uid.clone(),
            };
            let modality =
                bedside_dicomweb::json::first_text(&record, tags::MODALITY).unwrap_or_default();
            match out.iter_mut().find(|(k, ..)| *k == key) {
                Some((_, _, n, mods)) => {
                    *n += 1;
                    if !mods.contains(&modality) {
                        mods.push(modality);
                    }
                }
                None => out.push((key, level_record(&record, level), 1, vec![modality])),
            }
        }
        Ok(out
            .into_iter()
            .map(|(_, mut record, n, mut mods)| {
                match level {
                    Level::Study => {
                        record.insert(
                            "00201208".into(),
                            serde_json::json!({"vr": "IS", "Value": [n]}),
                        );
                        mods.retain(|m| !m.is_empty());
                        mods.sort();
                        if !mods.is_empty() {
                            record.insert(
                                "00080061".into(),
                                serde_json::json!({"vr": "CS", "Value": mods}),
                            );
                        }
                    }
                    Level::Series => {
                        record.insert(
                            "00201209".into(),
                            serde_json::json!({"vr": "IS", "Value": [n]}),
                        );
                    }
                    Level::Instance => {}
                }
                record
            })
            .collect())
    }

    fn locate(&self, scope: &Scope) -> Result<Vec<InstanceLocator>, StoreError> {
        Ok(self.rows(scope)?.into_iter().map(|(l, _)| l).collect())
    }

    fn read(&self, instance: &InstanceLocator) -> Result<Bytes, StoreError> {
        if !bedside_dicom::uid::is_valid(&instance.content_key) {
            return Err(StoreError::NotFound("instance".into()));
        }
        std::fs::read(self.object_path(&instance.content_key))
            .map(Bytes::from)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    StoreError::NotFound("stored file of an indexed instance".into())
                }
                _ => StoreError::Backend(e.to_string()),
            })
    }

    fn store(&self, bytes: Bytes) -> Result<StoreOutcome, StoreError> {
        let obj = bedside_dicom::read::read_bytes(&bytes)
            .map_err(|e| StoreError::Refused(e.to_string()))?;
        crate::metrics::global().received(Source::Stow);
        match self.put(&bytes, &obj, Source::Stow) {
            Ok(Intake::Stored(l)) => Ok(StoreOutcome::Stored(l)),
            Ok(Intake::AlreadyStored(l)) => Ok(StoreOutcome::AlreadyStored(l)),
            Err(QueueError::Conflict) => Err(StoreError::Conflict),
            Err(QueueError::Refused(m)) => Err(StoreError::Refused(m)),
            Err(e) => Err(StoreError::Backend(e.to_string())),
        }
    }
}
