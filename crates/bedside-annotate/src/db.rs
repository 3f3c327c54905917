//! Accounts, sessions, projects and annotations, in the data folder's SQLite database or in
//! PostgreSQL.
//!
//! With SQLite, writes go through one connection with `synchronous = FULL`, so an operation
//! the server has acknowledged survives a crash of the process or the machine; reads use a
//! second connection (WAL lets them run beside a write). With PostgreSQL, several servers share
//! the database: an annotation operation locks its study's row first, so operations on a study
//! are numbered and committed one at a time whichever server takes them, and each is written to
//! `op_log` and announced on a channel from which every server relays it to its own WebSocket
//! connections (see [`AnnotateDb::relay`]). Every change writes an `audit` row in the same
//! transaction.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{self, LabelSchema, Location, Resolved, Role};
use crate::sql::{Conns, Database, Dialect, Exec, OpenError, Row, SqlError, args};

/// A database failure or a refused request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// The database failed.
    #[error(transparent)]
    Database(#[from] SqlError),
    /// Something named does not exist (or is not visible to the caller).
    #[error("not found: {0}")]
    NotFound(String),
    /// The input breaks a rule.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The caller's role does not allow it.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Already exists.
    #[error("already exists: {0}")]
    Exists(String),
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A lock was poisoned by a panic in another thread.
    #[error("database lock poisoned")]
    Poisoned,
}

/// Why an annotation operation was not applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Refused for another reason.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The version given is not the current one (or the annotation was deleted); carries the
    /// current state.
    #[error("stale version: the annotation is at version {}", .0.version)]
    Conflict(Box<Annotation>),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A signed-in user as the request handlers see them.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Row id.
    pub user_id: i64,
    /// Login name.
    pub username: String,
    /// Whether the user administers every project (and may create projects).
    pub superuser: bool,
    /// The session's CSRF token (must come back in `X-CSRF-Token` on unsafe requests).
    pub csrf: String,
}

/// A user as listed.
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    /// Login name.
    pub username: String,
    /// Superuser flag.
    pub superuser: bool,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// Project name and role.
    pub projects: Vec<(String, Role)>,
}

/// A project.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Whether annotators see only their own annotations.
    pub blinded: bool,
    /// The label schema.
    pub schema: LabelSchema,
}

/// A study of a project.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectStudy {
    /// Study Instance UID.
    pub study_instance_uid: String,
    /// Sequence number of the last operation on the study's annotations.
    pub seq: i64,
    /// Annotators assigned to it.
    pub assignees: Vec<String>,
}

/// One annotation, as the API and the WebSocket send it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Annotation {
    /// Identifier (chosen by the client on creation, or by the server).
    pub id: String,
    /// Project id.
    pub project_id: i64,
    /// Study.
    pub study_instance_uid: String,
    /// Series, instance and frame, as far as the annotation goes down.
    #[serde(flatten)]
    pub location: Location,
    /// `label`, `length`, `area`, `ellipse`, `polygon` or `mask`.
    pub kind: String,
    /// The schema name.
    pub name: String,
    /// What was drawn or chosen (masks without their pixels).
    pub payload: Value,
    /// Physical values computed by the server (measurements and masks).
    pub measurement: Option<Value>,
    /// Who created it.
    pub author: String,
    /// Author's user id (for blinding).
    #[serde(skip)]
    pub author_id: i64,
    /// Creation time (ms since the epoch).
    pub created_at: i64,
    /// Last change (ms since the epoch).
    pub updated_at: i64,
    /// Who changed it last.
    pub updated_by: String,
    /// Starts at 1, +1 per change (deletion included).
    pub version: i64,
    /// The study's operation number of the last change.
    pub seq: i64,
    /// Deleted (kept as a tombstone so late updates are refused with the current state).
    pub deleted: bool,
}

/// Creation, change or deletion of an annotation.
#[derive(Debug, Clone)]
pub enum Op {
    /// A new annotation. A retried creation with the same `id` by the same author is
    /// acknowledged without creating a second one.
    Create {
        /// Client-chosen id (letters, digits, `-`, `_`; up to 64), or `None`.
        id: Option<String>,
        /// Where.
        location: Location,
        /// Kind.
        kind: String,
        /// Schema name.
        name: String,
        /// Payload.
        payload: Value,
    },
    /// Replaces the payload of version `version`.
    Update {
        /// Annotation.
        id: String,
        /// The version the client has.
        version: i64,
        /// New payload.
        payload: Value,
    },
    /// Deletes version `version`.
    Delete {
        /// Annotation.
        id: String,
        /// The version the client has.
        version: i64,
    },
}

/// The result of an applied operation.
#[derive(Debug, Clone)]
pub struct Applied {
    /// `create`, `update` or `delete`.
    pub op: &'static str,
    /// The state after the operation.
    pub annotation: Annotation,
    /// False when a retried creation was found already applied (nothing changed).
    pub changed: bool,
}

/// The database handle shared by the server.
pub struct AnnotateDb {
    db: Conns,
    pool: Option<Arc<crate::sql::PgPool>>,
}

impl std::fmt::Debug for AnnotateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnotateDb").finish_non_exhaustive()
    }
}

fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> Result<String, DbError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| DbError::Hash(e.to_string()))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-256 of a session token, as stored (a copy of the database does not hold live tokens).
fn token_digest(token: &str) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(token.as_bytes()))
}

/// Hashes a password with Argon2id (the crate's defaults: 19 MiB, 2 passes, one lane, as
/// OWASP recommends) and a random salt, in PHC string form.
pub fn hash_password(password: &str) -> Result<String, DbError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| DbError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| DbError::Hash(e.to_string()))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DbError::Hash(e.to_string()))
}

fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Writes an audit row.
fn audit(
    tx: &mut dyn Exec,
    user: Option<i64>,
    project: Option<i64>,
    action: &str,
    target: &str,
    detail: &Value,
) -> Result<(), SqlError> {
    tx.execute(
        "INSERT INTO audit (at, user_id, project_id, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
        args![now_ms(), user, project, action, target, detail.to_string()],
    )?;
    Ok(())
}

const ANNOTATION_COLUMNS: &str = "a.id, a.project_id, a.study_instance_uid, a.series_instance_uid,
    a.sop_instance_uid, a.frame, a.kind, a.name, a.payload, a.measurement, u.username, a.author_id,
    a.created_at, a.updated_at, w.username, a.version, a.seq, a.deleted";

const ANNOTATION_FROM: &str = "annotations a JOIN users u ON u.id = a.author_id
    JOIN users w ON w.id = a.updated_by";

fn annotation_row(r: &Row) -> Result<Annotation, SqlError> {
    let payload = r.text(8)?;
    let measurement = r.opt_text(9)?;
    Ok(Annotation {
        id: r.text(0)?,
        project_id: r.int(1)?,
        study_instance_uid: r.text(2)?,
        location: Location {
            series_instance_uid: r.opt_text(3)?,
            sop_instance_uid: r.opt_text(4)?,
            frame: r.opt_int(5)?,
        },
        kind: r.text(6)?,
        name: r.text(7)?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
        measurement: measurement.and_then(|m| serde_json::from_str(&m).ok()),
        author: r.text(10)?,
        author_id: r.int(11)?,
        created_at: r.int(12)?,
        updated_at: r.int(13)?,
        updated_by: r.text(14)?,
        version: r.int(15)?,
        seq: r.int(16)?,
        deleted: r.flag(17)?,
    })
}

fn annotation_rows(rows: Vec<Row>) -> Result<Vec<Annotation>, SqlError> {
    rows.iter().map(annotation_row).collect()
}

fn load_annotation(c: &mut dyn Exec, id: &str) -> Result<Option<Annotation>, SqlError> {
    c.query_opt(
        &format!("SELECT {ANNOTATION_COLUMNS} FROM {ANNOTATION_FROM} WHERE a.id = ?"),
        args![id],
    )?
    .map(|r| annotation_row(&r))
    .transpose()
}

const PROJECT_COLUMNS: &str = "SELECT id, name, blinded, label_schema FROM projects";

fn project_row(r: &Row) -> Result<(i64, String, bool, String), SqlError> {
    Ok((r.int(0)?, r.text(1)?, r.flag(2)?, r.text(3)?))
}

fn to_project((id, name, blinded, schema): (i64, String, bool, String)) -> Project {
    let schema = serde_json::from_str::<Value>(&schema)
        .ok()
        .and_then(|v| LabelSchema::parse(&v).ok())
        .unwrap_or_default();
    Project {
        id,
        name,
        blinded,
        schema,
    }
}

fn user_id(c: &mut dyn Exec, username: &str) -> Result<i64, DbError> {
    c.query_opt("SELECT id FROM users WHERE username = ?", args![username])?
        .ok_or_else(|| DbError::NotFound(format!("user {username}")))?
        .int(0)
        .map_err(DbError::from)
}

fn role_of(c: &mut dyn Exec, who: &Principal, project: i64) -> Result<Option<Role>, DbError> {
    if !c.exists("SELECT 1 FROM projects WHERE id = ?", args![project])? {
        return Ok(None);
    }
    if who.superuser {
        return Ok(Some(Role::Admin));
    }
    let role = c
        .query_opt(
            "SELECT role FROM memberships WHERE project_id = ? AND user_id = ?",
            args![project, who.user_id],
        )?
        .map(|r| r.text(0))
        .transpose()?;
    Ok(role.as_deref().and_then(Role::parse))
}

fn study_visible(
    c: &mut dyn Exec,
    who: &Principal,
    role: Role,
    project: i64,
    study: &str,
) -> Result<bool, DbError> {
    if !c.exists(
        "SELECT 1 FROM project_studies WHERE project_id = ? AND study_instance_uid = ?",
        args![project, study],
    )? {
        return Ok(false);
    }
    if role != Role::Annotator {
        return Ok(true);
    }
    Ok(c.exists(
        "SELECT 1 FROM assignments WHERE project_id = ? AND study_instance_uid = ? AND user_id = ?",
        args![project, study, who.user_id],
    )?)
}

/// The instance facts a measurement needs.
struct InstanceFacts {
    rows: u64,
    columns: u64,
    frames: i64,
    attributes: bedside_dicomweb::Record,
}

fn instance_facts(
    c: &mut dyn Exec,
    study: &str,
    loc: &Location,
) -> Result<Option<InstanceFacts>, DbError> {
    let (Some(series), Some(sop)) = (&loc.series_instance_uid, &loc.sop_instance_uid) else {
        return Ok(None);
    };
    let row = c.query_opt(
        "SELECT number_of_frames, attributes FROM instances
         WHERE sop_instance_uid = ? AND series_instance_uid = ? AND study_instance_uid = ?",
        args![sop, series, study],
    )?;
    let Some(row) = row else {
        return Err(DbError::NotFound(
            "no such instance in this study and series".into(),
        ));
    };
    let (frames, attrs) = (row.int(0)?, row.text(1)?);
    let attributes = match serde_json::from_str::<Value>(&attrs) {
        Ok(Value::Object(m)) => m,
        _ => return Err(DbError::Invalid("stored attributes are unreadable".into())),
    };
    let int = |k: &str| {
        attributes
            .get(k)
            .and_then(|a| a.get("Value"))
            .and_then(|v| v.get(0))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(Some(InstanceFacts {
        rows: int("00280010"),
        columns: int("00280011"),
        frames,
        attributes,
    }))
}

/// The payload to store, the computed measurement and the compressed mask.
type Validated = (Value, Option<Value>, Option<Vec<u8>>);

/// Checks a new annotation against the schema and the image; returns the payload to store,
/// the computed measurement and the compressed mask.
fn validate(
    c: &mut dyn Exec,
    schema: &LabelSchema,
    study: &str,
    location: &Location,
    kind: &str,
    name: &str,
    payload: &Value,
) -> Result<Validated, DbError> {
    use model::Level;
    let resolved = schema.resolve(kind, name).map_err(DbError::Invalid)?;
    if let Resolved::Label(def) = &resolved {
        location
            .check_level(match def.scope {
                model::LabelScope::Study => Level::Study,
                model::LabelScope::Series => Level::Series,
                model::LabelScope::Instance => Level::Instance,
                model::LabelScope::Frame => Level::Frame,
            })
            .map_err(DbError::Invalid)?;
    } else {
        location
            .check_level(Level::Frame)
            .map_err(DbError::Invalid)?;
    }
    if let Some(series) = &location.series_instance_uid
        && location.sop_instance_uid.is_none()
        && !c.exists(
            "SELECT 1 FROM series WHERE series_instance_uid = ? AND study_instance_uid = ?",
            args![series, study],
        )?
    {
        return Err(DbError::NotFound("no such series in this study".into()));
    }
    let facts = instance_facts(c, study, location)?;
    if let (Some(f), Some(frame)) = (&facts, location.frame)
        && (frame < 1 || frame > f.frames)
    {
        return Err(DbError::Invalid(format!(
            "frame {frame} is not between 1 and {}",
            f.frames
        )));
    }
    match resolved {
        Resolved::Label(def) => {
            model::check_label(def, payload).map_err(DbError::Invalid)?;
            Ok((payload.clone(), None, None))
        }
        Resolved::Measurement(mk) => {
            let f =
                facts.ok_or_else(|| DbError::Invalid("a measurement needs an instance".into()))?;
            let g = model::geometry(mk, payload, f.rows as f64, f.columns as f64)
                .map_err(DbError::Invalid)?;
            let m = crate::units::measure(&g, &f.attributes);
            Ok((payload.clone(), Some(m), None))
        }
        Resolved::Mask => {
            let f = facts.ok_or_else(|| DbError::Invalid("a mask needs an instance".into()))?;
            let (kept, mask) = model::mask(payload, f.rows, f.columns).map_err(DbError::Invalid)?;
            let m = crate::units::measure(&crate::units::Geometry::Pixels(mask.set), &f.attributes);
            Ok((kept, Some(m), Some(mask.compressed)))
        }
    }
}

fn require_admin(c: &mut dyn Exec, who: &Principal, project: i64) -> Result<(), DbError> {
    match role_of(c, who, project)? {
        Some(Role::Admin) => Ok(()),
        Some(r) => Err(DbError::Forbidden(format!(
            "a {} cannot manage the project",
            r.as_str()
        ))),
        None => Err(DbError::NotFound("project".into())),
    }
}

/// A committed operation as relayed between servers sharing a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// Project.
    pub project_id: i64,
    /// Study.
    pub study_instance_uid: String,
    /// The annotation's author (for blinding).
    pub author_id: i64,
    /// The study's operation number.
    pub seq: i64,
    /// The WebSocket message (`{"type": "op", …}`).
    pub message: String,
}

/// The WebSocket message announcing an applied operation.
pub fn op_message(applied: &Applied) -> String {
    let a = &applied.annotation;
    json!({"type": "op", "op": applied.op, "seq": a.seq, "annotation": a}).to_string()
}

impl AnnotateDb {
    /// Opens the database of a data folder (created and migrated if needed).
    pub fn open(data: &Path) -> Result<Self, OpenError> {
        Self::with_database(&Database::open(data, None)?)
    }

    /// Uses an opened [`Database`] (SQLite or PostgreSQL).
    pub fn with_database(db: &Database) -> Result<Self, OpenError> {
        Ok(Self {
            db: Conns::open(db, "FULL")?,
            pool: match db {
                Database::Postgres(p) => Some(p.clone()),
                Database::Sqlite(_) => None,
            },
        })
    }

    /// The engine.
    pub fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// With PostgreSQL, relays every operation committed by any server sharing the database
    /// (this one included) to `deliver`, in commit order, from a thread of its own, and calls
    /// `resync` whenever operations may have been missed (after the listener (re)connects).
    /// The thread ends within a second once `alive` returns false. With SQLite, operations are
    /// delivered by [`AnnotateDb::apply`]'s `on_commit` instead and this does nothing.
    pub fn relay(
        &self,
        alive: impl Fn() -> bool + Send + 'static,
        deliver: impl Fn(Relayed) + Send + 'static,
        presence: impl Fn(Value) + Send + 'static,
        resync: impl Fn() + Send + 'static,
    ) -> std::io::Result<()> {
        let Some(pool) = self.pool.clone() else {
            return Ok(());
        };
        let reader = Conns::Postgres(pool.clone());
        crate::sql::listen(
            pool,
            &[crate::sql::OPS_CHANNEL, crate::sql::PRESENCE_CHANNEL],
            alive,
            move |channel, payload| {
                if channel == crate::sql::PRESENCE_CHANNEL {
                    if let Ok(v) = serde_json::from_str::<Value>(payload) {
                        presence(v);
                    }
                    return;
                }
                let Ok(id) = payload.parse::<i64>() else {
                    return;
                };
                let got = reader.read(|c| {
                    c.query_opt(
                        "SELECT project_id, study_instance_uid, author_id, seq, message FROM op_log WHERE id = ?",
                        args![id],
                    )?
                    .map(|r| {
                        Ok::<_, SqlError>(Relayed {
                            project_id: r.int(0)?,
                            study_instance_uid: r.text(1)?,
                            author_id: r.int(2)?,
                            seq: r.int(3)?,
                            message: r.text(4)?,
                        })
                    })
                    .transpose()
                });
                match got {
                    Ok(Some(op)) => deliver(op),
                    // Pruned already, or unreadable: connections notice the gap and resync.
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read a relayed operation"),
                }
            },
            resync,
        )
        .map(drop)
    }

    /// Whether operations and presence travel through the database (PostgreSQL) to every
    /// server sharing it.
    pub fn relays(&self) -> bool {
        self.pool.is_some()
    }

    /// With PostgreSQL, tells every server sharing the database (this one included) of a
    /// presence change (a small JSON object, see `collab`); with SQLite does nothing.
    pub fn announce_presence(&self, message: &Value) -> Result<(), DbError> {
        if self.pool.is_none() {
            return Ok(());
        }
        let text = message.to_string();
        // NOTIFY payloads stop short of 8000 bytes; presence is far smaller.
        if text.len() > 7900 {
            return Err(DbError::Invalid("presence message too long".into()));
        }
        self.db.write(|tx| {
            tx.execute(
                "SELECT pg_notify(?, ?)",
                args![crate::sql::PRESENCE_CHANNEL, text],
            )
            .map(drop)
        })?;
        Ok(())
    }

    // ---- users and sessions ----

    /// Adds a user (`superuser` administers every project and may create projects).
    pub fn add_user(&self, username: &str, password: &str, superuser: bool) -> Result<(), DbError> {
        if !valid_username(username) {
            return Err(DbError::Invalid(
                "user names are 1 to 64 letters, digits or . _ @ -".into(),
            ));
        }
        if password.chars().count() < 8 || password.len() > 1024 {
            return Err(DbError::Invalid(
                "passwords have 8 to 1024 characters".into(),
            ));
        }
        let hash = hash_password(password)?;
        self.db.write(|tx| {
            if tx.exists("SELECT 1 FROM users WHERE username = ?", args![username])? {
                return Err(DbError::Exists(format!("user {username}")));
            }
            let id = tx
                .query_one(
                    "INSERT INTO users (username, password_hash, superuser, created_at) VALUES (?, ?, ?, ?)
                     RETURNING id",
                    args![username, hash.as_str(), superuser, now_ms()],
                )?
                .int(0)?;
            audit(
                tx,
                None,
                None,
                "user.add",
                &format!("user:{id}"),
                &json!({"username": username, "superuser": superuser}),
            )?;
            Ok(())
        })
    }

    /// Lists the users with their memberships.
    pub fn list_users(&self) -> Result<Vec<UserInfo>, DbError> {
        self.db.read(|c| {
            let users = c.query(
                "SELECT id, username, superuser, created_at FROM users ORDER BY username",
                &[],
            )?;
            let mut out = Vec::new();
            for u in users {
                let projects = c
                    .query(
                        "SELECT p.name, m.role FROM memberships m JOIN projects p ON p.id = m.project_id
                         WHERE m.user_id = ? ORDER BY p.name",
                        args![u.int(0)?],
                    )?
                    .iter()
                    .filter_map(|r| Some((r.text(0).ok()?, Role::parse(&r.text(1).ok()?)?)))
                    .collect();
                out.push(UserInfo {
                    username: u.text(1)?,
                    superuser: u.flag(2)?,
                    created_at: u.int(3)?,
                    projects,
                });
            }
            Ok(out)
        })
    }

    /// Checks a password and opens a session of `ttl_secs`; returns the principal and the
    /// session token (only its digest is stored). Unknown users cost the same time as wrong
    /// passwords.
    pub fn login(
        &self,
        username: &str,
        password: &str,
        ttl_secs: i64,
    ) -> Result<Option<(Principal, String)>, DbError> {
        let row = self.db.read(|c| {
            c.query_opt(
                "SELECT id, password_hash, superuser FROM users WHERE username = ?",
                args![username],
            )?
            .map(|r| Ok::<_, SqlError>((r.int(0)?, r.text(1)?, r.flag(2)?)))
            .transpose()
        })?;
        let Some((user_id, hash, superuser)) = row else {
            // Same work as a real check, so response times do not reveal which names exist.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| hash_password("not a password").unwrap_or_default());
            let _ = verify_password(dummy, password);
            return Ok(None);
        };
        if !verify_password(&hash, password) {
            self.db.write(|tx| {
                audit(
                    tx,
                    Some(user_id),
                    None,
                    "login.failed",
                    &format!("user:{user_id}"),
                    &json!({}),
                )
            })?;
            return Ok(None);
        }
        let token = random_hex(32)?;
        let csrf = random_hex(32)?;
        let now = now_ms();
        self.db.write(|tx| {
            tx.execute("DELETE FROM sessions WHERE expires_at < ?", args![now])?;
            tx.execute(
                "INSERT INTO sessions (token_sha256, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                args![token_digest(&token), user_id, csrf.as_str(), now, now + ttl_secs * 1000],
            )?;
            audit(
                tx,
                Some(user_id),
                None,
                "login",
                &format!("user:{user_id}"),
                &json!({}),
            )
        })?;
        Ok(Some((
            Principal {
                user_id,
                username: username.to_string(),
                superuser,
                csrf,
            },
            token,
        )))
    }

    /// The principal of a live session.
    pub fn session(&self, token: &str) -> Result<Option<Principal>, DbError> {
        Ok(self.db.read(|c| {
            c.query_opt(
                "SELECT u.id, u.username, u.superuser, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_sha256 = ? AND s.expires_at > ?",
                args![token_digest(token), now_ms()],
            )?
            .map(|r| {
                Ok::<_, SqlError>(Principal {
                    user_id: r.int(0)?,
                    username: r.text(1)?,
                    superuser: r.flag(2)?,
                    csrf: r.text(3)?,
                })
            })
            .transpose()
        })?)
    }

    /// Ends a session.
    pub fn logout(&self, token: &str, who: &Principal) -> Result<(), DbError> {
        Ok(self.db.write(|tx| {
            tx.execute(
                "DELETE FROM sessions WHERE token_sha256 = ?",
                args![token_digest(token)],
            )?;
            audit(
                tx,
                Some(who.user_id),
                None,
                "logout",
                &format!("user:{}", who.user_id),
                &json!({}),
            )
        })?)
    }

    // ---- projects ----

    /// The caller's role in a project (superusers are admins everywhere); `None` when the
    /// project does not exist or the caller is not a member.
    pub fn role(&self, who: &Principal, project: i64) -> Result<Option<Role>, DbError> {
        self.db.read(|c| role_of(c, who, project))
    }

    /// Whether the caller is an admin of at least one project (or a superuser).
    pub fn is_admin_anywhere(&self, who: &Principal) -> Result<bool, DbError> {
        if who.superuser {
            return Ok(true);
        }
        Ok(self.db.read(|c| {
            c.exists(
                "SELECT 1 FROM memberships WHERE user_id = ? AND role = 'admin' LIMIT 1",
                args![who.user_id],
            )
        })?)
    }

    /// Creates a project (superusers only).
    pub fn create_project(
        &self,
        who: &Principal,
        name: &str,
        blinded: bool,
        schema: &Value,
    ) -> Result<Project, DbError> {
        if !who.superuser {
            return Err(DbError::Forbidden("only superusers create projects".into()));
        }
        if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(DbError::Invalid(
                "project names are 1 to 128 printable characters".into(),
            ));
        }
        let parsed = LabelSchema::parse(schema).map_err(DbError::Invalid)?;
        let stored = serde_json::to_string(&parsed).map_err(|e| DbError::Invalid(e.to_string()))?;
        let id = self.db.write(|tx| {
            if tx.exists("SELECT 1 FROM projects WHERE name = ?", args![name])? {
                return Err(DbError::Exists(format!("project {name:?}")));
            }
            let id = tx
                .query_one(
                    "INSERT INTO projects (name, blinded, label_schema, created_at) VALUES (?, ?, ?, ?)
                     RETURNING id",
                    args![name, blinded, stored.as_str(), now_ms()],
                )?
                .int(0)?;
            audit(
                tx,
                Some(who.user_id),
                Some(id),
                "project.create",
                &format!("project:{id}"),
                &json!({"name": name, "blinded": blinded, "schema": parsed}),
            )?;
            Ok(id)
        })?;
        Ok(Project {
            id,
            name: name.to_string(),
            blinded,
            schema: parsed,
        })
    }

    /// A project by id.
    pub fn project(&self, id: i64) -> Result<Option<Project>, DbError> {
        Ok(self
            .db
            .read(|c| {
                c.query_opt(&format!("{PROJECT_COLUMNS} WHERE id = ?"), args![id])?
                    .map(|r| project_row(&r))
                    .transpose()
            })?
            .map(to_project))
    }

    /// The projects the caller belongs to (all for superusers), with their role.
    pub fn projects(&self, who: &Principal) -> Result<Vec<(Project, Role)>, DbError> {
        let rows = self.db.read(|c| {
            c.query(
                "SELECT p.id, p.name, p.blinded, p.label_schema, m.role FROM projects p
                 LEFT JOIN memberships m ON m.project_id = p.id AND m.user_id = ?
                 WHERE ? = 1 OR m.role IS NOT NULL ORDER BY p.name",
                args![who.user_id, who.superuser],
            )?
            .iter()
            .map(|r| Ok::<_, SqlError>((project_row(r)?, r.opt_text(4)?)))
            .collect::<Result<Vec<_>, _>>()
        })?;
        let mut out = Vec::new();
        for (p, role) in rows {
            let role = if who.superuser {
                Role::Admin
            } else {
                match role.as_deref().and_then(Role::parse) {
                    Some(r) => r,
                    None => continue,
                }
            };
            out.push((to_project(p), role));
        }
        Ok(out)
    }

    /// Changes a project's blinding and/or schema (admins).
    pub fn update_project(
        &self,
        who: &Principal,
        project: i64,
        blinded: Option<bool>,
        schema: Option<&Value>,
    ) -> Result<Project, DbError> {
        let parsed = schema
            .map(LabelSchema::parse)
            .transpose()
            .map_err(DbError::Invalid)?;
        let text = parsed
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| DbError::Invalid(e.to_string()))?;
        let p = self.db.write(|tx| {
            require_admin(tx, who, project)?;
            if let Some(b) = blinded {
                tx.execute(
                    "UPDATE projects SET blinded = ? WHERE id = ?",
                    args![b, project],
                )?;
            }
            if let Some(text) = &text {
                tx.execute(
                    "UPDATE projects SET label_schema = ? WHERE id = ?",
                    args![text, project],
                )?;
            }
            audit(
                tx,
                Some(who.user_id),
                Some(project),
                "project.update",
                &format!("project:{project}"),
                &json!({"blinded": blinded, "schema": parsed}),
            )?;
            Ok::<_, DbError>(project_row(&tx.query_one(
                &format!("{PROJECT_COLUMNS} WHERE id = ?"),
                args![project],
            )?)?)
        })?;
        Ok(to_project(p))
    }

    /// Gives `username` a role in a project, or removes them (`role` = `None`) (admins).
    pub fn set_member(
        &self,
        who: &Principal,
        project: i64,
        username: &str,
        role: Option<Role>,
    ) -> Result<(), DbError> {
        self.db.write(|tx| {
            require_admin(tx, who, project)?;
            let user = user_id(tx, username)?;
            match role {
                Some(r) => tx.execute(
                    "INSERT INTO memberships (project_id, user_id, role) VALUES (?, ?, ?)
                     ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role",
                    args![project, user, r.as_str()],
                )?,
                None => tx.execute(
                    "DELETE FROM memberships WHERE project_id = ? AND user_id = ?",
                    args![project, user],
                )?,
            };
            audit(
                tx,
                Some(who.user_id),
                Some(project),
                if role.is_some() {
                    "member.set"
                } else {
                    "member.remove"
                },
                &format!("user:{user}"),
                &json!({"username": username, "role": role}),
            )?;
            Ok(())
        })
    }

    /// The members of a project.
    pub fn members(&self, project: i64) -> Result<Vec<(String, Role)>, DbError> {
        Ok(self.db.read(|c| {
            Ok::<_, SqlError>(
                c.query(
                    "SELECT u.username, m.role FROM memberships m JOIN users u ON u.id = m.user_id
                     WHERE m.project_id = ? ORDER BY u.username",
                    args![project],
                )?
                .iter()
                .filter_map(|r| Some((r.text(0).ok()?, Role::parse(&r.text(1).ok()?)?)))
                .collect(),
            )
        })?)
    }

    /// Adds a stored study to a project (admins).
    pub fn add_study(&self, who: &Principal, project: i64, study: &str) -> Result<(), DbError> {
        self.db.write(|tx| {
            require_admin(tx, who, project)?;
            if !tx.exists(
                "SELECT 1 FROM studies WHERE study_instance_uid = ?",
                args![study],
            )? {
                return Err(DbError::NotFound("no such study in the store".into()));
            }
            tx.execute(
                "INSERT INTO project_studies (project_id, study_instance_uid) VALUES (?, ?)
                 ON CONFLICT DO NOTHING",
                args![project, study],
            )?;
            audit(
                tx,
                Some(who.user_id),
                Some(project),
                "study.add",
                &format!("study:{study}"),
                &json!({}),
            )?;
            Ok(())
        })
    }

    /// Assigns a study to an annotator, or withdraws it (admins).
    pub fn assign(
        &self,
        who: &Principal,
        project: i64,
        study: &str,
        username: &str,
        assigned: bool,
    ) -> Result<(), DbError> {
        self.db.write(|tx| {
            require_admin(tx, who, project)?;
            let user = user_id(tx, username)?;
            if !tx.exists(
                "SELECT 1 FROM project_studies WHERE project_id = ? AND study_instance_uid = ?",
                args![project, study],
            )? {
                return Err(DbError::NotFound("the study is not in this project".into()));
            }
            if assigned {
                tx.execute(
                    "INSERT INTO assignments (project_id, study_instance_uid, user_id) VALUES (?, ?, ?)
                     ON CONFLICT DO NOTHING",
                    args![project, study, user],
                )?;
            } else {
                tx.execute(
                    "DELETE FROM assignments WHERE project_id = ? AND study_instance_uid = ? AND user_id = ?",
                    args![project, study, user],
                )?;
            }
            audit(
                tx,
                Some(who.user_id),
                Some(project),
                if assigned {
                    "study.assign"
                } else {
                    "study.unassign"
                },
                &format!("study:{study}"),
                &json!({"username": username}),
            )?;
            Ok(())
        })
    }

    /// The project's studies the caller may open (annotators: those assigned to them).
    pub fn studies(
        &self,
        who: &Principal,
        project: i64,
        role: Role,
    ) -> Result<Vec<ProjectStudy>, DbError> {
        let names = self.dialect().group_concat("u.username");
        let sql = format!(
            "SELECT ps.study_instance_uid, ps.seq,
                (SELECT {names} FROM assignments a JOIN users u ON u.id = a.user_id
                 WHERE a.project_id = ps.project_id AND a.study_instance_uid = ps.study_instance_uid)
             FROM project_studies ps WHERE ps.project_id = ?
               AND (? = 1 OR EXISTS (SELECT 1 FROM assignments a WHERE a.project_id = ps.project_id
                     AND a.study_instance_uid = ps.study_instance_uid AND a.user_id = ?))
             ORDER BY ps.study_instance_uid"
        );
        Ok(self.db.read(|c| {
            c.query(&sql, args![project, role != Role::Annotator, who.user_id])?
                .iter()
                .map(|r| {
                    let mut assignees: Vec<String> = r
                        .opt_text(2)?
                        .unwrap_or_default()
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect();
                    assignees.sort();
                    Ok(ProjectStudy {
                        study_instance_uid: r.text(0)?,
                        seq: r.int(1)?,
                        // Annotators need not know who else reads the study.
                        assignees: if role == Role::Annotator {
                            Vec::new()
                        } else {
                            assignees
                        },
                    })
                })
                .collect::<Result<Vec<_>, SqlError>>()
        })?)
    }

    /// Whether the caller (with `role` in `project`) may open `study` there.
    pub fn can_open(
        &self,
        who: &Principal,
        role: Role,
        project: i64,
        study: &str,
    ) -> Result<bool, DbError> {
        self.db
            .read(|c| study_visible(c, who, role, project, study))
    }

    /// The studies the caller may read over DICOMweb; `None` means every study (superusers).
    pub fn visible_studies(&self, who: &Principal) -> Result<Option<HashSet<String>>, DbError> {
        if who.superuser {
            return Ok(None);
        }
        Ok(Some(self.db.read(|c| {
            c.query(
                "SELECT ps.study_instance_uid FROM project_studies ps
                   JOIN memberships m ON m.project_id = ps.project_id AND m.user_id = ?
                 WHERE m.role != 'annotator'
                    OR EXISTS (SELECT 1 FROM assignments a WHERE a.project_id = ps.project_id
                               AND a.study_instance_uid = ps.study_instance_uid AND a.user_id = ?)",
                args![who.user_id, who.user_id],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<HashSet<_>, SqlError>>()
        })?))
    }

    // ---- annotations ----

    /// The study's annotations the caller may see (blinding applied), without tombstones,
    /// and the study's current operation number.
    pub fn annotations(
        &self,
        who: &Principal,
        role: Role,
        project: &Project,
        study: &str,
    ) -> Result<(i64, Vec<Annotation>), DbError> {
        let all = role.sees_all(project.blinded);
        // The operation number and the rows from one snapshot, so that the client's later
        // operations follow on without a gap or an overlap.
        self.db.snapshot(|c| {
            let seq = c
                .query_opt(
                    "SELECT seq FROM project_studies WHERE project_id = ? AND study_instance_uid = ?",
                    args![project.id, study],
                )?
                .ok_or_else(|| DbError::NotFound("the study is not in this project".into()))?
                .int(0)?;
            if !all && role == Role::Viewer {
                return Ok((seq, Vec::new()));
            }
            let rows = c.query(
                &format!(
                    "SELECT {ANNOTATION_COLUMNS} FROM {ANNOTATION_FROM}
                     WHERE a.project_id = ? AND a.study_instance_uid = ? AND a.deleted = 0
                       AND (? = 1 OR a.author_id = ?)
                     ORDER BY a.seq"
                ),
                args![project.id, study, all, who.user_id],
            )?;
            Ok((seq, annotation_rows(rows)?))
        })
    }

    /// Every annotation of a project (no tombstones), for exports.
    pub fn project_annotations(&self, project: i64) -> Result<Vec<Annotation>, DbError> {
        Ok(self.db.read(|c| {
            annotation_rows(c.query(
                &format!(
                    "SELECT {ANNOTATION_COLUMNS} FROM {ANNOTATION_FROM}
                     WHERE a.project_id = ? AND a.deleted = 0
                     ORDER BY a.study_instance_uid, a.seq"
                ),
                args![project],
            )?)
        })?)
    }

    /// One annotation and its compressed mask, if the caller may see it.
    pub fn annotation_mask(
        &self,
        who: &Principal,
        role: Role,
        project: &Project,
        id: &str,
    ) -> Result<(Annotation, Vec<u8>), DbError> {
        self.db.read(|c| {
            let a = load_annotation(c, id)?
                .filter(|a| a.project_id == project.id && !a.deleted)
                .ok_or_else(|| DbError::NotFound("annotation".into()))?;
            if !study_visible(c, who, role, project.id, &a.study_instance_uid)?
                || !(role.sees_all(project.blinded) || a.author_id == who.user_id)
            {
                return Err(DbError::NotFound("annotation".into()));
            }
            let mask = c
                .query_one("SELECT mask FROM annotations WHERE id = ?", args![id])?
                .opt_blob(0)?
                .ok_or_else(|| DbError::NotFound("this annotation has no mask".into()))?;
            Ok((a, mask))
        })
    }

    /// Applies an operation on `study` of `project` in one transaction (checks, change,
    /// operation number, audit row). With SQLite, `on_commit` is called after the commit
    /// while still holding the write lock, so that operations reach listeners in the order of
    /// their numbers; with PostgreSQL the operation is announced to every server sharing the
    /// database instead (see [`AnnotateDb::relay`]) and `on_commit` is not called.
    pub fn apply(
        &self,
        who: &Principal,
        project: i64,
        study: &str,
        op: Op,
        on_commit: impl FnOnce(&Applied),
    ) -> Result<Applied, ApplyError> {
        let relayed = self.pool.is_some();
        self.db.write_then(
            |tx| Self::apply_in(tx, who, project, study, op),
            |applied: &Applied| {
                if !relayed {
                    on_commit(applied);
                }
            },
        )
    }

    fn apply_in(
        tx: &mut dyn Exec,
        who: &Principal,
        project: i64,
        study: &str,
        op: Op,
    ) -> Result<Applied, ApplyError> {
        let postgres = tx.dialect() == Dialect::Postgres;
        if postgres {
            // Servers sharing the database take a study's operations one at a time, so that
            // version checks and operation numbers hold across them (SQLite has one writer).
            tx.query(
                "SELECT seq FROM project_studies WHERE project_id = ? AND study_instance_uid = ?
                 FOR UPDATE",
                args![project, study],
            )
            .map_err(DbError::from)?;
        }
        let role = role_of(tx, who, project)?
            .ok_or_else(|| DbError::Forbidden("not a member of this project".into()))?;
        if !study_visible(tx, who, role, project, study)? {
            return Err(
                DbError::Forbidden("this study is not open to you in this project".into()).into(),
            );
        }
        if !role.may_annotate() {
            return Err(DbError::Forbidden(format!("a {} cannot annotate", role.as_str())).into());
        }
        let (_, _, blinded, schema) = project_row(
            &tx.query_one(&format!("{PROJECT_COLUMNS} WHERE id = ?"), args![project])
                .map_err(DbError::from)?,
        )
        .map_err(DbError::from)?;
        let schema = to_project((0, String::new(), false, schema)).schema;
        let now = now_ms();
        let next_seq = |tx: &mut dyn Exec| -> Result<i64, DbError> {
            Ok(tx
                .query_one(
                    "UPDATE project_studies SET seq = seq + 1 WHERE project_id = ? AND study_instance_uid = ?
                     RETURNING seq",
                    args![project, study],
                )?
                .int(0)?)
        };
        let (op_name, id) = match op {
            Op::Create {
                id,
                location,
                kind,
                name,
                payload,
            } => {
                let id = match id {
                    Some(id) if valid_id(&id) => id,
                    Some(_) => {
                        return Err(DbError::Invalid(
                            "annotation ids are 1 to 64 letters, digits, - or _".into(),
                        )
                        .into());
                    }
                    None => random_hex(16)?,
                };
                if let Some(existing) = load_annotation(tx, &id).map_err(DbError::from)? {
                    if existing.author_id == who.user_id
                        && existing.project_id == project
                        && existing.study_instance_uid == study
                    {
                        // A retry of a creation whose acknowledgement was lost.
                        return Ok(Applied {
                            op: "create",
                            annotation: existing,
                            changed: false,
                        });
                    }
                    return Err(DbError::Exists("an annotation with this id".into()).into());
                }
                let (payload, measurement, mask) =
                    validate(tx, &schema, study, &location, &kind, &name, &payload)?;
                let seq = next_seq(tx)?;
                tx.execute(
                    "INSERT INTO annotations (id, project_id, study_instance_uid, series_instance_uid,
                        sop_instance_uid, frame, kind, name, payload, measurement, mask, author_id,
                        version, seq, created_at, updated_at, updated_by, deleted)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, 0)",
                    args![
                        id.as_str(),
                        project,
                        study,
                        location.series_instance_uid.clone(),
                        location.sop_instance_uid.clone(),
                        location.frame,
                        kind.as_str(),
                        name.as_str(),
                        payload.to_string(),
                        measurement.as_ref().map(Value::to_string),
                        mask,
                        who.user_id,
                        seq,
                        now,
                        now,
                        who.user_id
                    ],
                )
                .map_err(DbError::from)?;
                ("create", id)
            }
            Op::Update {
                id,
                version,
                payload,
            } => {
                let current =
                    Self::current(tx, who, (role, blinded), project, study, &id, version)?;
                let (payload, measurement, mask) = validate(
                    tx,
                    &schema,
                    study,
                    &current.location,
                    &current.kind,
                    &current.name,
                    &payload,
                )?;
                let seq = next_seq(tx)?;
                tx.execute(
                    "UPDATE annotations SET payload = ?, measurement = ?, mask = ?, version = version + 1,
                        seq = ?, updated_at = ?, updated_by = ? WHERE id = ?",
                    args![
                        payload.to_string(),
                        measurement.as_ref().map(Value::to_string),
                        mask,
                        seq,
                        now,
                        who.user_id,
                        id.as_str()
                    ],
                )
                .map_err(DbError::from)?;
                ("update", id)
            }
            Op::Delete { id, version } => {
                Self::current(tx, who, (role, blinded), project, study, &id, version)?;
                let seq = next_seq(tx)?;
                tx.execute(
                    "UPDATE annotations SET deleted = 1, mask = NULL, version = version + 1, seq = ?,
                        updated_at = ?, updated_by = ? WHERE id = ?",
                    args![seq, now, who.user_id, id.as_str()],
                )
                .map_err(DbError::from)?;
                ("delete", id)
            }
        };
        let annotation = load_annotation(tx, &id)
            .map_err(DbError::from)?
            .ok_or_else(|| DbError::NotFound("annotation".into()))?;
        audit(
            tx,
            Some(who.user_id),
            Some(project),
            &format!("annotation.{op_name}"),
            &format!("annotation:{id}"),
            &json!({
                "study": study,
                "version": annotation.version,
                "seq": annotation.seq,
                "kind": annotation.kind,
                "name": annotation.name,
                "frame": annotation.location.frame,
                "payload": annotation.payload,
            }),
        )
        .map_err(DbError::from)?;
        let applied = Applied {
            op: op_name,
            annotation,
            changed: true,
        };
        if postgres {
            Self::announce(tx, &applied).map_err(DbError::from)?;
        }
        Ok(applied)
    }

    /// Writes an operation to `op_log` and announces it (delivered at commit, in commit
    /// order); prunes entries older than 10 minutes now and then.
    fn announce(tx: &mut dyn Exec, applied: &Applied) -> Result<(), SqlError> {
        let a = &applied.annotation;
        let now = now_ms();
        let id = tx
            .query_one(
                "INSERT INTO op_log (at, project_id, study_instance_uid, author_id, seq, message)
                 VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                args![
                    now,
                    a.project_id,
                    a.study_instance_uid.as_str(),
                    a.author_id,
                    a.seq,
                    op_message(applied)
                ],
            )?
            .int(0)?;
        tx.execute(
            "SELECT pg_notify(?, ?)",
            args![crate::sql::OPS_CHANNEL, id.to_string()],
        )?;
        if id % 256 == 0 {
            tx.execute("DELETE FROM op_log WHERE at < ?", args![now - 600_000])?;
        }
        Ok(())
    }

    /// The current state of an annotation that `who` means to change at `version`.
    fn current(
        tx: &mut dyn Exec,
        who: &Principal,
        (role, blinded): (Role, bool),
        project: i64,
        study: &str,
        id: &str,
        version: i64,
    ) -> Result<Annotation, ApplyError> {
        let current = load_annotation(tx, id)
            .map_err(DbError::from)?
            .filter(|a| a.project_id == project && a.study_instance_uid == study)
            .ok_or_else(|| DbError::NotFound("annotation".into()))?;
        if role == Role::Annotator && current.author_id != who.user_id {
            // In blinded projects this must not reveal that the annotation exists.
            return Err(if blinded {
                DbError::NotFound("annotation".into())
            } else {
                DbError::Forbidden("annotators change only their own annotations".into())
            }
            .into());
        }
        if current.deleted || current.version != version {
            return Err(ApplyError::Conflict(Box::new(current)));
        }
        Ok(current)
    }

    /// The latest audit rows of a project (admins), newest first.
    pub fn audit(&self, project: i64, limit: usize) -> Result<Vec<Value>, DbError> {
        Ok(self.db.read(|c| {
            c.query(
                "SELECT a.id, a.at, u.username, a.action, a.target, a.detail FROM audit a
                 LEFT JOIN users u ON u.id = a.user_id WHERE a.project_id = ? ORDER BY a.id DESC LIMIT ?",
                args![project, limit as i64],
            )?
            .iter()
            .map(|r| {
                Ok(json!({
                    "id": r.int(0)?,
                    "at": r.int(1)?,
                    "user": r.opt_text(2)?,
                    "action": r.text(3)?,
                    "target": r.text(4)?,
                    "detail": serde_json::from_str::<Value>(&r.text(5)?).unwrap_or(Value::Null),
                }))
            })
            .collect::<Result<Vec<_>, SqlError>>()
        })?)
    }

    /// Records a change made outside this module (a DICOMweb upload).
    pub fn record(
        &self,
        who: Option<&Principal>,
        action: &str,
        target: &str,
        detail: &Value,
    ) -> Result<(), DbError> {
        Ok(self
            .db
            .write(|tx| audit(tx, who.map(|p| p.user_id), None, action, target, detail))?)
    }
}

impl From<SqlError> for ApplyError {
    fn from(e: SqlError) -> Self {
        ApplyError::Db(e.into())
    }
}
