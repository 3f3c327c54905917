//! `bedside serve`: the clinical inference service (C-STORE and STOW-RS in, Comprehensive SR
//! out to the destination PACS, REST status and results, Prometheus metrics).

use std::path::PathBuf;

use bedside_ml::backend::BackendKind;
use bedside_serve::{Model, ServeConfig};

use crate::ui::{Ctx, Exit};

/// Arguments of `bedside serve`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bedside serve --bundle bundles/reduced-ef --config examples/serve/serve.toml
  storescu -aet STORESCU -aec BEDSIDE 127.0.0.1 11112 cohort/dicom/*/*/*.dcm
  curl -s http://127.0.0.1:8042/api/v1/instances/<SOP Instance UID>/result

Each instance is acknowledged once it is on disk, routed to a bundle by the [[route]] rules,
checked (every refusal a named reason), predicted over all clips, and answered with a
Comprehensive SR kept under /dicomweb and sent to [destination]. /healthz and /metrics
(Prometheus) serve operations. Listens on the loopback interface unless configured otherwise.
Ctrl-C (or SIGTERM) stops it; unfinished work resumes at the next start.")]
pub struct Args {
    /// Bundle folder written by `bedside export` (repeat for several; routes name them).
    #[arg(long = "bundle", short = 'b', required = true)]
    pub bundles: Vec<PathBuf>,
    /// Service configuration (TOML; see examples/serve/serve.toml).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Backend (flex, or tch when compiled in).
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Device: cpu, or cuda / cuda:N with the tch backend.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let config: ServeConfig =
        bedside_core::config::load(Some(&args.config)).map_err(|e| Exit::invalid(e.to_string()))?;
    let device = BackendKind::select(&args.backend, &args.device)
        .map_err(|e| Exit::invalid(e.to_string()))?;
    let mut models = Vec::new();
    for dir in &args.bundles {
        let bundle = bedside_ml::bundle::load(dir, &device).map_err(super::train::train_error)?;
        let manifest = std::fs::read(dir.join("bundle.json"))?;
        models.push(Model::new(bundle, &manifest).map_err(|e| Exit::invalid(e.to_string()))?);
    }
    let data_dir = config.data_dir.clone();
    let running = bedside_serve::start(config, models, device).map_err(|e| match e {
        bedside_serve::ServeError::Bundle(m) => anyhow::Error::from(Exit::invalid(m)),
        other => other.into(),
    })?;
    ctx.say(format!(
        "bedside serve: DICOM on {} · HTTP on http://{} (data in {}); Ctrl-C to stop",
        running.dicom_addr,
        running.http_addr,
        data_dir.display()
    ));
    running.run_until_signal()?;
    Ok(())
}
