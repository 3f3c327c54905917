//! The site agent: a Flower node speaking the Fleet API, running only local code.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::FederateError;
use crate::audit::AuditLog;
use crate::config::SiteConfig;
use crate::egress::{self, EgressReport};
use crate::fleet::{FleetClient, node};
use crate::npy::{self, FloatType, Tensor};
use crate::objects::{
    self, ArrayValue, ConfigValue, MetricValue, ObjectSet, Record, RecordDict, object_id,
};
use crate::proto;
use crate::trainer::{TrainConfig, Trainer};

/// Record keys shared with `tools/flower/bedside_fl` (and Flower's strategy defaults).
pub mod keys {
    /// ArrayRecord with the model.
    pub const ARRAYS: &str = "arrays";
    /// ConfigRecord with the instruction's settings.
    pub const CONFIG: &str = "config";
    /// MetricRecord in replies.
    pub const METRICS: &str = "metrics";
    /// FedAvg weight.
    pub const NUM_EXAMPLES: &str = "num-examples";
    /// Run name checked against the allow-list.
    pub const RUN: &str = "bedside-run";
}

/// Flower's `ErrorCode.CLIENT_APP_RAISED_EXCEPTION`, used for refusals and failures.
const ERROR_CODE_REFUSED: i64 = 2;

/// Counters the agent reports when it stops.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AgentStats {
    /// Node id given by the SuperLink.
    pub node_id: u64,
    /// Instructions answered with content.
    pub replies: u64,
    /// Instructions refused or failed (answered with an error).
    pub refusals: u64,
    /// Runs seen to finish.
    pub runs_finished: u32,
    /// Request bytes sent.
    pub bytes_sent: u64,
    /// Response bytes received.
    pub bytes_received: u64,
}

/// A running site agent.
pub struct Agent {
    cfg: SiteConfig,
    client: Arc<FleetClient>,
    trainer: Box<dyn Trainer>,
    audit: AuditLog,
    rng: bedside_core::rng::Rng,
    stop: Arc<AtomicBool>,
}

impl Agent {
    /// Prepares the agent (key, client, audit log); nothing is sent yet.
    pub fn new(
        cfg: SiteConfig,
        trainer: Box<dyn Trainer>,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, FederateError> {
        std::fs::create_dir_all(&cfg.folder)
            .map_err(|e| FederateError::Key(format!("{}: {e}", cfg.folder.display())))?;
        let key = Arc::new(crate::auth::NodeKey::load_or_create(
            &cfg.folder.join("node-key.pem"),
        )?);
        let transport = crate::fleet::Transport {
            address: cfg.superlink.address.clone(),
            insecure: cfg.superlink.insecure,
            ca_pem: FleetClient::read_pem(cfg.superlink.ca.as_deref())?,
            client_cert: match (&cfg.superlink.client_cert, &cfg.superlink.client_key) {
                (Some(c), Some(k)) => Some((
                    FleetClient::read_pem(Some(c))?.unwrap_or_default(),
                    FleetClient::read_pem(Some(k))?.unwrap_or_default(),
                )),
                _ => None,
            },
        };
        let client = Arc::new(FleetClient::new(&transport, key.clone())?);
        let audit = AuditLog::open(&cfg.folder.join("audit.jsonl"), key)?;
        // Noise must not be predictable from outside: seed from the OS.
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(|e| FederateError::Key(e.to_string()))?;
        Ok(Agent {
            cfg,
            client,
            trainer,
            audit,
            rng: bedside_core::rng::Rng::seed_from(u64::from_le_bytes(seed)),
            stop,
        })
    }

    /// The Fleet client (tests use it to forge requests).
    pub fn client(&self) -> &FleetClient {
        &self.client
    }

    /// Joins the federation and serves until stopped or `exit_after_runs` runs finished.
    pub fn run(&mut self) -> Result<AgentStats, FederateError> {
        let pk = self.client.public_key();
        if self.cfg.node.self_register {
            match self.client.call::<_, proto::RegisterNodeFleetResponse>(
                "register-node",
                &proto::RegisterNodeFleetRequest {
                    public_key: pk.clone(),
                },
            ) {
                Ok(_) => {}
                // A restarted agent's key is already registered.
                Err(FederateError::Http { status, .. }) if status != 401 && status != 0 => {}
                Err(e) => return Err(e),
            }
        }
        let activated = self.activate(pk)?;
        let node_id = activated.node_id;
        self.audit.append(
            "activated",
            json!({"site": self.cfg.site, "node_id": node_id.to_string(),
                   "superlink": self.cfg.superlink.address}),
        )?;
        tracing::info!(node_id, "node activated");

        let hb_stop = Arc::new(AtomicBool::new(false));
        let heartbeat = spawn_heartbeat(
            self.client.clone(),
            node_id,
            self.cfg.node.heartbeat_interval_s,
            hb_stop.clone(),
        );
        let result = self.serve(node_id);
        hb_stop.store(true, Ordering::Relaxed);
        let _ = heartbeat.join();
        // Deactivate only now: a node leaving right after its last push makes Flower
        // discard that round's reply.
        let deactivated = self.client.call::<_, proto::DeactivateNodeResponse>(
            "deactivate-node",
            &proto::DeactivateNodeRequest { node_id },
        );
        // No unregister: flwr 1.42 keeps an unregistered key reserved, so a site that
        // unregistered could never come back with its (persistent) key.
        let mut stats = result?;
        stats.node_id = node_id;
        stats.bytes_sent = self.client.bytes_sent.load(Ordering::Relaxed);
        stats.bytes_received = self.client.bytes_received.load(Ordering::Relaxed);
        self.audit.append(
            "deactivated",
            json!({"node_id": node_id.to_string(), "ok": deactivated.is_ok(), "stats": stats}),
        )?;
        Ok(stats)
    }

    /// Activates the node. A site restarted after a crash is still "online" to the
    /// SuperLink until its last heartbeat expires (2 × the interval), and activation is
    /// refused (HTTP 412) until then: wait that out instead of failing.
    fn activate(&self, public_key: Vec<u8>) -> Result<proto::ActivateNodeResponse, FederateError> {
        let interval = self.cfg.node.heartbeat_interval_s;
        let deadline = Instant::now() + Duration::from_secs_f64(2.0 * interval + 10.0);
        loop {
            let r = self.client.call(
                "activate-node",
                &proto::ActivateNodeRequest {
                    public_key: public_key.clone(),
                    heartbeat_interval: interval,
                },
            );
            match r {
                Err(FederateError::Http { status: 412, .. })
                    if Instant::now() < deadline && !self.stop.load(Ordering::Relaxed) =>
                {
                    tracing::info!("node still online from a previous session; waiting");
                    std::thread::sleep(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    fn serve(&mut self, node_id: u64) -> Result<AgentStats, FederateError> {
        let mut stats = AgentStats::default();
        let mut active_runs: HashSet<u64> = HashSet::new();
        let mut finished: HashSet<u64> = HashSet::new();
        let poll = Duration::from_millis(self.cfg.node.poll_interval_ms);
        let mut last_run_check = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let pulled: proto::PullMessagesResponse = self.client.call(
                "pull-messages",
                &proto::PullMessagesRequest {
                    node: node(node_id),
                    message_ids: Vec::new(),
                },
            )?;
            let (Some(msg), Some(tree)) = (
                pulled.messages_list.into_iter().next(),
                pulled.message_object_trees.into_iter().next(),
            ) else {
                if !active_runs.is_empty() && last_run_check.elapsed() >= poll * 4 {
                    last_run_check = Instant::now();
                    for run_id in active_runs.clone() {
                        if self.run_finished(node_id, run_id) {
                            active_runs.remove(&run_id);
                            finished.insert(run_id);
                            stats.runs_finished += 1;
                            self.audit
                                .append("run-finished", json!({"run_id": run_id.to_string()}))?;
                        }
                    }
                    let quota = self.cfg.node.exit_after_runs;
                    if quota > 0 && stats.runs_finished >= quota {
                        break;
                    }
                }
                std::thread::sleep(poll);
                continue;
            };
            let metadata = msg.metadata.unwrap_or_default();
            if !finished.contains(&metadata.run_id) {
                active_runs.insert(metadata.run_id);
            }
            match self.handle(node_id, &metadata, &tree) {
                Ok(true) => stats.replies += 1,
                Ok(false) => stats.refusals += 1,
                // One failed instruction must not take the site offline; Flower counts
                // the missing reply as a failure of this round.
                Err(e) => {
                    stats.refusals += 1;
                    tracing::warn!(error = %e, "instruction failed");
                    self.audit.append(
                        "instruction-failed",
                        json!({"run_id": metadata.run_id.to_string(),
                               "message_id": metadata.message_id, "error": e.to_string()}),
                    )?;
                }
            }
        }
        Ok(stats)
    }

    fn run_finished(&self, node_id: u64, run_id: u64) -> bool {
        match self.client.call::<_, proto::GetRunResponse>(
            "get-run",
            &proto::GetRunRequest {
                node: node(node_id),
                run_id,
            },
        ) {
            Ok(r) => r
                .run
                .and_then(|r| r.status)
                .is_some_and(|s| s.status == "finished"),
            // The SuperLink refuses GetRun for finished runs.
            Err(FederateError::Http { status, .. }) => status != 0 && status != 401,
            Err(_) => false,
        }
    }

    /// Pulls, checks and answers one instruction; returns whether it was answered with
    /// content (false: refused with an error reply).
    fn handle(
        &mut self,
        node_id: u64,
        metadata: &proto::Metadata,
        tree: &proto::ObjectTree,
    ) -> Result<bool, FederateError> {
        let started = Instant::now();
        let run_id = metadata.run_id;
        let mut ids = Vec::new();
        objects::post_order(tree, &mut ids);
        let mut store: HashMap<String, Vec<u8>> = HashMap::new();
        let mut bytes_in = 0usize;
        for id in &ids {
            if store.contains_key(id) {
                continue;
            }
            let bytes = self.pull_object(node_id, run_id, id)?;
            if object_id(&bytes) != *id {
                return Err(FederateError::DecodeObject(format!(
                    "object {id} hash mismatch"
                )));
            }
            bytes_in += bytes.len();
            store.insert(id.clone(), bytes);
        }
        let _: proto::ConfirmMessageReceivedResponse = self.client.call(
            "confirm-message-received",
            &proto::ConfirmMessageReceivedRequest {
                node: node(node_id),
                run_id,
                message_object_id: metadata.message_id.clone(),
            },
        )?;
        let root = store
            .get(&metadata.message_id)
            .ok_or_else(|| FederateError::DecodeObject("message object missing".into()))?;
        let get = |k: &str| store.get(k).map(|v| v.as_slice());
        let content_in = objects::read_content(root, &get)?;
        let content = &content_in;
        let run_name = config_str(content, keys::RUN);
        self.audit.append(
            "instruction",
            json!({"run_id": run_id.to_string(), "message_id": metadata.message_id,
                   "type": metadata.message_type, "group": metadata.group_id,
                   "run": run_name, "objects": ids.len(), "bytes": bytes_in}),
        )?;

        let allowed_types: Vec<String> = if self.cfg.allow.message_types.is_empty() {
            vec!["train".into(), "evaluate".into(), "query".into()]
        } else {
            self.cfg.allow.message_types.clone()
        };
        let refusal = if !allowed_types.contains(&metadata.message_type) {
            Some(format!(
                "message type `{}` not allowed by the site",
                metadata.message_type
            ))
        } else if !run_name
            .as_ref()
            .is_some_and(|r| self.cfg.allow.runs.contains(r))
        {
            Some("run not on the site's allow-list".to_string())
        } else {
            None
        };
        let outcome = match refusal {
            Some(reason) => Err(reason),
            None => self
                .local_work(metadata, content)
                .map_err(|e| e.to_string()),
        };
        let answered = outcome.is_ok();
        let (reply_content, error, report) = match outcome {
            Ok((content, report)) => (Some(content), None, report),
            Err(reason) => (
                None,
                Some(proto::Error {
                    code: ERROR_CODE_REFUSED,
                    reason: reason.clone(),
                }),
                None,
            ),
        };
        let (pushed, bytes_out) = self.push_reply(
            node_id,
            metadata,
            reply_content.as_ref(),
            error.clone(),
            started,
        )?;
        self.audit.append(
            "reply",
            json!({"run_id": run_id.to_string(), "reply_to": metadata.message_id,
                   "message_id": pushed, "answered": answered,
                   "error": error.map(|e| e.reason), "egress": report,
                   "bytes_sent": bytes_out,
                   "arrays": reply_content.as_ref().map(describe_arrays)}),
        )?;
        if let (Some(content), true) = (&reply_content, self.cfg.node.keep_egress_copies) {
            self.keep_copy(run_id, metadata, &content_in, content)?;
        }
        Ok(answered)
    }

    /// Counts one noised release in the site's privacy ledger (`privacy.json`, kept across
    /// restarts and runs, written before the update leaves) and returns the total spent.
    fn count_release(&self) -> Result<Option<crate::privacy::PrivacySpent>, FederateError> {
        let path = self.cfg.folder.join("privacy.json");
        let ledger_error = |e: String| FederateError::Key(format!("{}: {e}", path.display()));
        let releases = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["releases"].as_u64())
                .ok_or_else(|| {
                    ledger_error("unreadable privacy ledger; refusing to send".into())
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(ledger_error(e.to_string())),
        };
        let releases = u32::try_from(releases + 1).unwrap_or(u32::MAX);
        let delta = if self.cfg.egress.delta > 0.0 {
            self.cfg.egress.delta
        } else {
            1e-5
        };
        let spent = crate::privacy::spent(self.cfg.egress.noise_multiplier, releases, delta);
        let text = json!({"releases": releases, "spent": spent}).to_string();
        bedside_core::fsio::write_atomic(&path, text.as_bytes())
            .map_err(|e| ledger_error(e.to_string()))?;
        Ok(spent)
    }

    fn pull_object(&self, node_id: u64, run_id: u64, id: &str) -> Result<Vec<u8>, FederateError> {
        // The SuperLink may list an object before it is available; retry briefly.
        for _ in 0..200 {
            let r: proto::PullObjectResponse = self.client.call(
                "pull-object",
                &proto::PullObjectRequest {
                    node: node(node_id),
                    run_id,
                    object_id: id.to_string(),
                },
            )?;
            if !r.object_found {
                return Err(FederateError::DecodeObject(format!(
                    "object {id} not found"
                )));
            }
            if r.object_available {
                return Ok(r.object_content);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(FederateError::DecodeObject(format!(
            "object {id} never available"
        )))
    }

    fn local_work(
        &mut self,
        metadata: &proto::Metadata,
        content: &RecordDict,
    ) -> Result<(RecordDict, Option<EgressReport>), FederateError> {
        let global = arrays_of(content)?;
        let cfg = train_config(content);
        match metadata.message_type.as_str() {
            "train" => {
                let mut out = self.trainer.train(&global, &cfg)?;
                let rng = &mut self.rng;
                let base = out.base.take().unwrap_or(global);
                let mut report =
                    egress::apply(&self.cfg.egress, &base, &mut out.arrays, &mut || {
                        rng.normal()
                    });
                if report.noise_sd > 0.0 {
                    report.privacy = self.count_release()?;
                }
                let ty = if self.cfg.egress.fp16 {
                    FloatType::F16
                } else {
                    FloatType::F32
                };
                let arrays = out
                    .arrays
                    .iter()
                    .map(|(k, t)| (k.clone(), to_array(t, ty)))
                    .collect();
                let mut metrics = vec![(
                    keys::NUM_EXAMPLES.to_string(),
                    MetricValue::Int(out.num_examples as i64),
                )];
                metrics.extend(
                    out.metrics
                        .into_iter()
                        .map(|(k, v)| (k, MetricValue::Double(v))),
                );
                Ok((
                    vec![
                        (keys::ARRAYS.into(), Record::Arrays(arrays)),
                        (keys::METRICS.into(), Record::Metrics(metrics)),
                    ],
                    Some(report),
                ))
            }
            "evaluate" => {
                let (n, m) = self.trainer.evaluate(&global)?;
                let mut metrics =
                    vec![(keys::NUM_EXAMPLES.to_string(), MetricValue::Int(n as i64))];
                metrics.extend(m.into_iter().map(|(k, v)| (k, MetricValue::Double(v))));
                Ok((vec![(keys::METRICS.into(), Record::Metrics(metrics))], None))
            }
            "query" => {
                let stats = self.trainer.statistics()?;
                let metrics = crate::stats::release(&stats, &self.cfg.stats)?;
                Ok((vec![(keys::METRICS.into(), Record::Metrics(metrics))], None))
            }
            other => Err(FederateError::Refused(format!("message type `{other}`"))),
        }
    }

    fn push_reply(
        &self,
        node_id: u64,
        ins: &proto::Metadata,
        content: Option<&RecordDict>,
        error: Option<proto::Error>,
        started: Instant,
    ) -> Result<(String, u64), FederateError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let mut meta = proto::Metadata {
            run_id: ins.run_id,
            message_id: String::new(),
            src_node_id: ins.dst_node_id,
            dst_node_id: ins.src_node_id,
            reply_to_message_id: ins.message_id.clone(),
            group_id: ins.group_id.clone(),
            // A reply may not outlive the instruction.
            ttl: ins.created_at + ins.ttl - now,
            message_type: ins.message_type.clone(),
            created_at: now,
            src_task_id: ins.dst_task_id,
            dst_task_id: ins.src_task_id,
        };
        let mut set = ObjectSet::default();
        let (id, tree) = match content {
            Some(c) => set.put_message(&meta, c),
            None => set.put_error_message(&meta, error.clone()),
        };
        meta.message_id = id.clone();
        let resp: proto::PushMessagesResponse = self.client.call(
            "push-messages",
            &proto::PushMessagesRequest {
                node: node(node_id),
                messages_list: vec![proto::Message {
                    metadata: Some(meta),
                    // Flower sends an empty RecordDict in place of the content (which
                    // travels as objects); an error reply has neither.
                    content: error.is_none().then(proto::RecordDict::default),
                    error,
                }],
                message_object_trees: vec![tree],
                clientapp_runtime_list: vec![started.elapsed().as_secs_f64()],
            },
        )?;
        let mut sent = 0u64;
        let mut order = Vec::new();
        objects::post_order(&set_tree(&set, &id), &mut order);
        let wanted: HashSet<&String> = resp.objects_to_push.iter().collect();
        for oid in order.iter().filter(|o| wanted.contains(o)) {
            let Some(bytes) = set.objects.get(oid) else {
                continue;
            };
            sent += bytes.len() as u64;
            let _: proto::PushObjectResponse = self.client.call(
                "push-object",
                &proto::PushObjectRequest {
                    node: node(node_id),
                    run_id: ins.run_id,
                    object_id: oid.clone(),
                    object_content: bytes.clone(),
                    session_id: resp.session_id.clone(),
                },
            )?;
        }
        Ok((id, sent))
    }

    fn keep_copy(
        &self,
        run_id: u64,
        ins: &proto::Metadata,
        instruction: &RecordDict,
        content: &RecordDict,
    ) -> Result<(), FederateError> {
        let round = train_config(instruction).server_round;
        let dir: PathBuf = self
            .cfg
            .folder
            .join("egress")
            .join(run_id.to_string())
            .join(format!("round-{round}-{}", ins.message_type));
        for (name, record) in content {
            match record {
                Record::Arrays(arrays) => {
                    for (k, a) in arrays {
                        let path = dir.join(format!("{name}.{k}.npy"));
                        write(&path, &a.data)?;
                    }
                }
                Record::Metrics(m) => {
                    let map: serde_json::Map<String, serde_json::Value> = m
                        .iter()
                        .map(|(k, v)| {
                            let v = match v {
                                MetricValue::Double(x) => json!(x),
                                MetricValue::Int(x) => json!(x),
                                MetricValue::DoubleList(x) => json!(x),
                            };
                            (k.clone(), v)
                        })
                        .collect();
                    let text = serde_json::to_vec_pretty(&map)
                        .map_err(|e| FederateError::Audit(e.to_string()))?;
                    write(&dir.join(format!("{name}.json")), &text)?;
                }
                Record::Config(_) => {}
            }
        }
        Ok(())
    }
}

fn write(path: &std::path::Path, bytes: &[u8]) -> Result<(), FederateError> {
    let err = |e: std::io::Error| FederateError::Audit(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    bedside_core::fsio::write_atomic(path, bytes).map_err(err)
}

/// Rebuilds the tree of `root` from the objects' headers (the set holds one message).
fn set_tree(set: &ObjectSet, root: &str) -> proto::ObjectTree {
    let children = set
        .objects
        .get(root)
        .and_then(|b| objects::split_object(b).ok())
        .map(|(_, c, _)| c.into_iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap_or_default();
    proto::ObjectTree {
        object_id: root.to_string(),
        children: children.iter().map(|c| set_tree(set, c)).collect(),
    }
}

fn spawn_heartbeat(
    client: Arc<FleetClient>,
    node_id: u64,
    interval: f64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let period = Duration::from_secs_f64(interval / 3.0);
        let mut next = Instant::now() + period;
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                next = Instant::now() + period;
                let r = client.call::<_, proto::SendNodeHeartbeatResponse>(
                    "send-node-heartbeat",
                    &proto::SendNodeHeartbeatRequest {
                        node: node(node_id),
                        heartbeat_interval: interval,
                    },
                );
                if let Err(e) = r {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn config_str(content: &RecordDict, key: &str) -> Option<String> {
    content.iter().find_map(|(name, r)| match r {
        Record::Config(items) if name == keys::CONFIG => items.iter().find_map(|(k, v)| match v {
            ConfigValue::Str(s) if k == key => Some(s.clone()),
            _ => None,
        }),
        _ => None,
    })
}

fn train_config(content: &RecordDict) -> TrainConfig {
    let mut cfg = TrainConfig {
        server_round: 0,
        local_epochs: 1,
        lr: None,
        proximal_mu: 0.0,
        normalization: None,
        frozen_noise: 0.0,
    };
    let (mut mean, mut sd) = (None, None);
    for (name, r) in content {
        if let (Record::Config(items), true) = (r, name == keys::CONFIG) {
            for (k, v) in items {
                match (k.as_str(), v.as_f64()) {
                    ("server-round", Some(x)) => cfg.server_round = x as u64,
                    ("local-epochs", Some(x)) => cfg.local_epochs = x.max(0.0) as u32,
                    ("lr", Some(x)) => cfg.lr = Some(x),
                    ("proximal-mu", Some(x)) => cfg.proximal_mu = x,
                    ("frozen-noise", Some(x)) if x.is_finite() && x >= 0.0 => cfg.frozen_noise = x,
                    ("norm-mean", Some(x)) => mean = Some(x),
                    ("norm-std", Some(x)) => sd = Some(x),
                    _ => {}
                }
            }
        }
    }
    if let (Some(m), Some(s)) = (mean, sd)
        && m.is_finite()
        && s.is_finite()
        && s > 0.0
    {
        cfg.normalization = Some((m, s));
    }
    cfg
}

fn arrays_of(content: &RecordDict) -> Result<Vec<(String, Tensor)>, FederateError> {
    let mut out = Vec::new();
    for (name, r) in content {
        if let (Record::Arrays(arrays), true) = (r, name == keys::ARRAYS) {
            for (k, a) in arrays {
                if a.stype != "numpy.ndarray" {
                    return Err(FederateError::DecodeArray(format!(
                        "`{k}` is not a NumPy array"
                    )));
                }
                out.push((k.clone(), npy::decode(&a.data)?.0));
            }
        }
    }
    Ok(out)
}

fn to_array(t: &Tensor, ty: FloatType) -> ArrayValue {
    ArrayValue {
        dtype: ty.name().into(),
        shape: t.shape.iter().map(|d| *d as i64).collect(),
        stype: "numpy.ndarray".into(),
        data: npy::encode(t, ty),
    }
}

fn describe_arrays(content: &RecordDict) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (name, r) in content {
        if let Record::Arrays(arrays) = r {
            for (k, a) in arrays {
                out.insert(
                    format!("{name}.{k}"),
                    json!({"dtype": a.dtype, "shape": a.shape, "bytes": a.data.len(),
                           "sha256": object_id(&a.data)}),
                );
            }
        }
    }
    serde_json::Value::Object(out)
}
