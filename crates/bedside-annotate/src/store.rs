//! The study store: de-identified DICOM in a content-addressed folder (by SHA-256 of the
//! bytes), indexed in the database (the data folder's SQLite file, or PostgreSQL) for DICOMweb
//! queries.
//!
//! Layout of the data folder:
//!
//! ```text
//! DATA/annotate.sqlite            index, accounts, annotations, audit; schema version in user_version
//!                                 (absent when the database is PostgreSQL)
//! DATA/objects/sha256/ab/cdef…    one Part 10 file per instance, named by its SHA-256
//! ```
//!
//! Servers sharing a PostgreSQL database share the data folder too (a network file system):
//! files are written under their content's name with an atomic rename, so two servers storing
//! the same instance write the same bytes.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bedside_dicomweb::json::{Binary, tag_key, to_json};
use bedside_dicomweb::{
    InstanceLocator, Level, Record, Scope, StoreError, StoreOutcome, StudyStore,
};
use bytes::Bytes;
use dicom_dictionary_std::tags;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::sql::{Conns, Database, Dialect, Exec, SqlError, args};

pub use crate::sql::OpenError;

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

/// Database index plus content-addressed files. Cheap to share behind an `Arc`.
pub struct DiskStore {
    objects: PathBuf,
    db: Conns,
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
    /// Opens (creating if needed) the store in `data` with the data folder's SQLite
    /// database, migrating the schema.
    pub fn open(data: &Path) -> Result<Self, OpenError> {
        Self::with_database(data, &Database::open(data, None)?)
    }

    /// Opens (creating if needed) the store's files in `data`, indexed in `db`.
    pub fn with_database(data: &Path, db: &Database) -> Result<Self, OpenError> {
        let objects = data.join("objects").join("sha256");
        std::fs::create_dir_all(&objects).map_err(|source| OpenError::CreateFolder {
            path: objects.clone(),
            source,
        })?;
        // The index can be rebuilt from the files, so a power cut may cost its last commits.
        let db = Conns::open(db, "NORMAL")?;
        Ok(Self { objects, db })
    }

    /// The schema version in use.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        let sql = match self.db.dialect() {
            Dialect::Sqlite => "PRAGMA user_version",
            Dialect::Postgres => "SELECT version FROM bedside_schema",
        };
        self.db
            .read(|c| c.query_one(sql, &[])?.int(0))
            .map_err(backend)
    }

    /// Number of stored instances.
    pub fn instance_count(&self) -> Result<u64, StoreError> {
        self.db
            .read(|c| c.query_one("SELECT COUNT(*) FROM instances", &[])?.int(0))
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
) -> (String, Vec<crate::sql::V>) {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(s) = &scope.study_instance_uid {
        conds.push(format!("{study_col} = ?"));
        args.push(s.into());
    }
    if let (Some(s), Some(col)) = (&scope.series_instance_uid, series_col) {
        conds.push(format!("{col} = ?"));
        args.push(s.into());
    }
    if let (Some(s), Some(col)) = (&scope.sop_instance_uid, sop_col) {
        conds.push(format!("{col} = ?"));
        args.push(s.into());
    }
    let sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };
    (sql, args)
}

fn find_rows(c: &mut dyn Exec, level: Level, scope: &Scope) -> Result<Vec<Record>, SqlError> {
    let bad = |e: StoreError| SqlError::Other(e.to_string());
    let mut out = Vec::new();
    match level {
        Level::Study => {
            let (filter, args) = scope_filter(scope, "st.study_instance_uid", None, None);
            let modalities = c.dialect().group_concat("DISTINCT se.modality");
            let sql = format!(
                "SELECT st.attributes,
                    (SELECT COUNT(*) FROM series se WHERE se.study_instance_uid = st.study_instance_uid),
                    (SELECT COUNT(*) FROM instances i WHERE i.study_instance_uid = st.study_instance_uid),
                    (SELECT {modalities} FROM series se WHERE se.study_instance_uid = st.study_instance_uid)
                 FROM studies st{filter} ORDER BY st.created_at, st.study_instance_uid"
            );
            for row in c.query(&sql, &args)? {
                let mut record = parse_record(&row.text(0)?).map_err(bad)?;
                record.insert(
                    key(0x0020_1206),
                    json!({"vr": "IS", "Value": [row.int(1)?]}),
                );
                record.insert(
                    key(0x0020_1208),
                    json!({"vr": "IS", "Value": [row.int(2)?]}),
                );
                let modalities = row.opt_text(3)?;
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
                 ORDER BY se.study_instance_uid, se.series_number NULLS FIRST, se.series_instance_uid"
            );
            for row in c.query(&sql, &args)? {
                let mut record = parse_record(&row.text(0)?).map_err(bad)?;
                record.extend(parse_record(&row.text(1)?).map_err(bad)?);
                record.insert(
                    key(0x0020_1209),
                    json!({"vr": "IS", "Value": [row.int(2)?]}),
                );
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
                 ORDER BY study_instance_uid, series_instance_uid, instance_number NULLS FIRST, sop_instance_uid"
            );
            for row in c.query(&sql, &args)? {
                let mut record = parse_record(&row.text(0)?).map_err(bad)?;
                record.insert(
                    key(0x0008_3002),
                    json!({"vr": "UI", "Value": [row.text(1)?]}),
                );
                out.push(record);
            }
        }
    }
    Ok(out)
}

impl StudyStore for DiskStore {
    fn find(&self, level: Level, scope: &Scope) -> Result<Vec<Record>, StoreError> {
        self.db
            .read(|c| find_rows(c, level, scope))
            .map_err(backend)
    }

    fn locate(&self, scope: &Scope) -> Result<Vec<InstanceLocator>, StoreError> {
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
             ORDER BY se.series_number NULLS FIRST, i.series_instance_uid, i.instance_number NULLS FIRST,
                      i.sop_instance_uid"
        );
        self.db
            .read(|c| {
                c.query(&sql, &args)?
                    .into_iter()
                    .map(|r| {
                        Ok(InstanceLocator {
                            study_instance_uid: r.text(0)?,
                            series_instance_uid: r.text(1)?,
                            sop_instance_uid: r.text(2)?,
                            sop_class_uid: r.text(3)?,
                            transfer_syntax_uid: r.text(4)?,
                            content_key: r.text(5)?,
                        })
                    })
                    .collect::<Result<Vec<_>, SqlError>>()
            })
            .map_err(backend)
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
        let existing = self
            .db
            .read(|c| {
                c.query_opt(
                    "SELECT sha256 FROM instances WHERE sop_instance_uid = ?",
                    args![&facts.sop_instance],
                )?
                .map(|r| r.text(0))
                .transpose()
            })
            .map_err(backend)?;
        match existing {
            Some(old) if old == sha => return Ok(StoreOutcome::AlreadyStored(locator)),
            Some(_) => return Err(StoreError::Conflict),
            None => {}
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
        let size = bytes.len() as i64;
        let inserted = self.db.write(|tx| -> Result<u64, StoreError> {
            tx.execute(
                "INSERT INTO studies (study_instance_uid, attributes, created_at) VALUES (?, ?, ?)
                 ON CONFLICT DO NOTHING",
                args![&facts.study, Value::Object(study_attrs).to_string(), now()],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO series (series_instance_uid, study_instance_uid, modality, series_number, attributes)
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                args![
                    &facts.series,
                    &facts.study,
                    facts.modality.clone(),
                    facts.series_number,
                    Value::Object(series_attrs).to_string()
                ],
            )
            .map_err(backend)?;
            let series_study = tx
                .query_one(
                    "SELECT study_instance_uid FROM series WHERE series_instance_uid = ?",
                    args![&facts.series],
                )
                .and_then(|r| r.text(0))
                .map_err(backend)?;
            if series_study != facts.study {
                return Err(StoreError::Refused(
                    "the series already belongs to another study".into(),
                ));
            }
            tx.execute(
                "INSERT INTO instances (sop_instance_uid, series_instance_uid, study_instance_uid, sop_class_uid,
                    transfer_syntax_uid, instance_number, number_of_frames, sha256, size, attributes, stored_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                args![
                    &facts.sop_instance,
                    &facts.series,
                    &facts.study,
                    &facts.sop_class,
                    &facts.transfer_syntax,
                    facts.instance_number,
                    facts.frames,
                    &sha,
                    size,
                    Value::Object(facts.attributes.clone()).to_string(),
                    now()
                ],
            )
            .map_err(backend)
        })?;
        if inserted == 0 {
            // Another writer stored the same UID between our check and insert.
            return Err(StoreError::Conflict);
        }
        Ok(StoreOutcome::Stored(locator))
    }
}

impl From<SqlError> for StoreError {
    fn from(e: SqlError) -> Self {
        backend(e)
    }
}
