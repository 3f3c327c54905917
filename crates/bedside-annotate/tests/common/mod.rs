//! Shared by the access, annotation and collaboration tests: a phantom cohort imported into a
//! fresh data folder, accounts, and request helpers that carry a session like a browser.
//!
//! With `BEDSIDE_ANNOTATE_TEST_POSTGRES` set to a PostgreSQL URL (a superuser's, as
//! `scripts/postgres.sh` prints), every fixture gets a fresh PostgreSQL database there instead
//! of the data folder's SQLite file, so the same tests check both backends.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bedside_annotate::db::AnnotateDb;
use bedside_annotate::sql::Database;
use bedside_annotate::{api::AuthConfig, import, server, store::DiskStore};
use dicom_dictionary_std::tags;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

pub const PASSWORD: &str = "a long enough password";

/// A small phantom cohort generated once per test binary: three patients, one study each.
pub fn cohort() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = bedside_phantom::PhantomConfig {
            seed: 5,
            patients: 3,
            sites: 1,
            studies_per_patient: [1, 1],
            rows: 64,
            columns: 96,
            frames: [4, 5],
            rgb_fraction: 0.0,
            write_masks: false,
            ..Default::default()
        };
        bedside_phantom::generate(&config, dir.path(), true, &|| {}).unwrap();
        dir
    })
    .path()
}

/// One instance of the cohort as read from its file with dicom-rs.
#[derive(Debug, Clone)]
pub struct Instance {
    pub path: PathBuf,
    pub study: String,
    pub series: String,
    pub sop: String,
    pub frames: i64,
    pub rows: u64,
    pub columns: u64,
    /// PhysicalDeltaX/Y (cm) and the region's corners, from the file.
    pub delta_x_cm: f64,
    pub delta_y_cm: f64,
    pub region: [f64; 4],
}

pub fn instances() -> Vec<Instance> {
    let mut files = Vec::new();
    let mut pending = vec![cohort().join("dicom")];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                pending.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let obj = dicom_object::OpenFileOptions::new()
                .open_file(&path)
                .unwrap();
            let s = |t| {
                obj.element(t)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim_end_matches(['\0', ' '])
                    .to_string()
            };
            let region = obj.element(tags::SEQUENCE_OF_ULTRASOUND_REGIONS).unwrap();
            let item = &region.items().unwrap()[0];
            let f = |t| item.element(t).unwrap().to_float64().unwrap();
            let u = |t| item.element(t).unwrap().to_int::<u32>().unwrap() as f64;
            Instance {
                study: s(tags::STUDY_INSTANCE_UID),
                series: s(tags::SERIES_INSTANCE_UID),
                sop: s(tags::SOP_INSTANCE_UID),
                frames: s(tags::NUMBER_OF_FRAMES).parse().unwrap(),
                rows: obj.element(tags::ROWS).unwrap().to_int::<u64>().unwrap(),
                columns: obj.element(tags::COLUMNS).unwrap().to_int::<u64>().unwrap(),
                delta_x_cm: f(tags::PHYSICAL_DELTA_X),
                delta_y_cm: f(tags::PHYSICAL_DELTA_Y),
                region: [
                    u(tags::REGION_LOCATION_MIN_X0),
                    u(tags::REGION_LOCATION_MIN_Y0),
                    u(tags::REGION_LOCATION_MAX_X1),
                    u(tags::REGION_LOCATION_MAX_Y1),
                ],
                path,
            }
        })
        .collect()
}

pub struct Fixture {
    pub app: Router,
    pub db: Arc<AnnotateDb>,
    pub data: tempfile::TempDir,
    pub studies: Vec<String>,
    /// The database (SQLite in `data`, or PostgreSQL) and, for PostgreSQL, its URL.
    pub database: Database,
    pub postgres_url: Option<String>,
}

/// Runs `f` on a thread of its own: the synchronous PostgreSQL client cannot run on a thread
/// that drives async tasks (the server calls it from blocking threads).
pub fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// A fresh database in the PostgreSQL server at `BEDSIDE_ANNOTATE_TEST_POSTGRES`, if set.
pub fn fresh_postgres() -> Option<String> {
    let base = std::env::var("BEDSIDE_ANNOTATE_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())?;
    Some(fresh_postgres_at(&base))
}

/// A fresh database in the PostgreSQL server of `base` (a superuser's URL); its URL.
pub fn fresh_postgres_at(base: &str) -> String {
    let mut admin = postgres::Client::connect(base, postgres::NoTls).unwrap();
    let mut name = [0u8; 8];
    getrandom::fill(&mut name).unwrap();
    let name: String = name.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("bedside_test_{name}");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (head, _) = base.rsplit_once('/').unwrap();
    format!("{head}/{name}")
}

impl Fixture {
    /// A store over the fixture's data folder and database.
    pub fn store(&self) -> DiskStore {
        DiskStore::with_database(self.data.path(), &self.database).unwrap()
    }

    /// One integer from the fixture's database (checks below the API).
    pub fn scalar(&self, sql: &str, arg: &str) -> i64 {
        off_runtime(|| self.scalar_here(sql, arg))
    }

    fn scalar_here(&self, sql: &str, arg: &str) -> i64 {
        match &self.postgres_url {
            None => {
                let conn =
                    rusqlite::Connection::open(self.data.path().join("annotate.sqlite")).unwrap();
                let sql = sql.replace("$1", "?1");
                let mut st = conn.prepare(&sql).unwrap();
                if sql.contains("?1") {
                    st.query_row([arg], |r| r.get(0)).unwrap()
                } else {
                    st.query_row([], |r| r.get(0)).unwrap()
                }
            }
            Some(url) => {
                let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
                let row = if sql.contains("$1") {
                    c.query_one(sql, &[&arg]).unwrap()
                } else {
                    c.query_one(sql, &[]).unwrap()
                };
                row.try_get::<_, i64>(0)
                    .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
                    .unwrap()
            }
        }
    }
}

/// A data folder with the cohort imported and the given users (name, superuser).
pub fn fixture(users: &[(&str, bool)], auth: AuthConfig) -> Fixture {
    off_runtime(|| fixture_here(users, auth))
}

fn fixture_here(users: &[(&str, bool)], auth: AuthConfig) -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let postgres_url = fresh_postgres();
    let database = Database::open(data.path(), postgres_url.as_deref()).unwrap();
    let store = DiskStore::with_database(data.path(), &database).unwrap();
    let summary = import::import_path(&store, &cohort().join("dicom"), |_, _| {}).unwrap();
    assert!(summary.failed.is_empty());
    let db = Arc::new(AnnotateDb::with_database(&database).unwrap());
    for (name, superuser) in users {
        db.add_user(name, PASSWORD, *superuser).unwrap();
    }
    let mut studies: Vec<String> = instances().into_iter().map(|i| i.study).collect();
    studies.sort();
    studies.dedup();
    let app = server::app(Arc::new(store), db.clone(), Default::default(), auth);
    Fixture {
        app,
        db,
        data,
        studies,
        database,
        postgres_url,
    }
}

/// What a browser holds after signing in.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

pub async fn request(
    app: &Router,
    method: Method,
    uri: &str,
    session: Option<&Session>,
    body: Option<(&str, Vec<u8>)>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(s) = session {
        req = req
            .header(header::COOKIE, &s.cookie)
            .header("x-csrf-token", &s.csrf);
    }
    let req = match body {
        Some((ct, bytes)) => req
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(bytes))
            .unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        bytes,
        json,
    }
}

pub async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    session: Option<&Session>,
    body: Option<Value>,
) -> Reply {
    request(
        app,
        method,
        uri,
        session,
        body.map(|b| ("application/json", b.to_string().into_bytes())),
    )
    .await
}

/// Signs in through the API and keeps the cookie as a browser would.
pub async fn login(app: &Router, user: &str) -> Session {
    let r = call(
        app,
        Method::POST,
        "/api/login",
        None,
        Some(serde_json::json!({"username": user, "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "login {user}: {:?}", r.json);
    let set: Vec<&str> = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("bedside_session="))
        .unwrap();
    let cookie = session.split(';').next().unwrap().to_string();
    Session {
        cookie,
        csrf: r.json["csrf_token"].as_str().unwrap().to_string(),
    }
}

/// A label schema used across the tests.
pub fn schema() -> Value {
    serde_json::json!({
        "labels": [
            {"name": "view", "choice": "single", "scope": "series", "options": ["A4C", "A2C", "PLAX"]},
            {"name": "quality", "choice": "single", "scope": "study", "options": ["good", "poor"]},
            {"name": "findings", "choice": "multi", "scope": "frame", "options": ["effusion", "thrombus", "none"]}
        ],
        "measurements": [
            {"name": "LVIDd", "kind": "length"},
            {"name": "LV area", "kind": "area"},
            {"name": "LA", "kind": "ellipse"},
            {"name": "RV outline", "kind": "polygon"}
        ],
        "masks": [{"name": "LV cavity"}]
    })
}
