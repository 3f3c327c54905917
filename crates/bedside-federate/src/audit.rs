//! The site's audit log: one JSON line per event, hash-chained and signed by the node key.
//!
//! Each line is `{"seq", "time", "prev", "event", ..., "hash", "sig"}`: `hash` is the hex
//! SHA-256 of the line serialised without `hash` and `sig` (keys sorted), `prev` is the
//! previous line's `hash` (64 zeros for the first) and `sig` is the base64 DER
//! ECDSA-SHA256 signature of `hash` by the node key. Removing, reordering or editing a
//! line breaks the chain; [`verify`] checks a log against the node's public key.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::FederateError;
use crate::auth::{NodeKey, iso_timestamp};
use crate::objects::object_id;

/// Appends signed events to `audit.jsonl`.
pub struct AuditLog {
    path: PathBuf,
    key: Arc<NodeKey>,
    prev: String,
    seq: u64,
}

impl AuditLog {
    /// Opens (or starts) the log at `path`, continuing its chain.
    pub fn open(path: &Path, key: Arc<NodeKey>) -> Result<Self, FederateError> {
        let mut prev = "0".repeat(64);
        let mut seq = 0;
        if path.exists() {
            let f = std::fs::File::open(path).map_err(|e| audit_err(path, e))?;
            for line in std::io::BufReader::new(f).lines() {
                let line = line.map_err(|e| audit_err(path, e))?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line).map_err(|_| {
                    FederateError::Audit(format!("{}: unreadable line", path.display()))
                })?;
                prev = v["hash"].as_str().unwrap_or_default().to_string();
                seq = v["seq"].as_u64().unwrap_or(0) + 1;
            }
        }
        Ok(AuditLog {
            path: path.to_path_buf(),
            key,
            prev,
            seq,
        })
    }

    /// Appends `event` with its fields (a JSON object), fsyncs, and returns the line's hash.
    pub fn append(&mut self, event: &str, fields: Value) -> Result<String, FederateError> {
        let mut map = match fields {
            Value::Object(m) => m,
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other);
                m
            }
        };
        map.insert("seq".into(), json!(self.seq));
        map.insert(
            "time".into(),
            json!(iso_timestamp(std::time::SystemTime::now())),
        );
        map.insert("prev".into(), json!(self.prev));
        map.insert("event".into(), json!(event));
        let body = serde_json::to_string(&Value::Object(map.clone()))
            .map_err(|e| FederateError::Audit(e.to_string()))?;
        let hash = object_id(body.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(self.key.sign(hash.as_bytes()));
        map.insert("hash".into(), json!(hash));
        map.insert("sig".into(), json!(sig));
        let line = serde_json::to_string(&Value::Object(map))
            .map_err(|e| FederateError::Audit(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| audit_err(&self.path, e))?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .and_then(|_| f.sync_data())
            .map_err(|e| audit_err(&self.path, e))?;
        self.prev = hash.clone();
        self.seq += 1;
        Ok(hash)
    }
}

fn audit_err(path: &Path, e: std::io::Error) -> FederateError {
    FederateError::Audit(format!("{}: {e}", path.display()))
}

/// Checks the chain and every signature; returns the number of lines.
pub fn verify(path: &Path, public_pem: &str) -> Result<u64, FederateError> {
    use p256::ecdsa::{Signature, VerifyingKey, signature::Verifier as _};
    use p256::pkcs8::DecodePublicKey as _;
    let key = VerifyingKey::from_public_key_pem(public_pem)
        .map_err(|_| FederateError::Audit("public key is not P-256 PEM".into()))?;
    let text = std::fs::read_to_string(path).map_err(|e| audit_err(path, e))?;
    let mut prev = "0".repeat(64);
    let mut n = 0u64;
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let bad = |why: &str| FederateError::Audit(format!("line {}: {why}", i + 1));
        let Value::Object(mut map) = serde_json::from_str(line).map_err(|_| bad("not JSON"))?
        else {
            return Err(bad("not an object"));
        };
        let hash = map
            .remove("hash")
            .and_then(|v| v.as_str().map(String::from));
        let sig = map.remove("sig").and_then(|v| v.as_str().map(String::from));
        let (Some(hash), Some(sig)) = (hash, sig) else {
            return Err(bad("no hash or signature"));
        };
        if map.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(bad("chain broken"));
        }
        if map.get("seq").and_then(Value::as_u64) != Some(i as u64) {
            return Err(bad("sequence broken"));
        }
        let body = serde_json::to_string(&Value::Object(map)).map_err(|_| bad("re-encode"))?;
        if object_id(body.as_bytes()) != hash {
            return Err(bad("hash mismatch"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .map_err(|_| bad("signature not base64"))?;
        let sig = Signature::from_der(&der).map_err(|_| bad("signature not DER"))?;
        key.verify(hash.as_bytes(), &sig)
            .map_err(|_| bad("bad signature"))?;
        prev = hash;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_verifies_and_tampering_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = Arc::new(NodeKey::load_or_create(&dir.path().join("k.pem")).expect("key"));
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, key.clone()).expect("open");
        log.append("start", json!({"site": "a"})).expect("append");
        log.append("reply", json!({"bytes": 10})).expect("append");
        drop(log);
        let mut log = AuditLog::open(&path, key.clone()).expect("reopen");
        log.append("stop", json!({})).expect("append");
        assert_eq!(verify(&path, key.public_pem()).expect("verify"), 3);
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace("\"bytes\":10", "\"bytes\":11")).expect("write");
        assert!(verify(&path, key.public_pem()).is_err());
    }
}
