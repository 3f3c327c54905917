#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Killing the server mid-load loses no acknowledged operation.
//!
//! The server runs in a child process (this test binary run again with only `server_child`
//! selected); clients create and update annotations over WebSocket while the parent sends it
//! SIGKILL. After a restart on the same data folder every acknowledged creation is there with
//! at least its acknowledged version, nothing unsent appears, and resending the
//! unacknowledged creations (same ids) leaves exactly one annotation per id.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Method;
use bedside_annotate::api::AuthConfig;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DATA_VAR: &str = "BEDSIDE_CRASH_CHILD_DATA";
const PORT_VAR: &str = "BEDSIDE_CRASH_CHILD_PORT_FILE";
const DATABASE_VAR: &str = "BEDSIDE_CRASH_CHILD_DATABASE";

/// The server process (does nothing unless started by [`acknowledged_operations_survive_a_kill`]).
#[test]
fn server_child() {
    let (Ok(data), Ok(port_file)) = (std::env::var(DATA_VAR), std::env::var(PORT_VAR)) else {
        return;
    };
    let config = bedside_annotate::server::ServeConfig {
        data: data.into(),
        database: std::env::var(DATABASE_VAR).ok(),
        database_ca: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        dicomweb: Default::default(),
        auth: AuthConfig::default(),
        tls: None,
    };
    bedside_annotate::server::serve(config, |addr| {
        bedside_core::fsio::write_atomic(Path::new(&port_file), addr.to_string().as_bytes())
            .unwrap();
    })
    .unwrap();
}

// The caller kills and waits for the child; a failed start panics the test, which ends it too.
#[allow(clippy::zombie_processes)]
fn start_child(data: &Path, database: Option<&str>) -> (Child, SocketAddr) {
    let port_file = data.join(format!("port-{}", std::process::id()));
    let _ = std::fs::remove_file(&port_file);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    if let Some(url) = database {
        cmd.env(DATABASE_VAR, url);
    }
    let child = cmd
        .args(["server_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(DATA_VAR, data)
        .env(PORT_VAR, &port_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Ok(addr) = text.parse()
        {
            return (child, addr);
        }
        assert!(Instant::now() < deadline, "the server child did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, pid: i64, study: &str, cookie: &str) -> Ws {
    let mut req = format!("ws://{addr}/api/projects/{pid}/studies/{study}/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn recv(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Sends a message and waits for its reply; `None` when the connection died first.
async fn roundtrip(ws: &mut Ws, msg: Value) -> Option<Value> {
    let req = msg["req"].clone();
    ws.send(Message::Text(msg.to_string().into())).await.ok()?;
    loop {
        let v = recv(ws).await?;
        if (v["type"] == "ack" || v["type"] == "error") && v["req"] == req {
            return Some(v);
        }
    }
}

#[derive(Default)]
struct Log {
    /// Creations sent (whether or not acknowledged).
    sent: HashSet<String>,
    /// Acknowledged id → highest acknowledged version.
    acked: HashMap<String, i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_operations_survive_a_kill() {
    let f = fixture(&[("root", true)], AuthConfig::default());
    let root = login(&f.app, "root").await;
    let r = call(
        &f.app,
        Method::POST,
        "/api/projects",
        Some(&root),
        Some(json!({"name": "crash", "schema": schema()})),
    )
    .await;
    let pid = r.json["id"].as_i64().unwrap();
    let study = f.studies[0].clone();
    call(
        &f.app,
        Method::POST,
        &format!("/api/projects/{pid}/studies"),
        Some(&root),
        Some(json!({"study_instance_uid": study})),
    )
    .await;
    let data = f.data.path().to_path_buf();
    let (mut child, addr) = start_child(&data, f.postgres_url.as_deref());

    let log = Arc::new(Mutex::new(Log::default()));
    let clients = 8;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (log, cookie, study) = (log.clone(), root.cookie.clone(), study.clone());
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(addr, pid, &study, &cookie).await;
            recv(&mut ws).await;
            let mut k = 0;
            loop {
                let id = format!("k{c}-{k}");
                k += 1;
                log.lock().unwrap().sent.insert(id.clone());
                let create = json!({"type": "create", "req": id, "annotation":
                    {"id": id, "kind": "label", "name": "quality", "payload": {"values": ["good"]}}});
                let Some(reply) = roundtrip(&mut ws, create).await else { return };
                assert_eq!(reply["type"], "ack", "{reply}");
                log.lock().unwrap().acked.insert(id.clone(), 1);
                // And one update of it, so versions are checked too.
                let update = json!({"type": "update", "req": format!("{id}-u"), "id": id, "version": 1,
                                    "payload": {"values": ["poor"]}});
                let Some(reply) = roundtrip(&mut ws, update).await else { return };
                assert_eq!(reply["type"], "ack", "{reply}");
                log.lock().unwrap().acked.insert(id, 2);
            }
        }));
    }
    // Let the load run, then kill the server without warning.
    let start = Instant::now();
    while log.lock().unwrap().acked.len() < 150 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let (sent, acked) = {
        let l = log.lock().unwrap();
        (l.sent.clone(), l.acked.clone())
    };
    println!(
        "crash: killed after {:.2} s with {} creations sent, {} acknowledged",
        start.elapsed().as_secs_f64(),
        sent.len(),
        acked.len()
    );
    assert!(acked.len() >= 150);

    let (mut child, addr) = start_child(&data, f.postgres_url.as_deref());
    let mut ws = connect(addr, pid, &study, &root.cookie).await;
    let snap = recv(&mut ws).await.unwrap();
    let found: BTreeMap<String, i64> = snap["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["version"].as_i64().unwrap(),
            )
        })
        .collect();
    for (id, version) in &acked {
        let got = found.get(id).copied();
        assert!(
            got.is_some_and(|v| v >= *version),
            "{id}: acknowledged v{version}, found {got:?}"
        );
    }
    assert!(
        found.keys().all(|id| sent.contains(id)),
        "an annotation nobody sent"
    );
    // Resending what was not acknowledged (same ids) completes the set without duplicates.
    for id in sent.iter().filter(|id| !acked.contains_key(*id)) {
        let create = json!({"type": "create", "req": id, "annotation":
            {"id": id, "kind": "label", "name": "quality", "payload": {"values": ["good"]}}});
        let reply = roundtrip(&mut ws, create).await.unwrap();
        assert_eq!(reply["type"], "ack", "{reply}");
    }
    ws.send(Message::Text(json!({"type": "sync"}).to_string().into()))
        .await
        .unwrap();
    let snap = loop {
        let v = recv(&mut ws).await.unwrap();
        if v["type"] == "snapshot" {
            break v;
        }
    };
    let ids: Vec<&str> = snap["annotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len());
    assert_eq!(unique.len(), sent.len());
    child.kill().unwrap();
    child.wait().unwrap();
}
