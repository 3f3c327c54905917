//! The site secret and the keyed pseudonyms derived from it.
//!
//! Every pseudonym (UIDs, identifiers, the per-patient date offset) is an HMAC-SHA-256 of the
//! original value under the site secret, with a distinct domain label per use, so the same input
//! maps to the same output in every file and every run at that site, and cannot be reversed or
//! recomputed without the secret.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::DeidError;

/// File name of the secret inside its folder.
pub const SECRET_FILE_NAME: &str = "bedside-site-secret.key";

const SECRET_LEN: usize = 32;

/// A site's secret key (32 random bytes). `Debug` never shows it.
#[derive(Clone)]
pub struct SiteSecret {
    key: [u8; SECRET_LEN],
}

impl std::fmt::Debug for SiteSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteSecret(<redacted>)")
    }
}

impl SiteSecret {
    /// A secret from explicit bytes (tests, or a secret held in a key store).
    pub fn from_bytes(key: [u8; SECRET_LEN]) -> SiteSecret {
        SiteSecret { key }
    }

    /// Loads the secret from `dir`, creating it (random, owner-only permissions) on first use.
    pub fn load_or_create(dir: &Path) -> Result<SiteSecret, DeidError> {
        let path = dir.join(SECRET_FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => return parse_hex_key(text.trim(), &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(secret_error(&path, &e.to_string())),
        }
        std::fs::create_dir_all(dir).map_err(|e| secret_error(&path, &e.to_string()))?;
        let mut key = [0u8; SECRET_LEN];
        getrandom::fill(&mut key).map_err(|e| secret_error(&path, &e.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                file.write_all(hex.as_bytes())
                    .and_then(|()| file.write_all(b"\n"))
                    .and_then(|()| file.sync_all())
                    .map_err(|e| secret_error(&path, &e.to_string()))?;
                Ok(SiteSecret { key })
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| secret_error(&path, &e.to_string()))?;
                parse_hex_key(text.trim(), &path)
            }
            Err(e) => Err(secret_error(&path, &e.to_string())),
        }
    }

    /// HMAC-SHA-256 of `data` under the secret, with a domain label.
    pub fn keyed_hash(&self, domain: &str, data: &[u8]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable_hmac(),
        };
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The `2.25.` UID that replaces `uid` (same input, same output).
    pub fn uid(&self, uid: &str) -> String {
        let h = self.keyed_hash("uid", uid.trim_end_matches(['\0', ' ']).as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&h[..16]);
        // Clear the top bit so the value reads as a positive 127-bit number, like a UUID-derived UID.
        let n = u128::from_be_bytes(first) >> 1;
        format!("2.25.{n}")
    }

    /// A pseudonym for an identifier: `prefix` then 12 upper-case hex characters.
    pub fn pseudonym(&self, domain: &str, value: &str, prefix: &str) -> String {
        let h = self.keyed_hash(domain, value.as_bytes());
        let mut s = String::with_capacity(prefix.len() + 12);
        s.push_str(prefix);
        for b in &h[..6] {
            s.push_str(&format!("{b:02X}"));
        }
        s
    }

    /// The date offset in days for a patient key, uniform in `min..=max`.
    pub fn day_offset(&self, patient_key: &str, min: i32, max: i32) -> i32 {
        let (lo, hi) = if min <= max { (min, max) } else { (max, min) };
        let span = (i64::from(hi) - i64::from(lo) + 1) as u64;
        let h = self.keyed_hash("date-shift", patient_key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        let r = u64::from_be_bytes(first) % span;
        (i64::from(lo) + r as i64) as i32
    }

    /// The keyed rotation of times of day for a patient, in seconds (1 to 86,399: never zero,
    /// so times never pass through unchanged).
    pub fn time_offset(&self, patient_key: &str) -> u32 {
        let h = self.keyed_hash("time-shift", patient_key.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        1 + (u64::from_be_bytes(first) % 86_399) as u32
    }

    /// Where [`SiteSecret::load_or_create`] keeps the secret for `dir`.
    pub fn path_in(dir: &Path) -> PathBuf {
        dir.join(SECRET_FILE_NAME)
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` only fails for fixed-size-key MACs; HMAC takes any length.
    panic!("HMAC rejected a 32-byte key")
}

fn secret_error(path: &Path, message: &str) -> DeidError {
    DeidError::Secret {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn parse_hex_key(text: &str, path: &Path) -> Result<SiteSecret, DeidError> {
    if text.len() != SECRET_LEN * 2 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(secret_error(path, "expected 64 hexadecimal characters"));
    }
    let mut key = [0u8; SECRET_LEN];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).map_err(|_| secret_error(path, "not ASCII"))?;
        key[i] = u8::from_str_radix(s, 16).map_err(|_| secret_error(path, "not hexadecimal"))?;
    }
    Ok(SiteSecret { key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_stable_and_valid() {
        let s = SiteSecret::from_bytes([7; 32]);
        let a = s.uid("1.2.3.4");
        assert_eq!(a, s.uid("1.2.3.4\0"));
        assert_ne!(a, s.uid("1.2.3.5"));
        assert!(a.starts_with("2.25.") && a.len() <= 64);
        assert!(!a[5..].starts_with('0'));
        let other = SiteSecret::from_bytes([8; 32]);
        assert_ne!(a, other.uid("1.2.3.4"));
    }

    #[test]
    fn secret_is_created_once_with_private_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = SiteSecret::load_or_create(dir.path()).expect("create");
        let b = SiteSecret::load_or_create(dir.path()).expect("load");
        assert_eq!(a.uid("1.2"), b.uid("1.2"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(SiteSecret::path_in(dir.path()))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "mode {mode:o}");
        }
        assert_eq!(format!("{a:?}"), "SiteSecret(<redacted>)");
    }

    #[test]
    fn day_offsets_stay_in_range() {
        let s = SiteSecret::from_bytes([1; 32]);
        let mut seen = std::collections::HashSet::new();
        for i in 0..500 {
            let d = s.day_offset(&format!("patient{i}"), -30, -10);
            assert!((-30..=-10).contains(&d));
            seen.insert(d);
        }
        assert_eq!(seen.len(), 21, "every offset of the range is reachable");
    }
}
