//! `site.toml`: how a site joins a federation and what it allows.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::egress::EgressConfig;

/// The whole site configuration.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SiteConfig {
    /// Site name (for logs and the audit log; never sent).
    pub site: String,
    /// Site folder: node key, audit log, copies of what left the site. Relative paths in
    /// this file are resolved against the file's folder.
    pub folder: PathBuf,
    /// Where the SuperLink is.
    pub superlink: SuperLinkConfig,
    /// Node behaviour.
    pub node: NodeConfig,
    /// What the site accepts.
    pub allow: AllowConfig,
    /// The egress filter.
    pub egress: EgressConfig,
    /// Local training.
    pub trainer: TrainerConfig,
    /// Data-quality statistics answered to `query` messages.
    pub stats: StatsConfig,
}

/// `[superlink]`
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SuperLinkConfig {
    /// `host:port` of the Fleet API.
    pub address: String,
    /// Plain HTTP (loopback tests only).
    pub insecure: bool,
    /// PEM CA bundle for the SuperLink's certificate.
    pub ca: Option<PathBuf>,
    /// PEM client certificate (for an mTLS proxy in front of the SuperLink).
    pub client_cert: Option<PathBuf>,
    /// PEM key of `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// `[node]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Heartbeat interval announced to the SuperLink, seconds (Flower accepts 10–1800);
    /// heartbeats are sent every third of it.
    pub heartbeat_interval_s: f64,
    /// Register the key through the Fleet API (SuperLinks without
    /// `--enable-supernode-auth`); otherwise the operator registers it with
    /// `flwr supernode register`.
    pub self_register: bool,
    /// Milliseconds between polls for instructions.
    pub poll_interval_ms: u64,
    /// Leave after this many runs have finished (0: stay until stopped).
    pub exit_after_runs: u32,
    /// Write a copy of every array sent to `<folder>/egress/` as `.npy`.
    pub keep_egress_copies: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            heartbeat_interval_s: 30.0,
            self_register: false,
            poll_interval_ms: 500,
            exit_after_runs: 0,
            keep_egress_copies: true,
        }
    }
}

/// `[allow]`
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AllowConfig {
    /// Accepted `bedside-run` names (the server app's run configuration); empty: none.
    pub runs: Vec<String>,
    /// Accepted message types (empty: `train` and `evaluate`).
    pub message_types: Vec<String>,
}

/// `[trainer]`
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainerConfig {
    /// `linear` (logistic regression on a CSV) or `video` (`bedside train`'s models and
    /// training loop on the site's curated arrays).
    pub kind: String,
    /// Data file (`linear`).
    pub data: PathBuf,
    /// `bedside train` experiment configuration (`video`): model, task, local data and
    /// optimiser; `training.epochs` is replaced by the instruction's `local-epochs`.
    pub experiment: PathBuf,
    /// `video`: answer `evaluate` with the global model's BatchNorm statistics re-estimated on
    /// this site's training studies (one pass, no training), which is how the site would
    /// run the model, instead of the federation's averaged statistics.
    pub site_statistics: bool,
}

/// `[stats]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// A site with fewer examples answers no statistics at all.
    pub min_count: u64,
    /// Counts below this (but above 0) are reported as 0, and the number of cells so
    /// suppressed is reported.
    pub min_cell: u64,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            min_count: 10,
            min_cell: 3,
        }
    }
}

impl bedside_core::config::Validate for SiteConfig {
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: &str| Err((k.to_string(), m.to_string()));
        if self.superlink.address.is_empty() {
            return err("superlink.address", "must be host:port");
        }
        if !self.superlink.insecure && self.superlink.ca.is_none() {
            return err(
                "superlink.ca",
                "TLS needs the SuperLink's CA (or insecure = true)",
            );
        }
        if self.superlink.client_cert.is_some() != self.superlink.client_key.is_some() {
            return err(
                "superlink.client_key",
                "client_cert and client_key go together",
            );
        }
        if !(10.0..=1800.0).contains(&self.node.heartbeat_interval_s) {
            return err("node.heartbeat_interval_s", "must be within 10..=1800");
        }
        if self.node.poll_interval_ms == 0 {
            return err("node.poll_interval_ms", "must be positive");
        }
        if self.egress.clip_norm < 0.0 || self.egress.noise_multiplier < 0.0 {
            return err("egress", "clip_norm and noise_multiplier must be ≥ 0");
        }
        if !(0.0..1.0).contains(&self.egress.delta) {
            return err("egress.delta", "must be in [0, 1)");
        }
        if self.egress.noise_multiplier > 0.0 && self.egress.clip_norm == 0.0 {
            return err("egress.noise_multiplier", "noise needs clip_norm > 0");
        }
        match self.trainer.kind.as_str() {
            "linear" => {}
            "video" if self.trainer.experiment.as_os_str().is_empty() => {
                return err(
                    "trainer.experiment",
                    "the video trainer needs an experiment",
                );
            }
            "video" => {}
            _ => return err("trainer.kind", "must be `linear` or `video`"),
        }
        Ok(())
    }
}

impl SiteConfig {
    /// Loads `path` (defaults → file → `BEDSIDE__…` variables) and resolves relative paths
    /// against the file's folder.
    pub fn load(path: &Path) -> Result<Self, bedside_core::config::ConfigError> {
        let mut cfg: SiteConfig = bedside_core::config::load(Some(path))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut cfg.folder);
        fix(&mut cfg.trainer.data);
        if !cfg.trainer.experiment.as_os_str().is_empty() {
            fix(&mut cfg.trainer.experiment);
        }
        for p in [
            &mut cfg.superlink.ca,
            &mut cfg.superlink.client_cert,
            &mut cfg.superlink.client_key,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_site_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/federate/site.toml");
        let cfg = SiteConfig::load(&path).expect("example loads");
        assert_eq!(cfg.allow.runs, vec!["logistic-demo".to_string()]);
        assert!(cfg.folder.ends_with("site-a"));
        assert!(
            cfg.superlink
                .ca
                .as_ref()
                .is_some_and(|p| p.ends_with("ca.pem"))
        );
        assert_eq!(cfg.egress.clip_norm, 10.0);
    }

    #[test]
    fn tls_needs_a_ca_and_noise_needs_clipping() {
        use bedside_core::config::Validate as _;
        let mut cfg = SiteConfig {
            superlink: SuperLinkConfig {
                address: "h:1".into(),
                ..Default::default()
            },
            trainer: TrainerConfig {
                kind: "linear".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            cfg.validate().map_err(|e| e.0),
            Err("superlink.ca".to_string())
        );
        cfg.superlink.insecure = true;
        assert!(cfg.validate().is_ok());
        cfg.egress.noise_multiplier = 1.0;
        assert!(cfg.validate().is_err());
    }
}
