//! One SQL layer over two engines: SQLite (a file in the data folder, the default) and
//! PostgreSQL (by URL, shared by several server instances).
//!
//! Statements are written once, with `?` placeholders, in the SQL both engines accept
//! (`INSERT … ON CONFLICT`, `RETURNING`, `NULLS FIRST`); for PostgreSQL the placeholders become
//! `$1, $2, …`. The few differences left go through [`Dialect`]. Values travel as [`V`] and rows
//! come back as [`Row`]s of them, so the callers never see either driver.
//!
//! The schema is written in SQLite's terms; PostgreSQL's is derived from it word by word
//! (`INTEGER` → `BIGINT`, `INTEGER PRIMARY KEY` → an identity column, `TEXT` → `TEXT COLLATE "C"`
//! so that ordering is by code point as in SQLite, `BLOB` → `BYTEA`), which keeps the two from
//! drifting apart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator as _;
use rusqlite::types::{ToSqlOutput, ValueRef};

/// A database failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// SQLite failed.
    #[error("SQLite: {}", chain(.0))]
    Sqlite(rusqlite::Error),
    /// PostgreSQL failed (or could not be reached); the message carries the whole chain of
    /// causes, since the driver's own message leaves out why ("error connecting to server").
    #[error("PostgreSQL: {}", chain(.0))]
    Postgres(postgres::Error),
    /// A result did not have the expected shape, a lock was poisoned, or the pool ran dry.
    #[error("{0}")]
    Other(String),
}

impl From<rusqlite::Error> for SqlError {
    fn from(e: rusqlite::Error) -> Self {
        SqlError::Sqlite(e)
    }
}

impl From<postgres::Error> for SqlError {
    fn from(e: postgres::Error) -> Self {
        SqlError::Postgres(e)
    }
}

/// An error and its causes, joined by ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// A value bound to a placeholder or read from a column.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    /// SQL NULL.
    Null,
    /// An integer (flags are 0 or 1).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<i64> for V {
    fn from(v: i64) -> Self {
        V::Int(v)
    }
}
impl From<bool> for V {
    fn from(v: bool) -> Self {
        V::Int(v as i64)
    }
}
impl From<&str> for V {
    fn from(v: &str) -> Self {
        V::Text(v.to_string())
    }
}
impl From<String> for V {
    fn from(v: String) -> Self {
        V::Text(v)
    }
}
impl From<&String> for V {
    fn from(v: &String) -> Self {
        V::Text(v.clone())
    }
}
impl From<Vec<u8>> for V {
    fn from(v: Vec<u8>) -> Self {
        V::Blob(v)
    }
}
impl<T: Into<V>> From<Option<T>> for V {
    fn from(v: Option<T>) -> Self {
        v.map_or(V::Null, Into::into)
    }
}

/// The arguments of a statement: `args![a, b]` is `&[V::from(a), V::from(b)]`.
macro_rules! args {
    ($($x:expr),* $(,)?) => { &[$($crate::sql::V::from($x)),*][..] };
}
pub(crate) use args;

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<V>);

impl Row {
    fn at(&self, i: usize) -> Result<&V, SqlError> {
        self.0
            .get(i)
            .ok_or_else(|| SqlError::Other(format!("result has no column {i}")))
    }

    fn mismatch(&self, i: usize, want: &str) -> SqlError {
        SqlError::Other(format!("column {i} is not {want}"))
    }

    /// An integer column.
    pub fn int(&self, i: usize) -> Result<i64, SqlError> {
        match self.at(i)? {
            V::Int(v) => Ok(*v),
            _ => Err(self.mismatch(i, "an integer")),
        }
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, SqlError> {
        match self.at(i)? {
            V::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// A 0/1 column.
    pub fn flag(&self, i: usize) -> Result<bool, SqlError> {
        self.int(i).map(|v| v != 0)
    }

    /// A text column.
    pub fn text(&self, i: usize) -> Result<String, SqlError> {
        match self.at(i)? {
            V::Text(v) => Ok(v.clone()),
            _ => Err(self.mismatch(i, "text")),
        }
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, SqlError> {
        match self.at(i)? {
            V::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }

    /// A byte column that may be NULL.
    pub fn opt_blob(&self, i: usize) -> Result<Option<Vec<u8>>, SqlError> {
        match self.at(i)? {
            V::Null => Ok(None),
            V::Blob(v) => Ok(Some(v.clone())),
            _ => Err(self.mismatch(i, "bytes")),
        }
    }
}

/// Which engine a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The comma-joined values of `expr` over a group (`DISTINCT expr` allowed).
    pub fn group_concat(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("group_concat({expr})"),
            Dialect::Postgres => format!("string_agg({expr}, ',')"),
        }
    }
}

/// Runs statements inside a transaction.
pub trait Exec {
    /// The engine.
    fn dialect(&self) -> Dialect;
    /// Runs a statement that returns no rows; returns the number of rows changed.
    fn execute(&mut self, sql: &str, args: &[V]) -> Result<u64, SqlError>;
    /// Runs a query (or a statement with `RETURNING`) and returns every row.
    fn query(&mut self, sql: &str, args: &[V]) -> Result<Vec<Row>, SqlError>;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, args: &[V]) -> Result<Option<Row>, SqlError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row, which must exist.
    fn query_one(&mut self, sql: &str, args: &[V]) -> Result<Row, SqlError> {
        self.query_opt(sql, args)?.ok_or_else(|| {
            SqlError::Other("a query that always returns a row returned none".into())
        })
    }

    /// Whether the query returns a row.
    fn exists(&mut self, sql: &str, args: &[V]) -> Result<bool, SqlError> {
        Ok(self.query_opt(sql, args)?.is_some())
    }
}

// ---------------------------------------------------------------- SQLite

impl rusqlite::ToSql for V {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            V::Null => ValueRef::Null,
            V::Int(v) => ValueRef::Integer(*v),
            V::Text(v) => ValueRef::Text(v.as_bytes()),
            V::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

struct SqliteExec<'a>(&'a rusqlite::Connection);

impl Exec for SqliteExec<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, args: &[V]) -> Result<u64, SqlError> {
        let mut st = self.0.prepare_cached(sql)?;
        Ok(st.execute(rusqlite::params_from_iter(args.iter()))? as u64)
    }

    fn query(&mut self, sql: &str, args: &[V]) -> Result<Vec<Row>, SqlError> {
        let mut st = self.0.prepare_cached(sql)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(args.iter()))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i)? {
                    ValueRef::Null => V::Null,
                    ValueRef::Integer(v) => V::Int(v),
                    ValueRef::Real(_) => {
                        return Err(SqlError::Other(format!("column {i} is a float")));
                    }
                    ValueRef::Text(t) => V::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => V::Blob(b.to_vec()),
                });
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

/// Opens the SQLite database of the data folder `data` (which must exist) with `synchronous`
/// as given, and brings its schema up to date.
fn connect_sqlite(
    data: &Path,
    synchronous: &str,
    migrations: &[&str],
) -> Result<rusqlite::Connection, OpenError> {
    let path = data.join(SQLITE_FILE);
    let db_err = |source: rusqlite::Error| OpenError::Database {
        database: path.display().to_string(),
        cause: source.into(),
    };
    let mut conn = rusqlite::Connection::open(&path).map_err(db_err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
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
    let supported = migrations.len() as i64;
    if version > supported {
        return Err(OpenError::NewerSchema {
            database: path.display().to_string(),
            found: version,
            supported,
        });
    }
    for (i, sql) in migrations.iter().enumerate().skip(version.max(0) as usize) {
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)?;
    Ok(conn)
}

/// The database file in a data folder.
pub const SQLITE_FILE: &str = "annotate.sqlite";

// ---------------------------------------------------------------- PostgreSQL

impl postgres::types::ToSql for V {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::{IsNull, Type};
        match self {
            V::Null => Ok(IsNull::Yes),
            V::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                // `pg_notify(text, text)` and the like.
                _ => v.to_string().to_sql(ty, out),
            },
            V::Text(v) => v.to_sql(ty, out),
            V::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(ty: &postgres::types::Type) -> bool {
        use postgres::types::Type;
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::BOOL
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
                | Type::BYTEA
        )
    }

    postgres::types::to_sql_checked!();
}

/// `?` placeholders as `$1, $2, …` (none occur inside the statements' string literals, which
/// are skipped all the same).
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut quoted = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// SQLite DDL as PostgreSQL DDL (see the module's notes).
fn postgres_ddl(sqlite: &str) -> String {
    let mut out = String::with_capacity(sqlite.len() + 256);
    let words: Vec<&str> = sqlite
        .split_inclusive(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        let (word, tail) = w.split_at(
            w.find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .unwrap_or(w.len()),
        );
        let next = |k: usize| {
            words
                .get(i + k)
                .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        };
        match word {
            "INTEGER" if next(1) == Some("PRIMARY") && next(2) == Some("KEY") => {
                out.push_str("BIGINT GENERATED BY DEFAULT AS IDENTITY");
                out.push_str(tail);
            }
            "INTEGER" => {
                out.push_str("BIGINT");
                out.push_str(tail);
            }
            "TEXT" => {
                out.push_str("TEXT COLLATE \"C\"");
                out.push_str(tail);
            }
            "BLOB" => {
                out.push_str("BYTEA");
                out.push_str(tail);
            }
            _ => out.push_str(w),
        }
        i += 1;
    }
    out
}

/// A pooled PostgreSQL connection with its prepared statements.
struct PgConn {
    client: postgres::Client,
    statements: HashMap<String, postgres::Statement>,
}

/// At most this many prepared statements are kept per connection.
const STATEMENT_CACHE: usize = 256;

/// Statements on a connection (`C` = `Client`) or in a transaction (`C` = `Transaction`).
struct PgExec<'a, C: postgres::GenericClient> {
    tx: &'a mut C,
    statements: &'a mut HashMap<String, postgres::Statement>,
}

impl<C: postgres::GenericClient> PgExec<'_, C> {
    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement, SqlError> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.tx.prepare(&numbered(sql))?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<V, SqlError> {
    use postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map_or(V::Null, V::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(V::Null, |v| V::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map_or(V::Null, |v| V::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(V::Null, |v| V::Int(v.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => row
            .try_get::<_, Option<String>>(i)?
            .map_or(V::Null, V::Text),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)?
            .map_or(V::Null, V::Blob),
        other => {
            return Err(SqlError::Other(format!(
                "column {i} has type {other}, which this layer does not read"
            )));
        }
    })
}

impl<C: postgres::GenericClient> Exec for PgExec<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, args: &[V]) -> Result<u64, SqlError> {
        let st = self.prepare(sql)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
            .iter()
            .map(|a| a as &(dyn postgres::types::ToSql + Sync))
            .collect();
        Ok(self.tx.execute(&st, &params)?)
    }

    fn query(&mut self, sql: &str, args: &[V]) -> Result<Vec<Row>, SqlError> {
        let st = self.prepare(sql)?;
        let params: Vec<&(dyn postgres::types::ToSql + Sync)> = args
            .iter()
            .map(|a| a as &(dyn postgres::types::ToSql + Sync))
            .collect();
        let rows = self.tx.query(&st, &params)?;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| pg_value(r, i))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
            })
            .collect()
    }
}

/// How [`PgPool::run`] groups a closure's statements.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Each statement on its own.
    Statements,
    /// One read-only snapshot.
    Snapshot,
    /// One write transaction.
    Write,
}

/// How long a request waits for a free connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// A small pool of PostgreSQL connections.
pub struct PgPool {
    config: postgres::Config,
    /// Set for `sslmode=require`: TLS that verifies the server's certificate.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    target: String,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<PgConn>,
    open: usize,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool")
            .field("target", &self.target)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

/// A connection taken from the pool; goes back on drop (unless broken).
struct Lease<'a> {
    pool: &'a PgPool,
    conn: Option<PgConn>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        match self.conn.take() {
            Some(c) if !c.client.is_closed() => st.idle.push(c),
            _ => st.open = st.open.saturating_sub(1),
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}

impl PgPool {
    /// A pool of at most `max` connections to `url` (nothing is connected yet). With
    /// `sslmode=require` in the URL, connections use TLS and verify the server's certificate
    /// and name against `ca_file` (PEM) or else the system's certificate authorities; without
    /// it they are not encrypted (use a local socket or a private network).
    pub fn new(url: &str, max: usize, ca_file: Option<&Path>) -> Result<Self, OpenError> {
        let mut config: postgres::Config =
            url.parse()
                .map_err(|e: postgres::Error| OpenError::Database {
                    database: "PostgreSQL (the URL)".into(),
                    cause: e.into(),
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("bedside-annotate");
        }
        let target = describe_pg(&config);
        let tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Require => {
                Some(tls_connector(ca_file).map_err(|why| OpenError::Database {
                    database: target.clone(),
                    cause: SqlError::Other(format!("TLS: {why}")),
                })?)
            }
            _ => None,
        };
        Ok(Self {
            config,
            tls,
            target,
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection outside the pool (the notification listener's).
    fn connect(&self) -> Result<postgres::Client, SqlError> {
        Ok(match &self.tls {
            Some(tls) => self.config.connect(tls.clone())?,
            None => self.config.connect(postgres::NoTls)?,
        })
    }

    fn lease(&self) -> Result<Lease<'_>, SqlError> {
        let mut st = self.lock();
        loop {
            if let Some(c) = st.idle.pop() {
                if c.client.is_closed() {
                    st.open = st.open.saturating_sub(1);
                    continue;
                }
                return Ok(Lease {
                    pool: self,
                    conn: Some(c),
                });
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(client) => Ok(Lease {
                        pool: self,
                        conn: Some(PgConn {
                            client,
                            statements: HashMap::new(),
                        }),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (next, timeout) = self
                .freed
                .wait_timeout(st, POOL_WAIT)
                .unwrap_or_else(|p| p.into_inner());
            st = next;
            if timeout.timed_out() && st.idle.is_empty() && st.open >= self.max {
                return Err(SqlError::Other(format!(
                    "no free PostgreSQL connection within {} s",
                    POOL_WAIT.as_secs()
                )));
            }
        }
    }

    /// Runs `f` on a pooled connection: statement by statement, in a read-only snapshot, or
    /// in a write transaction committed when `f` returns `Ok`.
    fn run<T, E: From<SqlError>>(
        &self,
        mode: Mode,
        f: impl FnOnce(&mut dyn Exec) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut lease = self.lease()?;
        let Some(PgConn { client, statements }) = lease.conn.as_mut() else {
            return Err(SqlError::Other("pool lease without a connection".into()).into());
        };
        if let Mode::Statements = mode {
            return f(&mut PgExec {
                tx: client,
                statements,
            });
        }
        let mut b = client.build_transaction();
        if let Mode::Snapshot = mode {
            // One snapshot for every statement of the read.
            b = b
                .read_only(true)
                .isolation_level(postgres::IsolationLevel::RepeatableRead);
        }
        let mut tx = b.start().map_err(SqlError::from)?;
        let out = f(&mut PgExec {
            tx: &mut tx,
            statements,
        })?;
        tx.commit().map_err(SqlError::from)?;
        Ok(out)
    }

    /// Brings the schema up to date; several servers starting at once take turns.
    fn migrate(&self, migrations: &[String]) -> Result<(), OpenError> {
        let err = |cause: SqlError| OpenError::Database {
            database: self.target.clone(),
            cause,
        };
        let mut lease = self.lease().map_err(err)?;
        let Some(conn) = lease.conn.as_mut() else {
            return Err(err(SqlError::Other(
                "pool lease without a connection".into(),
            )));
        };
        let mut tx = conn.client.transaction().map_err(|e| err(e.into()))?;
        let run = |tx: &mut postgres::Transaction<'_>| -> Result<i64, postgres::Error> {
            // An arbitrary constant of this application's own.
            tx.execute("SELECT pg_advisory_xact_lock(7361247251)", &[])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS bedside_schema (version BIGINT NOT NULL);
                 INSERT INTO bedside_schema (version)
                   SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM bedside_schema);",
            )?;
            tx.query_one("SELECT version FROM bedside_schema", &[])?
                .try_get(0)
        };
        let version = run(&mut tx).map_err(|e| err(e.into()))?;
        let supported = migrations.len() as i64;
        if version > supported {
            return Err(OpenError::NewerSchema {
                database: self.target.clone(),
                found: version,
                supported,
            });
        }
        for (i, sql) in migrations.iter().enumerate().skip(version.max(0) as usize) {
            tx.batch_execute(sql).map_err(|e| err(e.into()))?;
            tx.execute(
                "UPDATE bedside_schema SET version = $1",
                &[&((i + 1) as i64)],
            )
            .map_err(|e| err(e.into()))?;
        }
        tx.commit().map_err(|e| err(e.into()))?;
        Ok(())
    }
}

/// The system's certificate authorities (Debian's bundle, or `SSL_CERT_FILE`).
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// A rustls (ring) connector trusting the certificates of `ca_file`, or the system's.
fn tls_connector(
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use pki_types::CertificateDer;
    use pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let file = match ca_file {
        Some(f) => f.to_path_buf(),
        None => env
            .or_else(|| {
                SYSTEM_CA_FILES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.exists())
            })
            .ok_or("no certificate authorities: give the server's CA (--database-ca)")?,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", file.display()))?;
        // A bundle may hold certificates this verifier cannot use; the rest still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{}: no usable certificate", file.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Host, port and database of a PostgreSQL configuration, without user or password.
fn describe_pg(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "PostgreSQL {host}:{port}/{}",
        config.get_dbname().unwrap_or("(default database)")
    )
}

// ---------------------------------------------------------------- the handle

/// Why the store or the database could not be opened.
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
    #[error("cannot open database {database}: {cause}")]
    Database {
        /// The database file, or PostgreSQL's host, port and database name.
        database: String,
        /// The cause (in the message already, so not repeated as a source).
        cause: SqlError,
    },
    /// The database was written by a newer version of Bedside.
    #[error(
        "database {database} has schema version {found}, newer than this build understands ({supported})"
    )]
    NewerSchema {
        /// The database file, or PostgreSQL's host, port and database name.
        database: String,
        /// Version found.
        found: i64,
        /// Highest version known.
        supported: i64,
    },
}

/// Where the index, accounts and annotations live: the data folder's SQLite file, or a
/// PostgreSQL database that several servers share. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Database {
    /// `DATA/annotate.sqlite`.
    Sqlite(PathBuf),
    /// A PostgreSQL database (schema already migrated).
    Postgres(Arc<PgPool>),
}

/// Connections per server to PostgreSQL.
const PG_POOL: usize = 16;

impl Database {
    /// Opens the data folder's SQLite database, or the PostgreSQL database at `url`
    /// (`postgres://user:password@host:port/db` or the key=value form), creating the folder
    /// and the schema as needed.
    pub fn open(data: &Path, url: Option<&str>) -> Result<Self, OpenError> {
        Self::open_with_ca(data, url, None)
    }

    /// As [`Database::open`], verifying a PostgreSQL server reached with `sslmode=require`
    /// against the certificate authorities of `ca_file` (PEM) instead of the system's.
    pub fn open_with_ca(
        data: &Path,
        url: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Self, OpenError> {
        std::fs::create_dir_all(data).map_err(|source| OpenError::CreateFolder {
            path: data.to_path_buf(),
            source,
        })?;
        match url {
            None => {
                // Migrates now, so that later connections find the schema in place.
                connect_sqlite(data, "FULL", MIGRATIONS)?;
                Ok(Database::Sqlite(data.to_path_buf()))
            }
            Some(url) => {
                let pool = PgPool::new(url, PG_POOL, ca_file)?;
                let ddl: Vec<String> = MIGRATIONS
                    .iter()
                    .map(|m| postgres_ddl(m))
                    .chain(PG_ONLY.iter().map(|m| m.to_string()))
                    .collect();
                pool.migrate(&ddl)?;
                Ok(Database::Postgres(Arc::new(pool)))
            }
        }
    }

    /// What it is, for messages (no user name or password).
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(data) => format!("SQLite {}", data.join(SQLITE_FILE).display()),
            Database::Postgres(p) => p.target.clone(),
        }
    }

    /// The engine.
    pub fn dialect(&self) -> Dialect {
        match self {
            Database::Sqlite(_) => Dialect::Sqlite,
            Database::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// Connections to a [`Database`] for one user of it (the store, the annotation database).
// Two of these exist per server: their size does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Conns {
    Sqlite {
        write: Mutex<rusqlite::Connection>,
        read: Mutex<rusqlite::Connection>,
    },
    Postgres(Arc<PgPool>),
}

fn poisoned<T>(_: T) -> SqlError {
    SqlError::Other("database lock poisoned".into())
}

impl Conns {
    /// Connections to `db`; SQLite's commit with `synchronous` as given.
    pub(crate) fn open(db: &Database, synchronous: &str) -> Result<Self, OpenError> {
        Ok(match db {
            Database::Sqlite(data) => Conns::Sqlite {
                write: Mutex::new(connect_sqlite(data, synchronous, MIGRATIONS)?),
                read: Mutex::new(connect_sqlite(data, synchronous, MIGRATIONS)?),
            },
            Database::Postgres(pool) => Conns::Postgres(pool.clone()),
        })
    }

    /// The engine.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Conns::Sqlite { .. } => Dialect::Sqlite,
            Conns::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs `f`'s reads statement by statement (no transaction: the requests' hot paths,
    /// where one statement is one snapshot already).
    pub(crate) fn read<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&mut dyn Exec) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Conns::Sqlite { read, .. } => {
                let c = read.lock().map_err(poisoned)?;
                f(&mut SqliteExec(&c))
            }
            Conns::Postgres(pool) => pool.run(Mode::Statements, f),
        }
    }

    /// Runs `f` in a read-only transaction: every statement sees one snapshot.
    pub(crate) fn snapshot<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&mut dyn Exec) -> Result<T, E>,
    ) -> Result<T, E> {
        match self {
            Conns::Sqlite { read, .. } => {
                let c = read.lock().map_err(poisoned)?;
                let tx = c.unchecked_transaction().map_err(SqlError::from)?;
                let out = f(&mut SqliteExec(&tx))?;
                tx.commit().map_err(SqlError::from)?;
                Ok(out)
            }
            Conns::Postgres(pool) => pool.run(Mode::Snapshot, f),
        }
    }

    /// Runs `f` in a write transaction, committed when it returns `Ok`.
    pub(crate) fn write<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&mut dyn Exec) -> Result<T, E>,
    ) -> Result<T, E> {
        self.write_then(f, |_| {})
    }

    /// As [`Conns::write`], then calls `after` with the result once committed; with SQLite
    /// while still holding the write lock, so that `after` sees commits in their order.
    pub(crate) fn write_then<T, E: From<SqlError>>(
        &self,
        f: impl FnOnce(&mut dyn Exec) -> Result<T, E>,
        after: impl FnOnce(&T),
    ) -> Result<T, E> {
        match self {
            Conns::Sqlite { write, .. } => {
                let mut c = write.lock().map_err(poisoned)?;
                let tx = c.transaction().map_err(SqlError::from)?;
                let out = f(&mut SqliteExec(&tx))?;
                tx.commit().map_err(SqlError::from)?;
                after(&out);
                drop(c);
                Ok(out)
            }
            Conns::Postgres(pool) => {
                let out = pool.run(Mode::Write, f)?;
                after(&out);
                Ok(out)
            }
        }
    }
}

// ---------------------------------------------------------------- notifications

/// The PostgreSQL channel on which committed annotation operations are announced.
pub const OPS_CHANNEL: &str = "bedside_ops";

/// The PostgreSQL channel on which servers tell each other who is on which frame.
pub const PRESENCE_CHANNEL: &str = "bedside_presence";

/// Listens on `channels` of a PostgreSQL database in a thread of its own, calling `on_payload`
/// with each notification's channel and payload in commit order, and `on_gap` after every (re)connection,
/// since notifications sent while disconnected are lost. Reconnects with a growing pause (up
/// to 5 s). The thread ends, at the latest 1 s after `alive` returns false.
pub fn listen(
    pool: Arc<PgPool>,
    channels: &'static [&'static str],
    alive: impl Fn() -> bool + Send + 'static,
    on_payload: impl Fn(&str, &str) + Send + 'static,
    on_gap: impl Fn() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("bedside-pg-listen".into())
        .spawn(move || {
            let mut pause = Duration::from_millis(100);
            while alive() {
                let mut client = match pool.connect() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot connect the notification listener; retrying");
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                let listen: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
                if let Err(e) = client.batch_execute(&listen) {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    std::thread::sleep(pause);
                    continue;
                }
                pause = Duration::from_millis(100);
                on_gap();
                let mut quiet = std::time::Instant::now();
                loop {
                    let next = client
                        .notifications()
                        .timeout_iter(Duration::from_secs(1))
                        .next();
                    match next {
                        Ok(Some(n)) => {
                            quiet = std::time::Instant::now();
                            on_payload(n.channel(), n.payload());
                        }
                        Ok(None) => {
                            if !alive() {
                                return;
                            }
                            // A timeout, or the connection closed; a silent connection is
                            // probed now and then, since a vanished server sends nothing.
                            if client.is_closed() {
                                break;
                            }
                            if quiet.elapsed() > Duration::from_secs(30) {
                                if client.simple_query("SELECT 1").is_err() {
                                    break;
                                }
                                quiet = std::time::Instant::now();
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "notification listener lost its connection");
                            break;
                        }
                    }
                }
                tracing::warn!("notification listener reconnecting");
            }
        })
}

/// Schema migrations, applied in order; SQLite's `PRAGMA user_version` (PostgreSQL's
/// `bedside_schema` table) records how many ran.
pub(crate) const MIGRATIONS: &[&str] = &[
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

/// PostgreSQL's migrations after [`MIGRATIONS`]: the log through which servers sharing the
/// database pass committed operations to each other (announced on [`OPS_CHANNEL`]).
const PG_ONLY: &[&str] = &["CREATE TABLE op_log (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at BIGINT NOT NULL,
        project_id BIGINT NOT NULL,
        study_instance_uid TEXT COLLATE \"C\" NOT NULL,
        author_id BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        message TEXT NOT NULL
     );"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            numbered("SELECT 1 FROM t WHERE a = ? AND b = '?' AND c = ?"),
            "SELECT 1 FROM t WHERE a = $1 AND b = '?' AND c = $2"
        );
    }

    #[test]
    fn postgres_schema_follows_sqlite_word_by_word() {
        let pg = postgres_ddl(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, s TEXT, b BLOB, textual TEXT);",
        );
        assert_eq!(
            pg,
            "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL, \
             s TEXT COLLATE \"C\", b BYTEA, textual TEXT COLLATE \"C\");"
        );
    }
}
