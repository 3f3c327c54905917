//! The site agent without the rest of the `bedside` binary (no burn to build), for
//! protocol work and the Flower tests: `site federate site --config site.toml
//! [--exit-after-runs N]`, the same arguments as `bedside federate site`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bedside_federate::agent::Agent;
use bedside_federate::config::SiteConfig;
use bedside_federate::trainer::LinearTrainer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = None;
    let mut exit_after = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "federate" | "site" => {}
            "--config" => {
                config = args.get(i + 1).map(PathBuf::from);
                i += 1;
            }
            "--exit-after-runs" => {
                exit_after = args.get(i + 1).and_then(|v| v.parse().ok());
                i += 1;
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
        i += 1;
    }
    let path = config.ok_or("--config is required")?;
    let mut cfg = SiteConfig::load(&path)?;
    if let Some(n) = exit_after {
        cfg.node.exit_after_runs = n;
    }
    let trainer = Box::new(LinearTrainer::from_csv(&cfg.trainer.data)?);
    let mut agent = Agent::new(cfg.clone(), trainer, Arc::new(AtomicBool::new(false)))?;
    bedside_core::fsio::write_atomic(
        &cfg.folder.join("node-key.pub.pem"),
        &agent.client().public_key(),
    )?;
    let stats = agent.run()?;
    println!("{}", serde_json::to_string(&stats)?);
    Ok(())
}
