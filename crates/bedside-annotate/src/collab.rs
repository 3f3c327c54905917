//! Real-time collaboration: `GET /api/projects/{P}/studies/{S}/ws` (WebSocket, JSON text).
//!
//! On connection the server sends
//! `{"type": "snapshot", "seq", "annotations": [...], "presence": [...], "you": {...}}`.
//! Clients then send
//!
//! ```text
//! {"type": "create", "req": R, "annotation": {"id"?, "series_instance_uid"?, "sop_instance_uid"?,
//!                                            "frame"?, "kind", "name", "payload"}}
//! {"type": "update", "req": R, "id", "version", "payload"}
//! {"type": "delete", "req": R, "id", "version"}
//! {"type": "presence", "sop_instance_uid"?, "frame"?}
//! {"type": "sync"}                       (a fresh snapshot)
//! {"type": "ping", "req": R}
//! ```
//!
//! and get `{"type": "ack", "req", "op", "seq", "annotation"}` or
//! `{"type": "error", "req", "code", "message", "current"?}` (`code`: `malformed`,
//! `invalid`, `forbidden`, `not_found`, `conflict` with the current state, `exists`,
//! `server`). Every applied operation is numbered per study (`seq`), persisted with its audit
//! row, and only then broadcast as `{"type": "op", "op", "seq", "annotation"}` to every
//! connection on the study (the sender included), in `seq` order. In blinded projects
//! annotators and viewers only receive their own operations. Presence
//! (`{"type": "presence", "user", "conn", "sop_instance_uid", "frame"}`, `"left": true` on
//! leaving) is broadcast but not stored; servers sharing a PostgreSQL database pass it to each
//! other (see [`Hub::remote_presence`]). A client that falls behind, or sees an operation
//! number skipped, receives a new snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::api::AppState;
use crate::db::{Applied, ApplyError, DbError, Op, Principal, Project};
use crate::model::{Location, Role};

/// Operations a slow connection may fall behind by before it is resynchronised.
const ROOM_CAPACITY: usize = 4096;

/// One broadcast message.
#[derive(Debug)]
pub struct Event {
    /// Operations may have been missed: every connection takes a fresh snapshot.
    resync: bool,
    /// The author of an annotation operation (`None` for presence, seen by all).
    author_id: Option<i64>,
    /// The study's sequence number after an annotation operation (`None` for presence).
    seq: Option<i64>,
    text: Utf8Bytes,
}

/// Connections on one study of one project.
#[derive(Debug)]
struct Room {
    tx: broadcast::Sender<Arc<Event>>,
    presence: Mutex<HashMap<u64, Value>>,
}

/// How long another server's presence entry lasts without being announced again (servers
/// announce theirs every [`PRESENCE_REFRESH`]); it outlives a server that stopped uncleanly by
/// at most this long.
pub const PRESENCE_TTL: Duration = Duration::from_secs(60);

/// How often a server announces its connections' presence again (PostgreSQL only).
pub const PRESENCE_REFRESH: Duration = Duration::from_secs(20);

/// Presence entries of connections on other servers, by study: connection → (message, when
/// last announced).
type RemotePresence = HashMap<(i64, String), HashMap<u64, (Value, Instant)>>;

/// The rooms of every study with connections.
#[derive(Debug)]
pub struct Hub {
    rooms: Mutex<HashMap<(i64, String), Arc<Room>>>,
    next_conn: AtomicU64,
    /// This server's tag: connection numbers start at `origin << 32`, so that they differ
    /// between servers sharing a database, and its own presence announcements are known.
    origin: u64,
    remote: Mutex<RemotePresence>,
}

impl Default for Hub {
    fn default() -> Self {
        let mut tag = [0u8; 4];
        // A collision only merges two servers' presence lists for a connection number.
        let _ = getrandom::fill(&mut tag);
        let origin = u64::from(u32::from_le_bytes(tag) & 0x000F_FFFF) + 1;
        Self {
            rooms: Mutex::default(),
            next_conn: AtomicU64::new(origin << 32),
            origin,
            remote: Mutex::default(),
        }
    }
}

impl Hub {
    fn subscribe(&self, project: i64, study: &str) -> (Arc<Room>, broadcast::Receiver<Arc<Event>>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let room = rooms
            .entry((project, study.to_string()))
            .or_insert_with(|| {
                Arc::new(Room {
                    tx: broadcast::channel(ROOM_CAPACITY).0,
                    presence: Mutex::new(HashMap::new()),
                })
            })
            .clone();
        let rx = room.tx.subscribe();
        (room, rx)
    }

    fn release(&self, project: i64, study: &str) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let key = (project, study.to_string());
        if rooms.get(&key).is_some_and(|r| r.tx.receiver_count() == 0) {
            rooms.remove(&key);
        }
    }

    /// Broadcasts an applied operation to the study's connections (called under the
    /// database's write lock, so in `seq` order).
    pub fn publish(&self, applied: &Applied) {
        if !applied.changed {
            return;
        }
        let a = &applied.annotation;
        self.send(
            a.project_id,
            &a.study_instance_uid,
            a.author_id,
            a.seq,
            crate::db::op_message(applied),
        );
    }

    /// Broadcasts an operation relayed through PostgreSQL (in commit order).
    pub fn publish_relayed(&self, op: crate::db::Relayed) {
        self.send(
            op.project_id,
            &op.study_instance_uid,
            op.author_id,
            op.seq,
            op.message,
        );
    }

    fn send(&self, project: i64, study: &str, author_id: i64, seq: i64, text: String) {
        let room = {
            let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
            rooms.get(&(project, study.to_string())).cloned()
        };
        if let Some(room) = room {
            let _ = room.tx.send(Arc::new(Event {
                resync: false,
                author_id: Some(author_id),
                seq: Some(seq),
                text: text.into(),
            }));
        }
    }

    /// The presence announcement of a connection (`presence` = `None` when it left), for the
    /// other servers sharing the database.
    fn announcement(
        &self,
        project: i64,
        study: &str,
        conn: u64,
        user: &str,
        presence: Option<&Value>,
    ) -> Value {
        json!({"origin": self.origin, "project": project, "study": study, "conn": conn,
               "user": user, "presence": presence})
    }

    /// Every presence entry of this server's connections, as announcements (re-sent every
    /// [`PRESENCE_REFRESH`] so that the other servers keep them).
    pub fn local_presence(&self) -> Vec<Value> {
        let rooms: Vec<((i64, String), Arc<Room>)> = {
            let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
            rooms.iter().map(|(k, r)| (k.clone(), r.clone())).collect()
        };
        let mut out = Vec::new();
        for ((project, study), room) in rooms {
            let map = room.presence.lock().unwrap_or_else(|p| p.into_inner());
            for (conn, p) in map.iter() {
                let user = p["user"].as_str().unwrap_or_default();
                out.push(self.announcement(project, &study, *conn, user, Some(p)));
            }
        }
        out
    }

    /// Takes another server's presence announcement: kept (or dropped, when it left) and
    /// broadcast to this server's connections on the study if it changed anything.
    pub fn remote_presence(&self, v: &Value) {
        if v["origin"].as_u64() == Some(self.origin) {
            return;
        }
        let (Some(project), Some(study), Some(conn)) = (
            v["project"].as_i64(),
            v["study"].as_str(),
            v["conn"].as_u64(),
        ) else {
            return;
        };
        let key = (project, study.to_string());
        let presence = v.get("presence").filter(|p| p.is_object());
        let changed = {
            let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
            let entries = remote.entry(key.clone()).or_default();
            let changed = match presence {
                Some(p) => entries
                    .insert(conn, (p.clone(), Instant::now()))
                    .is_none_or(|(old, _)| old != *p),
                None => entries.remove(&conn).is_some(),
            };
            if entries.is_empty() {
                remote.remove(&key);
            }
            changed
        };
        if changed {
            let text = match presence {
                Some(p) => p.clone(),
                None => json!({"type": "presence", "user": v["user"], "conn": conn, "left": true}),
            };
            self.send_presence(&key, text);
        }
    }

    /// Drops other servers' entries not announced again within [`PRESENCE_TTL`], telling
    /// this server's connections that they left.
    pub fn expire_remote_presence(&self) {
        let mut gone = Vec::new();
        {
            let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
            for (key, entries) in remote.iter_mut() {
                entries.retain(|conn, (p, at)| {
                    let keep = at.elapsed() < PRESENCE_TTL;
                    if !keep {
                        gone.push((
                            key.clone(),
                            json!({"type": "presence", "user": p["user"],
                                                       "conn": conn, "left": true}),
                        ));
                    }
                    keep
                });
            }
            remote.retain(|_, e| !e.is_empty());
        }
        for (key, text) in gone {
            self.send_presence(&key, text);
        }
    }

    fn send_presence(&self, key: &(i64, String), text: Value) {
        let room = {
            let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
            rooms.get(key).cloned()
        };
        if let Some(room) = room {
            let _ = room.tx.send(Arc::new(Event {
                resync: false,
                author_id: None,
                seq: None,
                text: text.to_string().into(),
            }));
        }
    }

    /// The presence entries of other servers' connections on a study.
    fn remote_entries(&self, project: i64, study: &str) -> Vec<Value> {
        let remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        remote
            .get(&(project, study.to_string()))
            .map(|e| {
                e.values()
                    .filter(|(_, at)| at.elapsed() < PRESENCE_TTL)
                    .map(|(p, _)| p.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Tells every connection to take a fresh snapshot (operations may have been missed).
    pub fn resync_all(&self) {
        let rooms: Vec<Arc<Room>> = {
            let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
            rooms.values().cloned().collect()
        };
        for room in rooms {
            let _ = room.tx.send(Arc::new(Event {
                resync: true,
                author_id: None,
                seq: None,
                text: Utf8Bytes::from_static(""),
            }));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(flatten)]
    location: Location,
    kind: String,
    name: String,
    payload: Value,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMsg {
    Create {
        #[serde(default)]
        req: Value,
        annotation: CreateBody,
    },
    Update {
        #[serde(default)]
        req: Value,
        id: String,
        version: i64,
        payload: Value,
    },
    Delete {
        #[serde(default)]
        req: Value,
        id: String,
        version: i64,
    },
    Presence {
        #[serde(default)]
        sop_instance_uid: Option<String>,
        #[serde(default)]
        frame: Option<i64>,
    },
    Sync,
    Ping {
        #[serde(default)]
        req: Value,
    },
}

/// Builds an operation from a parsed create body (shared with the REST API).
pub fn create_op(body: Value) -> Result<Op, String> {
    let b: CreateBody = serde_json::from_value(body).map_err(|e| e.to_string())?;
    Ok(Op::Create {
        id: b.id,
        location: b.location,
        kind: b.kind,
        name: b.name,
        payload: b.payload,
    })
}

/// The `error` message (and the HTTP status the REST API uses) for a refused operation.
pub fn refusal(e: &ApplyError) -> (u16, &'static str, String, Option<Value>) {
    match e {
        ApplyError::Conflict(current) => (
            409,
            "conflict",
            format!(
                "stale version: the annotation is at version {}{}",
                current.version,
                if current.deleted { " (deleted)" } else { "" }
            ),
            serde_json::to_value(current).ok(),
        ),
        ApplyError::Db(DbError::Invalid(m)) => (422, "invalid", m.clone(), None),
        ApplyError::Db(DbError::Forbidden(m)) => (403, "forbidden", m.clone(), None),
        ApplyError::Db(DbError::NotFound(m)) => (404, "not_found", format!("not found: {m}"), None),
        ApplyError::Db(DbError::Exists(m)) => (409, "exists", format!("already exists: {m}"), None),
        ApplyError::Db(other) => {
            tracing::error!(error = %other, "annotation operation failed");
            (
                500,
                "server",
                "the operation could not be stored".into(),
                None,
            )
        }
    }
}

/// Passes a presence announcement to the other servers sharing a PostgreSQL database (in
/// the background: presence is best effort, and a lost one is repeated within
/// [`PRESENCE_REFRESH`]).
fn announce(state: &Arc<AppState>, message: Value) {
    if !state.db.relays() {
        return;
    }
    let db = state.db.clone();
    drop(tokio::task::spawn_blocking(move || {
        if let Err(e) = db.announce_presence(&message) {
            tracing::warn!(error = %e, "cannot announce presence");
        }
    }));
}

fn valid_uid(u: &str) -> bool {
    !u.is_empty() && u.len() <= 64 && u.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// Runs one connection until it closes.
pub async fn run(
    socket: WebSocket,
    state: Arc<AppState>,
    who: Principal,
    role: Role,
    project: Project,
    study: String,
) {
    let conn = state.hub.next_conn.fetch_add(1, Ordering::Relaxed) + 1;
    let (room, mut rx) = state.hub.subscribe(project.id, &study);
    let (mut sink, mut stream) = socket.split();
    let sees_all = role.sees_all(project.blinded);
    let snapshot = |state: Arc<AppState>,
                    who: Principal,
                    project: Project,
                    study: String,
                    room: Arc<Room>| async move {
        let remote = state.hub.remote_entries(project.id, &study);
        let res =
            tokio::task::spawn_blocking(move || state.db.annotations(&who, role, &project, &study))
                .await;
        let mut presence: Vec<Value> = room
            .presence
            .lock()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default();
        presence.extend(remote);
        match res {
            Ok(Ok((seq, annotations))) => json!({
                "type": "snapshot", "seq": seq, "annotations": annotations, "presence": presence,
            }),
            _ => {
                json!({"type": "error", "code": "server", "message": "cannot read the study's annotations"})
            }
        }
    };
    let mut first = snapshot(
        state.clone(),
        who.clone(),
        project.clone(),
        study.clone(),
        room.clone(),
    )
    .await;
    first["you"] = json!({"user": who.username, "conn": conn, "role": role});
    // The connection subscribes before its snapshot is read, so an operation can be both in
    // the snapshot and on the channel: operations at or below the last snapshot's seq are
    // already known to the client and are not sent again.
    let snapshot_seq = |v: &Value| v["seq"].as_i64().unwrap_or(0);
    let mut known_seq = snapshot_seq(&first);
    if sink
        .send(Message::Text(first.to_string().into()))
        .await
        .is_err()
    {
        state.hub.release(project.id, &study);
        return;
    }
    loop {
        tokio::select! {
            incoming = stream.next() => {
                let text = match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let e = json!({"type": "error", "code": "malformed", "message": "messages are JSON text"});
                        if sink.send(Message::Text(e.to_string().into())).await.is_err() { break; }
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                let reply = match serde_json::from_str::<ClientMsg>(text.as_str()) {
                    Err(e) => Some(json!({"type": "error", "code": "malformed", "message": format!("unreadable message: {e}")})),
                    Ok(ClientMsg::Ping { req }) => Some(json!({"type": "pong", "req": req})),
                    Ok(ClientMsg::Sync) => {
                        let s = snapshot(state.clone(), who.clone(), project.clone(), study.clone(), room.clone()).await;
                        known_seq = known_seq.max(snapshot_seq(&s));
                        Some(s)
                    }
                    Ok(ClientMsg::Presence { sop_instance_uid, frame }) => {
                        if sop_instance_uid.as_deref().is_some_and(|u| !valid_uid(u)) || frame.is_some_and(|f| f < 1) {
                            Some(json!({"type": "error", "code": "invalid", "message": "presence needs a UID and a frame number from 1"}))
                        } else {
                            let p = json!({"type": "presence", "user": who.username, "conn": conn,
                                           "sop_instance_uid": sop_instance_uid, "frame": frame});
                            if let Ok(mut map) = room.presence.lock() { map.insert(conn, p.clone()); }
                            let _ = room.tx.send(Arc::new(Event { resync: false, author_id: None, seq: None, text: p.to_string().into() }));
                            announce(&state, state.hub.announcement(project.id, &study, conn, &who.username, Some(&p)));
                            None
                        }
                    }
                    Ok(msg) => {
                        let (req, op) = match msg {
                            ClientMsg::Create { req, annotation } => (req, Op::Create {
                                id: annotation.id, location: annotation.location, kind: annotation.kind,
                                name: annotation.name, payload: annotation.payload,
                            }),
                            ClientMsg::Update { req, id, version, payload } => (req, Op::Update { id, version, payload }),
                            ClientMsg::Delete { req, id, version } => (req, Op::Delete { id, version }),
                            _ => continue,
                        };
                        let st = state.clone();
                        let w = who.clone();
                        let s = study.clone();
                        let pid = project.id;
                        let res = tokio::task::spawn_blocking(move || {
                            let hub = &st.hub;
                            st.db.apply(&w, pid, &s, op, |a| hub.publish(a))
                        }).await;
                        Some(match res {
                            Ok(Ok(applied)) => json!({"type": "ack", "req": req, "op": applied.op,
                                "seq": applied.annotation.seq, "annotation": applied.annotation}),
                            Ok(Err(e)) => {
                                let (_, code, message, current) = refusal(&e);
                                json!({"type": "error", "req": req, "code": code, "message": message, "current": current})
                            }
                            Err(_) => json!({"type": "error", "req": req, "code": "server", "message": "the operation failed"}),
                        })
                    }
                };
                if let Some(r) = reply
                    && sink.send(Message::Text(r.to_string().into())).await.is_err()
                {
                    break;
                }
            }
            event = rx.recv() => {
                let out = match event {
                    Ok(ev) => {
                        // Operations arrive numbered one by one: a gap means some were
                        // missed (a relay that lost its connection), and the client gets a
                        // fresh snapshot. The number is checked before blinding hides others'.
                        let gap = ev.seq.is_some_and(|seq| seq > known_seq + 1);
                        if ev.resync || gap {
                            let s = snapshot(state.clone(), who.clone(), project.clone(), study.clone(), room.clone()).await;
                            known_seq = known_seq.max(snapshot_seq(&s));
                            Message::Text(s.to_string().into())
                        } else {
                            if let Some(seq) = ev.seq {
                                if seq <= known_seq {
                                    continue;
                                }
                                known_seq = seq;
                            }
                            if !sees_all && ev.author_id.is_some_and(|a| a != who.user_id) {
                                continue;
                            }
                            Message::Text(ev.text.clone())
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let s = snapshot(state.clone(), who.clone(), project.clone(), study.clone(), room.clone()).await;
                        known_seq = known_seq.max(snapshot_seq(&s));
                        Message::Text(s.to_string().into())
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if sink.send(out).await.is_err() { break; }
            }
        }
    }
    let had_presence = room
        .presence
        .lock()
        .map(|mut p| p.remove(&conn).is_some())
        .unwrap_or(false);
    if had_presence {
        let left = json!({"type": "presence", "user": who.username, "conn": conn, "left": true});
        let _ = room.tx.send(Arc::new(Event {
            resync: false,
            author_id: None,
            seq: None,
            text: left.to_string().into(),
        }));
        announce(
            &state,
            state
                .hub
                .announcement(project.id, &study, conn, &who.username, None),
        );
    }
    drop(rx);
    state.hub.release(project.id, &study);
}
