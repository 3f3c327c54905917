//! The node's signing key and Flower's node-authentication headers.
//!
//! flwr 1.42 authenticates each Fleet HTTP call by three headers: `flwr-public-key`
//! (base64 of the PEM SubjectPublicKeyInfo), `flwr-timestamp` (Python
//! `datetime.isoformat()` of the current UTC time) and `flwr-signature` (base64 of the DER
//! ECDSA-SHA256 signature over the timestamp's ASCII bytes). The SuperLink refuses
//! timestamps older than 305 s or more than 5 s in the future.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use p256::ecdsa::{Signature, SigningKey, signature::Signer as _};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};

use crate::FederateError;

/// The site's P-256 node key.
pub struct NodeKey {
    key: SigningKey,
    public_pem: String,
}

impl NodeKey {
    /// Loads the PKCS#8 PEM key at `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, FederateError> {
        let io = |e: std::io::Error| FederateError::Key(format!("{}: {e}", path.display()));
        if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(io)?;
            let key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| {
                FederateError::Key(format!("{}: not a P-256 PKCS#8 key", path.display()))
            })?;
            return Self::from_key(key);
        }
        let mut seed = [0u8; 32];
        let key = loop {
            getrandom::fill(&mut seed).map_err(|e| FederateError::Key(e.to_string()))?;
            if let Ok(k) = SigningKey::from_slice(&seed) {
                break k;
            }
        };
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| FederateError::Key(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        write_private(path, pem.as_bytes()).map_err(io)?;
        Self::from_key(key)
    }

    fn from_key(key: SigningKey) -> Result<Self, FederateError> {
        let public_pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| FederateError::Key(e.to_string()))?;
        Ok(NodeKey { key, public_pem })
    }

    /// PEM SubjectPublicKeyInfo, the bytes Flower stores as the node's public key.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The public key in OpenSSH form (`ecdsa-sha2-nistp256 …`), which
    /// `flwr supernode register` takes.
    pub fn public_openssh(&self) -> String {
        fn ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        let point = self.key.verifying_key().to_encoded_point(false);
        let mut blob = Vec::new();
        ssh_string(&mut blob, b"ecdsa-sha2-nistp256");
        ssh_string(&mut blob, b"nistp256");
        ssh_string(&mut blob, point.as_bytes());
        format!(
            "ecdsa-sha2-nistp256 {}\n",
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    /// Signs `message` (ECDSA-SHA256, DER).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(message);
        sig.to_der().as_bytes().to_vec()
    }

    /// The three authentication headers for a request made now.
    pub fn headers(&self) -> [(&'static str, String); 3] {
        self.headers_at(&iso_timestamp(SystemTime::now()))
    }

    /// The headers for a given timestamp text (tests use stale ones).
    pub fn headers_at(&self, timestamp: &str) -> [(&'static str, String); 3] {
        let b64 = base64::engine::general_purpose::STANDARD;
        [
            ("flwr-public-key", b64.encode(self.public_pem.as_bytes())),
            ("flwr-timestamp", timestamp.to_string()),
            (
                "flwr-signature",
                b64.encode(self.sign(timestamp.as_bytes())),
            ),
        ]
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// `datetime.now(tz=UTC).isoformat()`: `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`.
pub fn iso_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_match_python_isoformat() {
        // datetime.fromtimestamp(1795834705.046743, UTC).isoformat()
        let t = UNIX_EPOCH + Duration::from_micros(1_795_834_705_046_743);
        assert_eq!(iso_timestamp(t), "2026-11-28T02:58:25.046743+00:00");
        assert_eq!(
            iso_timestamp(UNIX_EPOCH),
            "1970-01-01T00:00:00.000000+00:00"
        );
        // 2000-02-29 (leap day)
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert!(iso_timestamp(t).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn key_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let a = NodeKey::load_or_create(&path).expect("create");
        let b = NodeKey::load_or_create(&path).expect("load");
        assert_eq!(a.public_pem(), b.public_pem());
        assert!(a.public_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        // 4+19 + 4+8 + 4+65 bytes of blob → 104 base64 characters.
        let ssh = a.public_openssh();
        assert!(ssh.starts_with("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY"));
        assert_eq!(ssh.trim_end().len(), "ecdsa-sha2-nistp256 ".len() + 140);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
