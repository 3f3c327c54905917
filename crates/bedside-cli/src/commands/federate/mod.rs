//! `bedside federate`: the site agent for Flower federations.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Args, Subcommand};

use bedside_federate::agent::Agent;
use bedside_federate::config::SiteConfig;
use bedside_federate::trainer::{LinearTrainer, Trainer};

use crate::ui::Ctx;

mod simulate;
mod video;

/// Federated learning with Flower.
#[derive(Subcommand, Debug)]
pub enum FederateCommand {
    /// Join a Flower federation as a site (outbound HTTPS only; no remote code runs).
    #[command(after_help = SITE_EXAMPLES)]
    Site(SiteArgs),
    /// Check a site's signed audit log (hash chain and signatures).
    VerifyAudit(VerifyArgs),
    /// A whole federation on this machine: phantom sites, a Flower SuperLink, one agent per
    /// site training the video model, Bedside's server app; `--compare` adds pooled and
    /// single-site models.
    #[command(after_help = SIMULATE_EXAMPLES)]
    Simulate(simulate::SimulateArgs),
}

const SIMULATE_EXAMPLES: &str = "Examples:
  bedside federate simulate --sites 3
  bedside federate simulate --sites 3 --rounds 8 --compare --dir fed-demo
  bedside federate simulate --compare --test-patients 600       # narrower intervals, slower
  bedside federate simulate --strategy fedprox --proximal-mu 0.01
  bedside federate simulate --compare --averaged-statistics     # no site BatchNorm statistics
  bedside federate simulate --compare --norm group              # GroupNorm instead of BatchNorm
  bedside federate simulate --sites 2 --patients 60 --rounds 2 --size 32

Needs Flower (flwr 1.42) in a virtual environment: scripts/setup.sh installs it in .venv,
which is used when run from the repository; elsewhere pass --flower-bin VENV/bin.
Writes DIR/federation/ (summary.json, stats.html, final/*.npy), DIR/sites/<site>/ (site.toml,
experiment.toml, signed audit log, round runs) and, with --compare, DIR/comparison.md
(AUROC of every model on every site's test patients with patient-level bootstrap 95 %
intervals, and paired differences), comparison.csv and comparison-scores.csv (every score).";

const SITE_EXAMPLES: &str = "Examples:
  bedside federate site --config site.toml
  bedside federate site --config site.toml --exit-after-runs 1

site.toml names the SuperLink (address, CA), the runs the site accepts ([allow] runs),
the egress filter ([egress] clip_norm, noise_multiplier, fp16) and the local trainer.
The node key (node-key.pem, mode 0600) and the audit log (audit.jsonl) live in the site
folder; with node.self_register = false, register the key first with
`flwr supernode register <folder>/node-key.pub` (OpenSSH form; the key is made on
first start, or bring a P-256 PKCS#8 PEM key of your own).";

/// Arguments of `bedside federate site`.
#[derive(Args, Debug)]
pub struct SiteArgs {
    /// Site configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Leave after this many runs finished (overrides node.exit_after_runs).
    #[arg(long)]
    pub exit_after_runs: Option<u32>,
}

/// Arguments of `bedside federate verify-audit`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Site configuration (TOML) whose folder holds the log and key.
    #[arg(long)]
    pub config: PathBuf,
}

/// Runs a `federate` subcommand.
pub fn run(cmd: FederateCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        FederateCommand::Site(args) => site(args),
        FederateCommand::VerifyAudit(args) => verify(args),
        FederateCommand::Simulate(args) => simulate::run(args, ctx),
    }
}

fn site(args: SiteArgs) -> anyhow::Result<()> {
    let mut cfg = SiteConfig::load(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    if let Some(n) = args.exit_after_runs {
        cfg.node.exit_after_runs = n;
    }
    let trainer: Box<dyn Trainer> = match cfg.trainer.kind.as_str() {
        "video" => Box::new(
            video::VideoTrainer::new(&cfg.trainer.experiment, &cfg.folder)?
                .with_site_statistics(cfg.trainer.site_statistics),
        ),
        _ => Box::new(LinearTrainer::from_csv(&cfg.trainer.data)?),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut agent = Agent::new(cfg.clone(), trainer, stop)?;
    // Operators register node-key.pub with `flwr supernode register`.
    let key = bedside_federate::auth::NodeKey::load_or_create(&cfg.folder.join("node-key.pem"))?;
    for (name, text) in [
        ("node-key.pub.pem", key.public_pem().to_string()),
        ("node-key.pub", key.public_openssh()),
    ] {
        let path = cfg.folder.join(name);
        bedside_core::fsio::write_atomic(&path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let stats = agent.run()?;
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let cfg = SiteConfig::load(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let key = bedside_federate::auth::NodeKey::load_or_create(&cfg.folder.join("node-key.pem"))?;
    let n = bedside_federate::audit::verify(&cfg.folder.join("audit.jsonl"), key.public_pem())?;
    println!("audit log intact: {n} signed entries");
    Ok(())
}
