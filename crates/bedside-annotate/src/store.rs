//! The study store: de-identified DICOM in a content-addressed folder (by SHA-256 of the
//! bytes), indexed in SQLite (WAL mode) for DICOMweb queries.
//!
//! Layout of the data folder:
//!
//! ```text
//! DATA/annotate.sqlite            index, accounts, annotations, audit; schema version in user_version
//! DATA/objects/sha256/ab/cdef…    one Part 10 file per instance, named by its SHA-256
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bedside_dicomweb::json::{Binary, tag_key, to_json};
use bedside_dicomweb::{
    InstanceLocator, Level, Record, Scope, StoreError, StoreOutcome, StudyStore,
};
use bytes::Bytes;
use dicom_dictionary_std::tags;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data folder could not be created.
    #[error("cannot create data folder {path}: {source}")]
    CreateFolder {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("cannot open database {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of Bedside.
    #[error(
        "database {path} has schema version {found}, newer than this build understands ({supported})"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Version found.
        found: i64,
        /// Highest version known.
        supported: i64,
    },
}

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: the DICOM index.
    "CREATE TABLE studies (
        study_instance_uid TEXT PRIMARY KEY,
        attributes TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE series (
        series_instance_uid TEXT PRIMARY KEY,
        study_instance_uid TEXT NOT NULL REFERENCES studies(study_instance_uid),
        modality TEXT,
        series_number INTEGER,
        attributes TEXT NOT NULL
     );
     CREATE INDEX series_by_study ON series(study_instance_uid);
     CREATE TABLE instances (
        sop_instance_uid TEXT PRIMARY KEY,
        series_instance_uid TEXT NOT NULL REFERENCES series(series_instance_uid),
        study_instance_uid TEXT NOT NULL REFERENCES studies(study_instance_uid),
        sop_class_uid TEXT NOT NULL,
        transfer_syntax_uid TEXT NOT NULL,
        instance_number INTEGER,
        number_of_frames INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        attributes TEXT NOT NULL,
        stored_at INTEGER NOT NULL
     );
     CREATE INDEX instances_by_series ON instances(series_instance_uid);
     CREATE INDEX instances_by_study ON instances(study_instance_uid);",
    // 2: accounts, projects and annotations.
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        superuser INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE sessions (
        token_sha256 TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE INDEX sessions_by_expiry ON sessions(expires_at);
     CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        blinded INTEGER NOT NULL DEFAULT 0,
        label_schema TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE memberships (
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('admin', 'annotator', 'reviewer', 'viewer')),
        PRIMARY KEY (project_id, user_id)
     );
     CREATE TABLE project_studies (
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        study_instance_uid TEXT NOT NULL REFERENCES studies(study_instance_uid),
        seq INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (project_id, study_instance_uid)
     );
     CREATE TABLE assignments (
        project_id INTEGER NOT NULL,
        study_instance_uid TEXT NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (project_id, study_instance_uid, user_id),
        FOREIGN KEY (project_id, study_instance_uid)
            REFERENCES project_studies(project_id, study_instance_uid) ON DELETE CASCADE
     );
     CREATE TABLE annotations (
        id TEXT PRIMARY KEY,
        project_id INTEGER NOT NULL,
        study_instance_uid TEXT NOT NULL,
        series_instance_uid TEXT,
        sop_instance_uid TEXT,
        frame INTEGER,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        payload TEXT NOT NULL,
        measurement TEXT,
        mask BLOB,
        author_id INTEGER NOT NULL REFERENCES users(id),
        version INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        updated_by INTEGER NOT NULL REFERENCES users(id),
        deleted INTEGER NOT NULL DEFAULT 0,
        FOREIGN KEY (project_id, study_instance_uid)
            REFERENCES project_studies(project_id, study_instance_uid)
     );
     CREATE INDEX annotations_by_study ON annotations(project_id, study_instance_uid, seq);
     CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        user_id INTEGER,
        project_id INTEGER,
        action TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE INDEX audit_by_project ON audit(project_id, id);",
];

/// Opens the database of the data folder `data` (which must exist) with `synchronous` set
/// as given, and brings its schema up to date.
pub(crate) fn connect(data: &Path, synchronous: &str) -> Result<Connection, OpenError> {
    let path = data.join("annotate.sqlite");
    let db_err = |source| OpenError::Database {
        path: path.clone(),
        source,
    };
    let mut conn = Connection::open(&path).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(db_err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err)?;
    conn.pragma_update(None, "synchronous", synchronous)
        .map_err(db_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(db_err)?;
    // Two connections may open a new folder at once: the migration runs under a write lock.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(OpenError::NewerSchema {
            path,
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(conn)
}

/// Study-level attributes kept on the study record besides the Patient module (group 0010).
const STUDY_TAGS: &[u32] = &[
    0x0008_0005,
    0x0008_0020,
    0x0008_0030,
    0x0008_0050,
    0x0008_0090,
    0x0008_0201,
    0x0008_1030,
    0x0008_1032,
    0x0008_1060,
    0x0020_000D,
    0x0020_0010,
    0x0012_0062,
    0x0012_0063,
];

/// Series-level attributes kept on the series record.
const SERIES_TAGS: &[u32] = &[
    0x0008_0021,
    0x0008_0031,
    0x0008_0060,
    0x0008_0070,
    0x0008_103E,
    0x0008_1090,
    0x0018_0015,
    0x0020_000E,
    0x0020_0011,
    0x0020_0060,
    0x0040_0244,
    0x0040_0245,
    0x0040_0275,
];

fn key(t: u32) -> String {
    format!("{t:08X}")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// SQLite index plus content-addressed files. Cheap to share behind an `Arc`.
pub struct DiskStore {
    objects: PathBuf,
    db: Mutex<Connection>,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("objects", &self.objects)
            .finish()
    }
}

/// Facts about one instance taken from its header.
struct Facts {
    study: String,
    series: String,
    sop_instance: String,
    sop_class: String,
    transfer_syntax: String,
    instance_number: Option<i64>,
    series_number: Option<i64>,
    modality: Option<String>,
    frames: i64,
    attributes: Record,
}

impl DiskStore {
    /// Opens (creating if needed) the store in `data`, migrating the schema.
    pub fn open(data: &Path) -> Result<Self, OpenError> {
        let objects = data.join("objects").join("sha256");
        std::fs::create_dir_all(&objects).map_err(|source| OpenError::CreateFolder {
            path: objects.clone(),
            source,
        })?;
        // The index can be rebuilt from the files, so a power cut may cost its last commits.
        let conn = connect(data, "NORMAL")?;
        Ok(Self {
            objects,
            db: Mutex::new(conn),
        })
    }

    /// The schema version in use.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let db = self.db.lock().map_err(backend)?;
        db.query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(backend)
    }

    /// Number of stored instances.
    pub fn instance_count(&self) -> Result<u64, StoreError> {
        let db = self.db.lock().map_err(backend)?;
        db.query_row("SELECT COUNT(*) FROM instances", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(backend)
    }

    fn object_path(&self, sha256: &str) -> Result<PathBuf, StoreError> {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound("malformed content key".into()));
        }
        Ok(self.objects.join(&sha256[..2]).join(&sha256[2..]))
    }

    fn facts(obj: &dicom_object::DefaultDicomObject) -> Result<Facts, StoreError> {
        let text = |tag| {
            obj.element_opt(tag)
                .ok()
                .flatten()
                .and_then(|e| e.to_str().ok())
                .map(|v| v.trim_end_matches(['\0', ' ']).trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let int = |tag| text(tag).and_then(|v| v.parse::<i64>().ok());
        let required = |tag, name: &str| {
            text(tag).ok_or_else(|| StoreError::Refused(format!("instance has no {name}")))
        };
        let uid_ok = |u: &str| u.len() <= 64 && u.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        let study = required(tags::STUDY_INSTANCE_UID, "Study Instance UID")?;
        let series = required(tags::SERIES_INSTANCE_UID, "Series Instance UID")?;
        let sop_instance = required(tags::SOP_INSTANCE_UID, "SOP Instance UID")?;
        let sop_class = required(tags::SOP_CLASS_UID, "SOP Class UID")?;
        if ![&study, &series, &sop_instance, &sop_class]
            .iter()
            .all(|u| uid_ok(u))
        {
            return Err(StoreError::Refused("instance has a malformed UID".into()));
        }
        let attributes = to_json(obj, &Binary::Omit);
        Ok(Facts {
            study,
            series,
            sop_instance,
            sop_class,
            transfer_syntax: obj
                .meta()
                .transfer_syntax()
                .trim_end_matches(['\0', ' '])
                .to_string(),
            instance_number: int(tags::INSTANCE_NUMBER),
            series_number: int(tags::SERIES_NUMBER),
            modality: text(tags::MODALITY),
            frames: int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1),
            attributes,
        })
    }
}

fn subset(attributes: &Record, wanted: impl Fn(&str) -> bool) -> Record {
    attributes
        .iter()
        .filter(|(k, _)| wanted(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn parse_record(text: &str) -> Result<Record, StoreError> {
    match serde_json::from_str::<Value>(text).map_err(backend)? {
        Value::Object(m) => Ok(m),
        _ => Err(StoreError::Backend(
            "stored attributes are not an object".into(),
        )),
    }
}

/// SQL condition and parameters limiting a query to a scope.
fn scope_filter(
    scope: &Scope,
    study_col: &str,
    series_col: Option<&str>,
    sop_col: Option<&str>,
) -> (String, Vec<String>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(s) = &scope.study_instance_uid {
        conds.push(format!("{study_col} = ?"));
        args.push(s.clone());
    }
    if let (Some(s), Some(col)) = (&scope.series_instance_uid, series_col) {
        conds.push(format!("{col} = ?"));
        args.push(s.clone());
    }
    if let (Some(s), Some(col)) = (&scope.sop_instance_uid, sop_col) {
        conds.push(format!("{col} = ?"));
        args.push(s.clone());
    }
    let sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (sql, args)
}

impl StudyStore for DiskStore {
    fn find(&self, level: Level, scope: &Scope) -> Result<Vec<Record>, StoreError> {
        let db = self.db.lock().map_err(backend)?;
        let mut out = Vec::new();
        match level {
            Level::Study => {
                let (filter, args) = scope_filter(scope, "st.study_instance_uid", None, None);
                let sql = format!(
                    "SELECT st.attributes,
                        (SELECT COUNT(*) FROM series se WHERE se.study_instance_uid = st.study_instance_uid),
                        (SELECT COUNT(*) FROM instances i WHERE i.study_instance_uid = st.study_instance_uid),
                        (SELECT group_concat(DISTINCT se.modality) FROM series se WHERE se.study_instance_uid = st.study_instance_uid)
                     FROM studies st{filter} ORDER BY st.created_at, st.study_instance_uid"
                );
                let mut stmt = db.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Option<String>>(3)?,
                        ))
                    })
                    .map_err(backend)?;
                for row in rows {
                    let (attrs, n_series, n_instances, modalities) = row.map_err(backend)?;
                    let mut record = parse_record(&attrs)?;
                    record.insert(key(0x0020_1206), json!({"vr": "IS", "Value": [n_series]}));
                    record.insert(
                        key(0x0020_1208),
                        json!({"vr": "IS", "Value": [n_instances]}),
                    );
                    let mut mods: Vec<&str> = modalities
                        .as_deref()
                        .unwrap_or("")
                        .split(',')
                        .filter(|m| !m.is_empty())
                        .collect();
                    mods.sort_unstable();
                    mods.dedup();
                    if !mods.is_empty() {
                        record.insert(key(0x0008_0061), json!({"vr": "CS", "Value": mods}));
                    }
                    out.push(record);
                }
            }
            Level::Series => {
                let (filter, args) = scope_filter(
                    scope,
                    "se.study_instance_uid",
                    Some("se.series_instance_uid"),
                    None,
                );
                let sql = format!(
                    "SELECT st.attributes, se.attributes,
                        (SELECT COUNT(*) FROM instances i WHERE i.series_instance_uid = se.series_instance_uid)
                     FROM series se JOIN studies st ON st.study_instance_uid = se.study_instance_uid{filter}
                     ORDER BY se.study_instance_uid, se.series_number, se.series_instance_uid"
                );
                let mut stmt = db.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    })
                    .map_err(backend)?;
                for row in rows {
                    let (study, series, n) = row.map_err(backend)?;
                    let mut record = parse_record(&study)?;
                    record.extend(parse_record(&series)?);
                    record.insert(key(0x0020_1209), json!({"vr": "IS", "Value": [n]}));
                    out.push(record);
                }
            }
            Level::Instance => {
                let (filter, args) = scope_filter(
                    scope,
                    "study_instance_uid",
                    Some("series_instance_uid"),
                    Some("sop_instance_uid"),
                );
                let sql = format!(
                    "SELECT attributes, transfer_syntax_uid FROM instances{filter}
                     ORDER BY study_instance_uid, series_instance_uid, instance_number, sop_instance_uid"
                );
                let mut stmt = db.prepare_cached(&sql).map_err(backend)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(backend)?;
                for row in rows {
                    let (attrs, ts) = row.map_err(backend)?;
                    let mut record = parse_record(&attrs)?;
                    record.insert(key(0x0008_3002), json!({"vr": "UI", "Value": [ts]}));
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    fn locate(&self, scope: &Scope) -> Result<Vec<InstanceLocator>, StoreError> {
        let db = self.db.lock().map_err(backend)?;
        let (filter, args) = scope_filter(
            scope,
            "i.study_instance_uid",
            Some("i.series_instance_uid"),
            Some("i.sop_instance_uid"),
        );
        let sql = format!(
            "SELECT i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid, i.sop_class_uid,
                    i.transfer_syntax_uid, i.sha256
             FROM instances i JOIN series se ON se.series_instance_uid = i.series_instance_uid{filter}
             ORDER BY se.series_number, i.series_instance_uid, i.instance_number, i.sop_instance_uid"
        );
        let mut stmt = db.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok(InstanceLocator {
                    study_instance_uid: r.get(0)?,
                    series_instance_uid: r.get(1)?,
                    sop_instance_uid: r.get(2)?,
                    sop_class_uid: r.get(3)?,
                    transfer_syntax_uid: r.get(4)?,
                    content_key: r.get(5)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(backend)
    }

    fn read(&self, instance: &InstanceLocator) -> Result<Bytes, StoreError> {
        let path = self.object_path(&instance.content_key)?;
        std::fs::read(&path).map(Bytes::from).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound("stored file of an indexed instance".into())
            } else {
                StoreError::Backend(format!("reading {}: {e}", path.display()))
            }
        })
    }

    fn store(&self, bytes: Bytes) -> Result<StoreOutcome, StoreError> {
        let obj = bedside_dicom::read::read_bytes(&bytes)
            .map_err(|e| StoreError::Refused(e.to_string()))?;
        let facts = Self::facts(&obj)?;
        // Files are kept as complete Part 10 (preamble, meta group), whatever form they came in.
        let bytes = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
            bytes
        } else {
            let mut buf = Vec::with_capacity(bytes.len() + 256);
            obj.write_all(&mut buf)
                .map_err(|e| StoreError::Refused(format!("cannot re-encode as Part 10: {e}")))?;
            Bytes::from(buf)
        };
        drop(obj);
        let sha = format!("{:x}", Sha256::digest(&bytes));
        let locator = InstanceLocator {
            study_instance_uid: facts.study.clone(),
            series_instance_uid: facts.series.clone(),
            sop_instance_uid: facts.sop_instance.clone(),
            sop_class_uid: facts.sop_class.clone(),
            transfer_syntax_uid: facts.transfer_syntax.clone(),
            content_key: sha.clone(),
        };
        {
            let db = self.db.lock().map_err(backend)?;
            let existing: Option<String> = db
                .query_row(
                    "SELECT sha256 FROM instances WHERE sop_instance_uid = ?",
                    params![facts.sop_instance],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            match existing {
                Some(old) if old == sha => return Ok(StoreOutcome::AlreadyStored(locator)),
                Some(_) => return Err(StoreError::Conflict),
                None => {}
            }
        }
        // The file lands before the index row, so an indexed instance always has its bytes.
        let path = self.object_path(&sha)?;
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(backend)?;
            }
            bedside_core::fsio::write_atomic(&path, &bytes)
                .map_err(|e| StoreError::Backend(format!("writing {}: {e}", path.display())))?;
        }
        let study_attrs = subset(&facts.attributes, |k| {
            k.starts_with("0010") || STUDY_TAGS.iter().any(|t| key(*t) == k)
        });
        let series_attrs = subset(&facts.attributes, |k| {
            SERIES_TAGS.iter().any(|t| key(*t) == k) || k == tag_key(tags::STUDY_INSTANCE_UID)
        });
        let mut db = self.db.lock().map_err(backend)?;
        let tx = db.transaction().map_err(backend)?;
        tx.execute(
            "INSERT OR IGNORE INTO studies (study_instance_uid, attributes, created_at) VALUES (?, ?, ?)",
            params![facts.study, Value::Object(study_attrs).to_string(), now()],
        )
        .map_err(backend)?;
        let series_study: String = {
            tx.execute(
                "INSERT OR IGNORE INTO series (series_instance_uid, study_instance_uid, modality, series_number, attributes)
                 VALUES (?, ?, ?, ?, ?)",
                params![
                    facts.series,
                    facts.study,
                    facts.modality,
                    facts.series_number,
                    Value::Object(series_attrs).to_string()
                ],
            )
            .map_err(backend)?;
            tx.query_row(
                "SELECT study_instance_uid FROM series WHERE series_instance_uid = ?",
                params![facts.series],
                |r| r.get(0),
            )
            .map_err(backend)?
        };
        if series_study != facts.study {
            return Err(StoreError::Refused(
                "the series already belongs to another study".into(),
            ));
        }
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO instances (sop_instance_uid, series_instance_uid, study_instance_uid, sop_class_uid,
                    transfer_syntax_uid, instance_number, number_of_frames, sha256, size, attributes, stored_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    facts.sop_instance,
                    facts.series,
                    facts.study,
                    facts.sop_class,
                    facts.transfer_syntax,
                    facts.instance_number,
                    facts.frames,
                    sha,
                    bytes.len() as i64,
                    Value::Object(facts.attributes).to_string(),
                    now()
                ],
            )
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        if inserted == 0 {
            // Another writer stored the same UID between our check and insert.
            return Err(StoreError::Conflict);
        }
        Ok(StoreOutcome::Stored(locator))
    }
}
