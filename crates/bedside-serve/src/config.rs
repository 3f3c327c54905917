//! `serve.toml`: addresses, the AE titles allowed in, the data folder, routing rules from
//! header fields to bundles with their quality-control limits, and the destination PACS.

use std::path::PathBuf;

use bedside_core::config::Validate;
use serde::{Deserialize, Serialize};

/// The whole service configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// This service's AE title (the called AE title peers must use).
    pub ae_title: String,
    /// Calling AE titles accepted; empty accepts any (a warning is logged at start).
    pub allowed_calling_aes: Vec<String>,
    /// Folder holding the queue database, received instances and results.
    pub data_dir: PathBuf,
    /// Listening addresses.
    pub listen: Listen,
    /// Intake limits.
    pub intake: Intake,
    /// Worker settings.
    pub worker: Worker,
    /// Routing rules, tried in order; the first match picks the bundle.
    pub route: Vec<Route>,
    /// Where reports are sent by C-STORE (absent: kept for retrieval only).
    pub destination: Option<Destination>,
}

/// Listening addresses (loopback by default: open them to the network on purpose).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    /// DICOM upper layer (C-STORE, C-ECHO).
    pub dicom: String,
    /// HTTP: STOW-RS under `/dicomweb`, REST under `/api/v1`, `/healthz`, `/metrics`.
    pub http: String,
}

/// Intake limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Intake {
    /// Largest instance accepted, bytes (C-STORE data set, STOW-RS part, REST body).
    pub max_instance_bytes: usize,
    /// Largest P-DATA PDU this service receives.
    pub max_pdu_length: u32,
    /// Seconds an association may stay silent before it is closed.
    pub idle_timeout_s: u64,
}

/// Worker settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Worker {
    /// At most this many clips per instance, evenly spaced over the valid starts (0: all).
    pub max_clips: usize,
    /// Clips per forward pass.
    pub batch_size: usize,
    /// Milliseconds between queue polls when no new instance wakes the worker.
    pub poll_ms: u64,
    /// Attempts to send a report before it is left for the next start.
    pub send_attempts: u32,
}

/// A routing rule: every non-empty list must contain the instance's value (series description
/// and manufacturer: case-insensitive substrings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Bundle name (its `bundle.json` name) this rule sends to.
    pub bundle: String,
    /// Modalities accepted (e.g. `["US"]`).
    #[serde(default)]
    pub modality: Vec<String>,
    /// SOP Class UIDs accepted.
    #[serde(default)]
    pub sop_class: Vec<String>,
    /// Substrings of the series description, any of which matches.
    #[serde(default)]
    pub series_description: Vec<String>,
    /// Substrings of the manufacturer, any of which matches.
    #[serde(default)]
    pub manufacturer: Vec<String>,
    /// UCUM unit of a regression output (`value`), e.g. `%` for an ejection fraction.
    #[serde(default = "no_units")]
    pub value_unit: String,
    /// Quality control before inference.
    #[serde(default)]
    pub qc: Qc,
    /// An explanation of each result as a Multi-frame True Color Secondary Capture, sent and
    /// kept with the report (absent: none; it costs a backward pass per study).
    #[serde(default)]
    pub explain: Option<ExplainRoute>,
}

/// `[route.explain]`: the attribution drawn over the frames of one clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExplainRoute {
    /// A map method of `bedside explain`: `gradcam`, `saliency`, `input_x_gradient`, `ig`,
    /// `smoothgrad` or `occlusion`.
    pub method: String,
    /// The stage Grad-CAM reads (`stem`, `layer1` … `layer4`).
    pub layer: String,
}

impl Default for ExplainRoute {
    fn default() -> Self {
        Self {
            method: "gradcam".into(),
            layer: "layer4".into(),
        }
    }
}

fn no_units() -> String {
    "1".into()
}

/// Quality-control limits of a route (0 disables a limit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Qc {
    /// Fewest frames (0: the bundle's clip span, `(length − 1) · period + 1`).
    pub min_frames: usize,
    /// Lowest frame rate, frames per second.
    pub min_fps: f64,
    /// Highest frame rate, frames per second.
    pub max_fps: f64,
    /// Smallest rows and columns.
    pub min_size: usize,
    /// Largest rows and columns.
    pub max_size: usize,
    /// Refuse instances without calibration (ultrasound regions or Pixel Spacing).
    pub require_calibration: bool,
    /// "I don't know" above this evidential uncertainty `K/S` (0: off; absent: the
    /// threshold recorded in the bundle, if any).
    pub max_uncertainty: Option<f64>,
    /// "I don't know" above this spread (standard deviation across clips) of any output
    /// other than the uncertainty (0: off; absent: the bundle's, if any).
    pub max_clip_spread: Option<f64>,
}

impl Default for Qc {
    fn default() -> Self {
        Self {
            min_frames: 0,
            min_fps: 0.0,
            max_fps: 0.0,
            min_size: 0,
            max_size: 0,
            require_calibration: true,
            max_uncertainty: None,
            max_clip_spread: None,
        }
    }
}

/// The destination PACS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Called AE title.
    pub ae_title: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            ae_title: "BEDSIDE".into(),
            allowed_calling_aes: Vec::new(),
            data_dir: PathBuf::from("bedside-serve-data"),
            listen: Listen::default(),
            intake: Intake::default(),
            worker: Worker::default(),
            route: Vec::new(),
            destination: None,
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            dicom: "127.0.0.1:11112".into(),
            http: "127.0.0.1:8042".into(),
        }
    }
}

impl Default for Intake {
    fn default() -> Self {
        Self {
            max_instance_bytes: 1 << 30,
            max_pdu_length: 1 << 20,
            idle_timeout_s: 60,
        }
    }
}

impl Default for Worker {
    fn default() -> Self {
        Self {
            max_clips: 8,
            batch_size: 4,
            poll_ms: 500,
            send_attempts: 3,
        }
    }
}

fn ae_title_problem(title: &str) -> Option<&'static str> {
    if title.trim().is_empty() {
        Some("must not be empty")
    } else if title.len() > 16 {
        Some("must be at most 16 characters")
    } else if title
        .chars()
        .any(|c| c == '\\' || c.is_control() || !c.is_ascii())
    {
        Some("must be ASCII without backslash or control characters")
    } else {
        None
    }
}

fn address_problem(addr: &str) -> Option<String> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => None,
        _ => Some(format!("`{addr}` is not host:port")),
    }
}

impl Validate for ServeConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if let Some(p) = ae_title_problem(&self.ae_title) {
            return err("ae_title", p);
        }
        for (i, t) in self.allowed_calling_aes.iter().enumerate() {
            if let Some(p) = ae_title_problem(t) {
                return err(&format!("allowed_calling_aes[{i}]"), p);
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return err("data_dir", "must not be empty");
        }
        for (key, addr) in [
            ("listen.dicom", &self.listen.dicom),
            ("listen.http", &self.listen.http),
        ] {
            if let Some(p) = address_problem(addr) {
                return err(key, &p);
            }
        }
        if self.intake.max_instance_bytes < 1024 {
            return err("intake.max_instance_bytes", "must be at least 1024");
        }
        if !(4096..=(1 << 26)).contains(&self.intake.max_pdu_length) {
            return err("intake.max_pdu_length", "must be between 4096 and 67108864");
        }
        if self.intake.idle_timeout_s == 0 {
            return err("intake.idle_timeout_s", "must be at least 1");
        }
        if self.worker.batch_size == 0 {
            return err("worker.batch_size", "must be at least 1");
        }
        if self.worker.poll_ms == 0 {
            return err("worker.poll_ms", "must be at least 1");
        }
        if self.route.is_empty() {
            return err("route", "at least one [[route]] is needed");
        }
        for (i, r) in self.route.iter().enumerate() {
            let key = |k: &str| format!("route[{i}].{k}");
            if r.bundle.trim().is_empty() {
                return Err((key("bundle"), "must name a bundle".into()));
            }
            let q = &r.qc;
            for (k, v) in [
                ("qc.min_fps", q.min_fps),
                ("qc.max_fps", q.max_fps),
                ("qc.max_uncertainty", q.max_uncertainty.unwrap_or(0.0)),
                ("qc.max_clip_spread", q.max_clip_spread.unwrap_or(0.0)),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err((key(k), "must be a finite number ≥ 0".into()));
                }
            }
            if q.max_fps > 0.0 && q.min_fps > q.max_fps {
                return Err((key("qc.min_fps"), "must not exceed qc.max_fps".into()));
            }
            if q.max_size > 0 && q.min_size > q.max_size {
                return Err((key("qc.min_size"), "must not exceed qc.max_size".into()));
            }
            if q.max_uncertainty.is_some_and(|u| u > 1.0) {
                return Err((
                    key("qc.max_uncertainty"),
                    "K/S lies in (0, 1]: at most 1".into(),
                ));
            }
            if let Some(e) = &r.explain {
                match bedside_explain::study::Method::parse(&e.method) {
                    Ok(m) if m.has_map() => {}
                    Ok(_) => {
                        return Err((
                            key("explain.method"),
                            "frame ablation gives a curve, not a map to draw".into(),
                        ));
                    }
                    Err(err) => return Err((key("explain.method"), err.to_string())),
                }
                if let Err(err) = bedside_explain::model::Stage::parse(&e.layer) {
                    return Err((key("explain.layer"), err.to_string()));
                }
            }
        }
        if let Some(d) = &self.destination {
            if d.host.trim().is_empty() {
                return err("destination.host", "must not be empty");
            }
            if d.port == 0 {
                return err("destination.port", "must not be 0");
            }
            if let Some(p) = ae_title_problem(&d.ae_title) {
                return err("destination.ae_title", p);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<ServeConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, text).unwrap();
        bedside_core::config::load_with_env::<ServeConfig>(Some(&path), &[])
            .map_err(|e| e.to_string())
    }

    const MINIMAL: &str = "[[route]]\nbundle = \"b\"\n";

    #[test]
    fn defaults_listen_on_loopback() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.listen.dicom.starts_with("127.0.0.1:"));
        assert!(c.listen.http.starts_with("127.0.0.1:"));
        assert!(c.route[0].qc.require_calibration);
        assert!(c.destination.is_none());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = parse(&format!("ae_tittle = \"X\"\n{MINIMAL}")).unwrap_err();
        assert!(e.contains("ae_tittle"), "{e}");
        let e = parse(&format!("{MINIMAL}[route.qc]\nmin_fsp = 3\n")).unwrap_err();
        assert!(e.contains("min_fsp"), "{e}");
        let e = parse(&format!("ae_title = \"A_TITLE_LONGER_THAN_16\"\n{MINIMAL}")).unwrap_err();
        assert!(e.contains("ae_title"), "{e}");
        let e = parse("ae_title = \"X\"\n").unwrap_err();
        assert!(e.contains("route"), "{e}");
        let e = parse(&format!(
            "{MINIMAL}[route.qc]\nmin_fps = 30\nmax_fps = 20\n"
        ))
        .unwrap_err();
        assert!(e.contains("route[0].qc.min_fps"), "{e}");
        let e = parse(&format!("[listen]\ndicom = \"nowhere\"\n{MINIMAL}")).unwrap_err();
        assert!(e.contains("listen.dicom"), "{e}");
        let e = parse(&format!(
            "{MINIMAL}[destination]\nhost = \"h\"\nport = 0\nae_title = \"P\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("destination.port"), "{e}");
    }

    #[test]
    fn example_config_loads() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/serve/serve.toml");
        let c = bedside_core::config::load_with_env::<ServeConfig>(Some(&path), &[]).unwrap();
        assert!(!c.route.is_empty());
        assert!(c.destination.is_some());
    }
}
