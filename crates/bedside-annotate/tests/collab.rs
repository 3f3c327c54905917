#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Real-time collaboration over real WebSocket connections (tokio-tungstenite as the client):
//! ordering, versions, presence, blinding, malformed input, and a load test where many clients
//! edit the same studies and must all end with the server's state.
//!
//! Load size: `BEDSIDE_LOAD_CLIENTS` (default 20) × `BEDSIDE_LOAD_OPS` (default 100); the
//! issue's full size is `BEDSIDE_LOAD_OPS=1000`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use bedside_annotate::api::AuthConfig;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn serve(f: &Fixture) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = f.app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn connect(
    addr: SocketAddr,
    pid: i64,
    study: &str,
    s: Option<&Session>,
    origin: Option<&str>,
) -> Result<Ws, u16> {
    let mut req = format!("ws://{addr}/api/projects/{pid}/studies/{study}/ws")
        .into_client_request()
        .unwrap();
    if let Some(s) = s {
        req.headers_mut()
            .insert("cookie", s.cookie.parse().unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("open")
            .expect("readable");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

/// Reads until a message satisfies `want`, returning it and what came before.
async fn until(ws: &mut Ws, want: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let mut skipped = Vec::new();
    loop {
        let v = recv(ws).await;
        if want(&v) {
            return (v, skipped);
        }
        skipped.push(v);
    }
}

async fn nothing_more(ws: &mut Ws) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
        if let Message::Text(t) = m {
            out.push(serde_json::from_str(t.as_str()).unwrap());
        }
    }
    out
}

struct Setup {
    f: Fixture,
    addr: SocketAddr,
    pid: i64,
    studies: Vec<String>,
    s: HashMap<String, Session>,
}

/// `members`: (user, role); every annotator is assigned to every study.
async fn setup(members: &[(&str, &str)], blinded: bool, n_studies: usize) -> Setup {
    let mut users: Vec<(&str, bool)> = vec![("root", true), ("outsider", false)];
    users.extend(members.iter().map(|(u, _)| (*u, false)));
    let f = fixture(&users, AuthConfig::default());
    let root = login(&f.app, "root").await;
    let r = call(
        &f.app,
        Method::POST,
        "/api/projects",
        Some(&root),
        Some(json!({"name": "live", "blinded": blinded, "schema": schema()})),
    )
    .await;
    let pid = r.json["id"].as_i64().unwrap();
    let studies: Vec<String> = f.studies.iter().take(n_studies).cloned().collect();
    for st in &studies {
        call(
            &f.app,
            Method::POST,
            &format!("/api/projects/{pid}/studies"),
            Some(&root),
            Some(json!({"study_instance_uid": st})),
        )
        .await;
    }
    let mut s = HashMap::new();
    for (u, role) in members {
        let r = call(
            &f.app,
            Method::PUT,
            &format!("/api/projects/{pid}/members/{u}"),
            Some(&root),
            Some(json!({"role": role})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        if *role == "annotator" {
            for st in &studies {
                call(
                    &f.app,
                    Method::PUT,
                    &format!("/api/projects/{pid}/studies/{st}/assignees/{u}"),
                    Some(&root),
                    None,
                )
                .await;
            }
        }
    }
    for (u, _) in users {
        s.insert(u.to_string(), login(&f.app, u).await);
    }
    let addr = serve(&f).await;
    Setup {
        f,
        addr,
        pid,
        studies,
        s,
    }
}

fn label(id: Option<&str>, value: &str) -> Value {
    let mut a = json!({"kind": "label", "name": "quality", "payload": {"values": [value]}});
    if let Some(id) = id {
        a["id"] = json!(id);
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_are_ordered_versioned_and_broadcast() {
    let st = setup(
        &[
            ("ann1", "annotator"),
            ("ann2", "annotator"),
            ("adm", "admin"),
        ],
        false,
        1,
    )
    .await;
    let study = &st.studies[0];
    let mut a = connect(st.addr, st.pid, study, Some(&st.s["ann1"]), None)
        .await
        .unwrap();
    let mut b = connect(st.addr, st.pid, study, Some(&st.s["ann2"]), None)
        .await
        .unwrap();
    let mut c = connect(st.addr, st.pid, study, Some(&st.s["adm"]), None)
        .await
        .unwrap();
    for (ws, who) in [(&mut a, "ann1"), (&mut b, "ann2"), (&mut c, "adm")] {
        let snap = recv(ws).await;
        assert_eq!(snap["type"], "snapshot");
        assert_eq!(snap["seq"], 0);
        assert_eq!(snap["you"]["user"], who);
    }
    // Presence reaches the others.
    send(
        &mut b,
        json!({"type": "presence", "sop_instance_uid": "1.2.3", "frame": 3}),
    )
    .await;
    let (p, _) = until(&mut a, |v| v["type"] == "presence").await;
    assert_eq!(
        (p["user"].as_str(), p["frame"].as_i64()),
        (Some("ann2"), Some(3))
    );
    // A creation is acknowledged to its author and broadcast to all, numbered.
    send(
        &mut a,
        json!({"type": "create", "req": "r1", "annotation": label(Some("x1"), "good")}),
    )
    .await;
    let (ack, _) = until(&mut a, |v| v["type"] == "ack").await;
    assert_eq!(
        (ack["req"].as_str(), ack["seq"].as_i64()),
        (Some("r1"), Some(1))
    );
    assert_eq!(ack["annotation"]["version"], 1);
    for ws in [&mut a, &mut b, &mut c] {
        let (op, _) = until(ws, |v| v["type"] == "op").await;
        assert_eq!(
            (op["op"].as_str(), op["seq"].as_i64()),
            (Some("create"), Some(1))
        );
        assert_eq!(op["annotation"]["author"], "ann1");
    }
    // Another annotator may not change it; the admin may; the author's stale edit is refused
    // with the current state.
    send(&mut b, json!({"type": "update", "req": 2, "id": "x1", "version": 1, "payload": {"values": ["poor"]}})).await;
    let (e, _) = until(&mut b, |v| v["type"] == "error").await;
    assert_eq!(
        (e["req"].as_i64(), e["code"].as_str()),
        (Some(2), Some("forbidden"))
    );
    send(&mut c, json!({"type": "update", "req": 3, "id": "x1", "version": 1, "payload": {"values": ["poor"]}})).await;
    let (ack, _) = until(&mut c, |v| v["type"] == "ack").await;
    assert_eq!(
        (ack["seq"].as_i64(), ack["annotation"]["version"].as_i64()),
        (Some(2), Some(2))
    );
    send(&mut a, json!({"type": "update", "req": 4, "id": "x1", "version": 1, "payload": {"values": ["good"]}})).await;
    let (e, _) = until(&mut a, |v| v["type"] == "error").await;
    assert_eq!(e["code"], "conflict");
    assert_eq!(e["current"]["version"], 2);
    assert_eq!(e["current"]["payload"]["values"][0], "poor");
    send(
        &mut a,
        json!({"type": "delete", "req": 5, "id": "x1", "version": 2}),
    )
    .await;
    let (ack, _) = until(&mut a, |v| v["type"] == "ack").await;
    assert_eq!(
        (ack["op"].as_str(), ack["seq"].as_i64()),
        (Some("delete"), Some(3))
    );
    let (op, _) = until(&mut b, |v| v["type"] == "op" && v["seq"] == 3).await;
    assert_eq!(op["annotation"]["deleted"], true);
    // Leaving is announced.
    b.close(None).await.unwrap();
    let (left, _) = until(&mut a, |v| v["type"] == "presence" && v["left"] == true).await;
    assert_eq!(left["user"], "ann2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_errors_and_the_connection_lives_on() {
    let st = setup(&[("ann1", "annotator")], false, 1).await;
    let mut a = connect(st.addr, st.pid, &st.studies[0], Some(&st.s["ann1"]), None)
        .await
        .unwrap();
    recv(&mut a).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bad: Vec<Message> = vec![
        Message::Text("not json".into()),
        Message::Text("{}".into()),
        Message::Text(r#"{"type": "bogus"}"#.into()),
        Message::Text(r#"{"type": "create"}"#.into()),
        Message::Text(r#"{"type": "create", "annotation": {"kind": "label"}}"#.into()),
        Message::Text(r#"{"type": "update", "id": 5, "version": "x", "payload": 1}"#.into()),
        Message::Text(r#"{"type": "update", "id": "nope", "version": 1, "payload": {}}"#.into()),
        Message::Text(r#"{"type": "delete", "id": "x", "version": 99999999999999999999999}"#.into()),
        Message::Text(r#"{"type": "presence", "frame": -1}"#.into()),
        Message::Text(r#"{"type": "presence", "sop_instance_uid": "<script>"}"#.into()),
        Message::Text(r#"{"type": "create", "annotation": {"kind": "length", "name": "LVIDd", "payload": {"points": [[0, 0], [1e308, 1e308]]}}}"#.into()),
        Message::Text(deep.into()),
        Message::Binary(vec![0u8, 159, 146, 150].into()),
    ];
    for (i, m) in bad.into_iter().enumerate() {
        a.send(m).await.unwrap();
        let (e, _) = until(&mut a, |v| v["type"] == "error").await;
        assert!(
            e["code"].is_string() && e["message"].is_string(),
            "{i}: {e}"
        );
        send(&mut a, json!({"type": "ping", "req": i})).await;
        let (pong, _) = until(&mut a, |v| v["type"] == "pong").await;
        assert_eq!(pong["req"], i);
    }
    let r = call(&st.f.app, Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_need_a_session_a_role_and_the_same_origin() {
    let st = setup(&[("ann1", "annotator"), ("view", "viewer")], true, 2).await;
    let study = &st.studies[0];
    assert_eq!(
        connect(st.addr, st.pid, study, None, None).await.err(),
        Some(401)
    );
    assert_eq!(
        connect(st.addr, st.pid, study, Some(&st.s["outsider"]), None)
            .await
            .err(),
        Some(403)
    );
    let other = "http://evil.example".to_string();
    assert_eq!(
        connect(st.addr, st.pid, study, Some(&st.s["ann1"]), Some(&other))
            .await
            .err(),
        Some(403)
    );
    let same = format!("http://{}", st.addr);
    assert!(
        connect(st.addr, st.pid, study, Some(&st.s["ann1"]), Some(&same))
            .await
            .is_ok()
    );
    // Viewers may watch; they may not write.
    let mut v = connect(st.addr, st.pid, study, Some(&st.s["view"]), None)
        .await
        .unwrap();
    recv(&mut v).await;
    send(
        &mut v,
        json!({"type": "create", "req": 1, "annotation": label(None, "good")}),
    )
    .await;
    let (e, _) = until(&mut v, |x| x["type"] == "error").await;
    assert_eq!(e["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blinded_rooms_only_carry_ones_own_operations() {
    let st = setup(
        &[
            ("ann1", "annotator"),
            ("ann2", "annotator"),
            ("rev", "reviewer"),
        ],
        true,
        1,
    )
    .await;
    let study = &st.studies[0];
    let mut a = connect(st.addr, st.pid, study, Some(&st.s["ann1"]), None)
        .await
        .unwrap();
    let mut b = connect(st.addr, st.pid, study, Some(&st.s["ann2"]), None)
        .await
        .unwrap();
    let mut r = connect(st.addr, st.pid, study, Some(&st.s["rev"]), None)
        .await
        .unwrap();
    for ws in [&mut a, &mut b, &mut r] {
        recv(ws).await;
    }
    send(
        &mut a,
        json!({"type": "create", "req": 1, "annotation": label(None, "good")}),
    )
    .await;
    until(&mut a, |v| v["type"] == "ack").await;
    let (op, _) = until(&mut r, |v| v["type"] == "op").await;
    assert_eq!(op["annotation"]["author"], "ann1");
    let seen = nothing_more(&mut b).await;
    assert!(seen.iter().all(|v| v["type"] != "op"), "{seen:?}");
    // A fresh snapshot is filtered the same way.
    send(&mut b, json!({"type": "sync"})).await;
    let (snap, _) = until(&mut b, |v| v["type"] == "snapshot").await;
    assert_eq!(snap["annotations"].as_array().unwrap().len(), 0);
}

/// What one connection believes the study holds.
#[derive(Default)]
struct View {
    state: BTreeMap<String, Value>,
    last_seq: i64,
    resyncs: usize,
}

impl View {
    fn apply(&mut self, a: &Value) {
        let id = a["id"].as_str().unwrap().to_string();
        let v = a["version"].as_i64().unwrap();
        let known = self
            .state
            .get(&id)
            .map(|x| x["version"].as_i64().unwrap())
            .unwrap_or(0);
        if v > known {
            self.state.insert(id, a.clone());
        }
    }

    fn take(&mut self, msg: &Value) {
        match msg["type"].as_str() {
            Some("snapshot") => {
                self.resyncs += 1;
                // Keep tombstones (a snapshot omits deleted annotations).
                self.state.retain(|_, a| a["deleted"] == true);
                for a in msg["annotations"].as_array().unwrap() {
                    self.apply(a);
                }
                self.last_seq = self.last_seq.max(msg["seq"].as_i64().unwrap());
            }
            Some("op") => {
                let seq = msg["seq"].as_i64().unwrap();
                assert!(
                    seq > self.last_seq || self.resyncs > 1,
                    "op {seq} after {}",
                    self.last_seq
                );
                self.last_seq = seq;
                self.apply(&msg["annotation"]);
            }
            Some("ack") => self.apply(&msg["annotation"]),
            Some("error") if msg["code"] == "conflict" => self.apply(&msg["current"]),
            _ => {}
        }
    }

    fn live(&self) -> BTreeMap<String, (i64, Value)> {
        self.state
            .iter()
            .filter(|(_, a)| a["deleted"] != true)
            .map(|(k, a)| {
                (
                    k.clone(),
                    (a["version"].as_i64().unwrap(), a["payload"].clone()),
                )
            })
            .collect()
    }
}

#[derive(Default, Debug)]
struct Tally {
    creates: Vec<String>,
    deletes: Vec<String>,
    updates: usize,
    conflicts: usize,
    per_study: HashMap<String, i64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_clients_converge_without_losing_or_duplicating() {
    let clients: usize = std::env::var("BEDSIDE_LOAD_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let ops: usize = std::env::var("BEDSIDE_LOAD_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let names: Vec<String> = (0..clients).map(|i| format!("c{i}")).collect();
    // Admins, so that clients edit each other's annotations and race for real.
    let members: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "admin")).collect();
    let st = setup(&members, false, 2).await;
    let inst = instances();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (ci, name) in names.iter().enumerate() {
        let session = st.s[name].clone();
        let (addr, pid, studies) = (st.addr, st.pid, st.studies.clone());
        let frames: HashMap<String, Instance> = studies
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    inst.iter().find(|i| &i.study == s).unwrap().clone(),
                )
            })
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut conns = Vec::new();
            for s in &studies {
                let mut ws = connect(addr, pid, s, Some(&session), None).await.unwrap();
                let mut view = View::default();
                view.take(&recv(&mut ws).await);
                conns.push((s.clone(), ws, view));
            }
            let mut tally = Tally::default();
            // A small deterministic generator per client.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (ci as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for k in 0..ops {
                let which = (next() % conns.len() as u64) as usize;
                let (study, ws, view) = &mut conns[which];
                let live: Vec<(String, i64)> = view.live().into_iter().map(|(id, (v, _))| (id, v)).collect();
                let r = next() % 100;
                let req = format!("c{ci}-{k}");
                let msg = if live.is_empty() || r < 50 {
                    let ann = if r % 2 == 0 {
                        label(Some(&req), if r % 4 == 0 { "good" } else { "poor" })
                    } else {
                        let i = &frames[study.as_str()];
                        let [x0, y0, ..] = i.region;
                        json!({"id": req, "series_instance_uid": i.series, "sop_instance_uid": i.sop,
                               "frame": 1 + (k as i64 % i.frames), "kind": "length", "name": "LVIDd",
                               "payload": {"points": [[x0 + 1.0, y0 + 1.0], [x0 + 1.0 + (r % 30) as f64, y0 + 5.0]]}})
                    };
                    json!({"type": "create", "req": req, "annotation": ann})
                } else {
                    let (id, version) = &live[(next() % live.len() as u64) as usize];
                    let cur = &view.state[id];
                    if r < 85 {
                        let payload = if cur["kind"] == "label" {
                            json!({"values": [if r % 2 == 0 { "good" } else { "poor" }]})
                        } else {
                            let mut p = cur["payload"].clone();
                            let y = p["points"][1][1].as_f64().unwrap();
                            p["points"][1][1] = json!(if y >= 60.0 { y - 30.0 } else { y + 1.0 });
                            p
                        };
                        json!({"type": "update", "req": req, "id": id, "version": version, "payload": payload})
                    } else {
                        json!({"type": "delete", "req": req, "id": id, "version": version})
                    }
                };
                let kind = msg["type"].as_str().unwrap().to_string();
                send(ws, msg).await;
                let (reply, before) = until(ws, |v| (v["type"] == "ack" || v["type"] == "error") && v["req"] == req.as_str()).await;
                for m in &before {
                    view.take(m);
                }
                view.take(&reply);
                if reply["type"] == "ack" {
                    *tally.per_study.entry(study.clone()).or_default() += 1;
                    let id = reply["annotation"]["id"].as_str().unwrap().to_string();
                    match kind.as_str() {
                        "create" => tally.creates.push(id),
                        "delete" => tally.deletes.push(id),
                        _ => tally.updates += 1,
                    }
                } else {
                    assert_eq!(reply["code"], "conflict", "{reply}");
                    tally.conflicts += 1;
                }
            }
            (tally, conns)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let total_ops = clients * ops;
    let mut creates = Vec::new();
    let mut deletes = Vec::new();
    let (mut updates, mut conflicts) = (0, 0);
    let mut per_study: HashMap<String, i64> = HashMap::new();
    for (t, _) in &results {
        creates.extend(t.creates.iter().cloned());
        deletes.extend(t.deletes.iter().cloned());
        updates += t.updates;
        conflicts += t.conflicts;
        for (s, n) in &t.per_study {
            *per_study.entry(s.clone()).or_default() += n;
        }
    }
    println!(
        "load: {clients} clients × {ops} ops = {total_ops} in {elapsed:.2} s ({:.0} ops/s): {} creates, {} updates, {} deletes acknowledged, {conflicts} refused as stale",
        total_ops as f64 / elapsed,
        creates.len(),
        updates,
        deletes.len()
    );
    let mut unique = creates.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), creates.len(), "an id acknowledged twice");
    // The server's state: exactly the acknowledged creations minus the acknowledged deletions.
    let root = &st.s["root"];
    let mut server: HashMap<String, BTreeMap<String, (i64, Value)>> = HashMap::new();
    for study in &st.studies {
        let r = call(
            &st.f.app,
            Method::GET,
            &format!("/api/projects/{}/studies/{study}/annotations", st.pid),
            Some(root),
            None,
        )
        .await;
        assert_eq!(
            r.json["seq"].as_i64().unwrap(),
            per_study.get(study).copied().unwrap_or(0),
            "one number per applied operation"
        );
        let here = server.entry(study.clone()).or_default();
        for a in r.json["annotations"].as_array().unwrap() {
            here.insert(
                a["id"].as_str().unwrap().to_string(),
                (a["version"].as_i64().unwrap(), a["payload"].clone()),
            );
        }
    }
    let mut live: Vec<String> = server.values().flat_map(|m| m.keys().cloned()).collect();
    live.sort();
    let mut expected: Vec<String> = creates
        .iter()
        .filter(|c| !deletes.contains(c))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(live, expected);
    let rows = st.f.scalar("SELECT COUNT(*) FROM annotations", "") as usize;
    assert_eq!(rows, creates.len(), "no duplicated rows");
    // Every connection converges to the server's state once it has seen the last operation.
    let mut resyncs = 0;
    for (_, conns) in results {
        for (study, mut ws, mut view) in conns {
            let target = per_study.get(&study).copied().unwrap_or(0);
            while view.last_seq < target {
                let m = recv(&mut ws).await;
                view.take(&m);
            }
            resyncs += view.resyncs - 1;
            assert_eq!(view.live(), server[&study], "a client diverged on {study}");
        }
    }
    println!(
        "load: every connection converged ({resyncs} resynchronisations after falling behind)"
    );
}
