#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Several servers sharing one PostgreSQL database (and one data folder), as in a deployment
//! behind a load balancer: sessions, stored studies and annotations are the same on each;
//! operations taken by one server reach the WebSocket clients of the others, in order; writers
//! on different servers take turns on a study (versions and operation numbers hold); a relay
//! that loses its connection resynchronises its clients.
//!
//! Needs `BEDSIDE_TEST_POSTGRES`, a superuser's URL (`scripts/postgres.sh start DIR` prints
//! it); without it the tests are skipped, or fail when `BEDSIDE_REQUIRE_PEERS=1`. The other
//! test binaries of this crate run against PostgreSQL too when `BEDSIDE_ANNOTATE_TEST_POSTGRES`
//! is set (see `common`).

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{Method, StatusCode};
use bedside_annotate::api::AuthConfig;
use bedside_annotate::db::{AnnotateDb, ApplyError, Op, Principal};
use bedside_annotate::model::{Location, Role};
use bedside_annotate::sql::{Database, Dialect};
use bedside_annotate::{import, server, store::DiskStore};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn base_url() -> Option<String> {
    match std::env::var("BEDSIDE_TEST_POSTGRES") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("BEDSIDE_REQUIRE_PEERS").as_deref() != Ok("1"),
                "BEDSIDE_TEST_POSTGRES is not set (scripts/postgres.sh start DIR prints it)"
            );
            eprintln!("skipped: BEDSIDE_TEST_POSTGRES is not set");
            None
        }
    }
}

/// One "server": its own connections to the shared database.
struct Server {
    app: Router,
    db: Arc<AnnotateDb>,
}

struct Shared {
    servers: Vec<Server>,
    url: String,
    _data: tempfile::TempDir,
    studies: Vec<String>,
}

fn shared(n: usize, users: &[(&str, bool)]) -> Option<Shared> {
    off_runtime(|| shared_here(n, users))
}

fn shared_here(n: usize, users: &[(&str, bool)]) -> Option<Shared> {
    let base = base_url()?;
    let url = fresh_postgres_at(&base);
    let data = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for i in 0..n {
        let database = Database::open(data.path(), Some(&url)).unwrap();
        assert_eq!(database.dialect(), Dialect::Postgres);
        assert!(
            !database.describe().contains("bedside:"),
            "no credentials in messages"
        );
        let store = DiskStore::with_database(data.path(), &database).unwrap();
        let db = Arc::new(AnnotateDb::with_database(&database).unwrap());
        if i == 0 {
            let summary = import::import_path(&store, &cohort().join("dicom"), |_, _| {}).unwrap();
            assert!(summary.failed.is_empty());
            for (name, superuser) in users {
                db.add_user(name, PASSWORD, *superuser).unwrap();
            }
        }
        let app = server::app(
            Arc::new(store),
            db.clone(),
            Default::default(),
            AuthConfig::default(),
        );
        servers.push(Server { app, db });
    }
    let mut studies: Vec<String> = instances().into_iter().map(|i| i.study).collect();
    studies.sort();
    studies.dedup();
    Some(Shared {
        servers,
        url,
        _data: data,
        studies,
    })
}

async fn serve(app: &Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, pid: i64, study: &str, s: &Session) -> Ws {
    let mut req = format!("ws://{addr}/api/projects/{pid}/studies/{study}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("cookie", s.cookie.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a message within 15 s")
            .expect("open")
            .expect("readable");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn until(ws: &mut Ws, want: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = recv(ws).await;
        if want(&v) {
            return v;
        }
    }
}

/// A project with the first study, `ann` as annotator assigned to it; returns its id.
async fn project(app: &Router, root: &Session, study: &str) -> i64 {
    let r = call(
        app,
        Method::POST,
        "/api/projects",
        Some(root),
        Some(json!({"name": "shared", "schema": schema()})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    let pid = r.json["id"].as_i64().unwrap();
    let r = call(
        app,
        Method::POST,
        &format!("/api/projects/{pid}/studies"),
        Some(root),
        Some(json!({"study_instance_uid": study})),
    )
    .await;
    assert!(r.status.is_success(), "{:?}", r.json);
    pid
}

fn label(values: &[&str]) -> Value {
    json!({"values": values})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_studies_and_operations_are_shared_between_servers() {
    let Some(sh) = shared(2, &[("root", true), ("ann", false)]) else {
        return;
    };
    let (a, b) = (&sh.servers[0].app, &sh.servers[1].app);
    let study = sh.studies[0].clone();
    let root = login(a, "root").await;
    let pid = project(a, &root, &study).await;
    // A session opened on A is good on B, and B sees A's project and the stored studies.
    let r = call(b, Method::GET, "/api/projects", Some(&root), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json[0]["id"].as_i64(), Some(pid), "{:?}", r.json);
    let r = request(b, Method::GET, "/dicomweb/studies", Some(&root), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut listed: Vec<String> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["0020000D"]["Value"][0].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, sh.studies);
    // Roles set on B hold on A.
    let r = call(
        b,
        Method::PUT,
        &format!("/api/projects/{pid}/members/ann"),
        Some(&root),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert!(r.status.is_success());
    let ann = login(b, "ann").await;
    let r = call(
        a,
        Method::POST,
        &format!("/api/projects/{pid}/studies/{study}/annotations"),
        Some(&ann),
        Some(json!({"kind": "label", "name": "quality", "payload": label(&["good"])})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a viewer cannot annotate");

    // Operations taken by either server reach the clients of both, in order.
    let (addr_a, addr_b) = (serve(a).await, serve(b).await);
    let mut wa = connect(addr_a, pid, &study, &root).await;
    let mut wb = connect(addr_b, pid, &study, &root).await;
    assert_eq!(recv(&mut wa).await["type"], "snapshot");
    assert_eq!(recv(&mut wb).await["type"], "snapshot");
    let started = Instant::now();
    wb.send(Message::Text(
        json!({"type": "create", "req": 1, "annotation":
            {"id": "shared-1", "kind": "label", "name": "quality", "payload": label(&["good"])}})
        .to_string()
        .into(),
    ))
    .await
    .unwrap();
    let ack = until(&mut wb, |v| v["type"] == "ack").await;
    assert_eq!(ack["seq"], 1);
    let op = until(&mut wa, |v| v["type"] == "op").await;
    let latency = started.elapsed();
    assert_eq!(op["seq"], 1);
    assert_eq!(op["annotation"]["id"], "shared-1");
    wa.send(Message::Text(
        json!({"type": "update", "req": 2, "id": "shared-1", "version": 1, "payload": label(&["poor"])})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let ack = until(&mut wa, |v| v["type"] == "ack").await;
    assert_eq!(ack["seq"], 2);
    let op1 = until(&mut wb, |v| v["type"] == "op").await;
    assert_eq!(
        (op1["seq"].as_i64(), op1["op"].as_str()),
        (Some(1), Some("create"))
    );
    let op2 = until(&mut wb, |v| v["type"] == "op").await;
    assert_eq!(op2["seq"], 2);
    assert_eq!(op2["annotation"]["payload"], label(&["poor"]));
    // A stale version sent to B is refused with the state A wrote.
    wb.send(Message::Text(
        json!({"type": "update", "req": 3, "id": "shared-1", "version": 1, "payload": label(&["good"])})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let err = until(&mut wb, |v| v["type"] == "error").await;
    assert_eq!(err["code"], "conflict");
    assert_eq!(err["current"]["version"], 2);
    // The audit trail is one, whichever server wrote.
    let r = call(
        b,
        Method::GET,
        &format!("/api/projects/{pid}/audit"),
        Some(&root),
        None,
    )
    .await;
    let actions: Vec<&str> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"annotation.create") && actions.contains(&"annotation.update"));
    println!(
        "relay: an operation taken by one server reached the other's client in {:.1} ms",
        latency.as_secs_f64() * 1e3
    );
}

#[test]
fn writers_on_two_servers_take_turns_on_a_study() {
    let Some(sh) = shared(2, &[("root", true)]) else {
        return;
    };
    let study = sh.studies[0].clone();
    let root = Principal {
        user_id: 1,
        username: "root".into(),
        superuser: true,
        csrf: String::new(),
    };
    let p = sh.servers[0]
        .db
        .create_project(&root, "turns", false, &schema())
        .unwrap();
    sh.servers[1].db.add_study(&root, p.id, &study).unwrap();
    let op = |values: &[&str]| Op::Create {
        id: None,
        location: Location::default(),
        kind: "label".into(),
        name: "quality".into(),
        payload: label(values),
    };
    let first = sh.servers[0]
        .db
        .apply(&root, p.id, &study, op(&["good"]), |_| {})
        .unwrap();
    let id = first.annotation.id.clone();
    // 8 writers, 4 on each server, race to update one annotation at the version they read,
    // and create annotations of their own in between.
    let seqs = Arc::new(Mutex::new(vec![first.annotation.seq]));
    let (updated, conflicts) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
    std::thread::scope(|scope| {
        for w in 0..8 {
            let db = sh.servers[w % 2].db.clone();
            let (root, study, id, p) = (root.clone(), study.clone(), id.clone(), p.clone());
            let (seqs, updated, conflicts) = (seqs.clone(), updated.clone(), conflicts.clone());
            scope.spawn(move || {
                for k in 0..25 {
                    let (_, now) = db.annotations(&root, Role::Admin, &p, &study).unwrap();
                    let version = now.iter().find(|a| a.id == id).unwrap().version;
                    let v = if k % 2 == 0 { "good" } else { "poor" };
                    let update = Op::Update {
                        id: id.clone(),
                        version,
                        payload: label(&[v]),
                    };
                    match db.apply(&root, p.id, &study, update, |_| {}) {
                        Ok(a) => {
                            assert_eq!(a.annotation.version, version + 1);
                            seqs.lock().unwrap().push(a.annotation.seq);
                            *updated.lock().unwrap() += 1;
                        }
                        Err(ApplyError::Conflict(current)) => {
                            assert!(current.version > version);
                            *conflicts.lock().unwrap() += 1;
                        }
                        Err(e) => panic!("{e}"),
                    }
                    let created = db
                        .apply(&root, p.id, &study, op(&["good"]), |_| {})
                        .unwrap();
                    seqs.lock().unwrap().push(created.annotation.seq);
                }
            });
        }
    });
    let updated = *updated.lock().unwrap();
    let conflicts = *conflicts.lock().unwrap();
    assert_eq!(updated + conflicts, 200);
    assert!(updated > 0);
    let (seq, all) = sh.servers[1]
        .db
        .annotations(&root, Role::Admin, &p, &study)
        .unwrap();
    let shared_one = all.iter().find(|a| a.id == id).unwrap();
    assert_eq!(shared_one.version, 1 + updated as i64, "no lost update");
    assert_eq!(all.len(), 1 + 200, "every creation is there once");
    let seqs = seqs.lock().unwrap().clone();
    let unique: BTreeSet<i64> = seqs.iter().copied().collect();
    assert_eq!(unique.len(), seqs.len(), "no operation number given twice");
    assert_eq!(
        unique,
        (1..=seq).collect::<BTreeSet<i64>>(),
        "numbers without gaps"
    );
    println!("turns: {updated} updates applied, {conflicts} refused as stale, {seq} operations");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_that_loses_its_connection_resynchronises_its_clients() {
    let Some(sh) = shared(2, &[("root", true)]) else {
        return;
    };
    let (a, b) = (&sh.servers[0].app, &sh.servers[1].app);
    let study = sh.studies[0].clone();
    let root = login(a, "root").await;
    let pid = project(a, &root, &study).await;
    let addr_b = serve(b).await;
    let mut wb = connect(addr_b, pid, &study, &root).await;
    assert_eq!(recv(&mut wb).await["type"], "snapshot");
    // Cut every listener's connection (as a database restart or a network cut would), and
    // write while they are away: those announcements are lost.
    let url = sh.url.clone();
    let cut = tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .len()
    })
    .await
    .unwrap();
    assert!(cut >= 2, "both servers listen ({cut} listeners cut)");
    let r = call(
        a,
        Method::POST,
        &format!("/api/projects/{pid}/studies/{study}/annotations"),
        Some(&root),
        Some(json!({"id": "while-away", "kind": "label", "name": "quality", "payload": label(&["good"])})),
    )
    .await;
    assert!(r.status.is_success(), "{:?}", r.json);
    // B's client ends up with it: from a fresh snapshot after the relay reconnects, or from
    // the announcement if the relay was back in time.
    let got = until(&mut wb, |v| {
        (v["type"] == "snapshot"
            && v["annotations"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["id"] == "while-away"))
            || (v["type"] == "op" && v["annotation"]["id"] == "while-away")
    })
    .await;
    println!(
        "after the cut, B's client got the operation by {}",
        got["type"]
    );
    // And the relay works again.
    let r = call(
        a,
        Method::POST,
        &format!("/api/projects/{pid}/studies/{study}/annotations"),
        Some(&root),
        Some(
            json!({"id": "after", "kind": "label", "name": "quality", "payload": label(&["poor"])}),
        ),
    )
    .await;
    assert!(r.status.is_success());
    let op = until(&mut wb, |v| {
        v["type"] == "op" && v["annotation"]["id"] == "after"
    })
    .await;
    assert_eq!(op["seq"], 2);
}

#[test]
fn tls_to_postgres_verifies_the_server() {
    let Some(base) = base_url() else {
        return;
    };
    let ca = std::env::var("BEDSIDE_TEST_POSTGRES_CA")
        .expect("BEDSIDE_TEST_POSTGRES_CA (scripts/postgres.sh prints it beside the URL)");
    let url = fresh_postgres_at(&base);
    let name = url.rsplit('/').next().unwrap().to_string();
    let data = tempfile::tempdir().unwrap();
    let required = format!("{url}?sslmode=require");
    // Trusting the server's certificate authority: connected over TLS, and only so.
    let db = Database::open_with_ca(data.path(), Some(&required), Some(ca.as_ref())).unwrap();
    let store = DiskStore::with_database(data.path(), &db).unwrap();
    assert_eq!(store.instance_count().unwrap(), 0);
    let mut admin = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl)
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = $1 AND a.application_name = 'bedside-annotate'",
            &[&name],
        )
        .unwrap();
    let (tls, plain): (i64, i64) = (row.get(0), row.get(1));
    assert!(
        tls >= 1 && plain == 0,
        "{tls} TLS and {plain} plain connections"
    );
    // Trusting other authorities (the system's), the same server is refused, and the message
    // says why without the password.
    let other = tempfile::tempdir().unwrap();
    let system = ["/etc/ssl/certs/ca-certificates.crt"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if let Some(system) = system {
        let err = Database::open_with_ca(other.path(), Some(&required), Some(system.as_ref()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("certificate"), "{err}");
        let password = base.split(':').nth(2).unwrap().split('@').next().unwrap();
        assert!(!err.contains(password));
    }
    // A CA file that holds no certificate is an error of its own.
    let empty = other.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let err = Database::open_with_ca(other.path(), Some(&required), Some(&empty))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no usable certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_reaches_the_clients_of_other_servers() {
    let Some(sh) = shared(2, &[("root", true), ("ann", false)]) else {
        return;
    };
    let (a, b) = (&sh.servers[0].app, &sh.servers[1].app);
    let study = sh.studies[0].clone();
    let sop = instances()
        .into_iter()
        .find(|i| i.study == study)
        .unwrap()
        .sop;
    let root = login(a, "root").await;
    let pid = project(a, &root, &study).await;
    let (addr_a, addr_b) = (serve(a).await, serve(b).await);
    let mut wb = connect(addr_b, pid, &study, &root).await;
    assert_eq!(recv(&mut wb).await["type"], "snapshot");
    // A user on server A moves to frame 2: the client on B hears of it.
    let mut wa = connect(addr_a, pid, &study, &root).await;
    let snap = recv(&mut wa).await;
    let conn_a = snap["you"]["conn"].as_u64().unwrap();
    wa.send(Message::Text(
        json!({"type": "presence", "sop_instance_uid": sop, "frame": 2})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let seen = until(&mut wb, |v| v["type"] == "presence" && v["conn"] == conn_a).await;
    assert_eq!(
        (seen["user"].as_str(), seen["frame"].as_i64()),
        (Some("root"), Some(2))
    );
    // A client joining on B later finds it in its snapshot, beside B's own connections.
    let mut wb2 = connect(addr_b, pid, &study, &root).await;
    let snap = recv(&mut wb2).await;
    let presence = snap["presence"].as_array().unwrap();
    assert!(
        presence
            .iter()
            .any(|p| p["conn"] == conn_a && p["frame"] == 2),
        "{presence:?}"
    );
    // Connection numbers differ between servers.
    assert_ne!(snap["you"]["conn"].as_u64().unwrap() >> 32, conn_a >> 32);
    // Leaving A is heard on B.
    wa.close(None).await.unwrap();
    let left = until(&mut wb, |v| {
        v["type"] == "presence" && v["conn"] == conn_a && v["left"] == true
    })
    .await;
    assert_eq!(left["user"], "root");
}
