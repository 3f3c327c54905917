//! `bedside export`: a self-contained model bundle from a run folder.

use std::path::PathBuf;

use bedside_ml::backend::BackendKind;
use bedside_ml::gate::GatePolicy;
use bedside_ml::train::config::ExperimentConfig;

use crate::ui::{Ctx, Exit};

/// Arguments of `bedside export`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bedside export --run runs/ref --out bundles/reduced-ef

Writes BUNDLE/weights.bpk (the best epoch's weights) and BUNDLE/bundle.json: task, input spec
(clip length, frame period, frame size, normalisation), output columns, intended use, training
data summary and validation metrics. The bundle alone rebuilds the model:
  bedside predict --bundle bundles/reduced-ef --manifest test.csv --out preds.csv

The \"I don't know\" gate that `bedside serve` applies can be recorded in the bundle:
  bedside export --run runs/ref --out B --refer-fraction 0.1     # chosen on the validation split
  bedside export --run runs/ref --out B --max-uncertainty 0.5    # given
--refer-fraction runs the model on the run's validation split and records, per signal
(evidential uncertainty, largest spread across clips), the value above which that fraction of
validation studies lies; --max-uncertainty and --max-clip-spread override either one.")]
pub struct Args {
    /// Run folder written by `bedside train`.
    #[arg(long, short = 'r')]
    pub run: PathBuf,
    /// Bundle folder to write.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Choose the gate's thresholds so that about this fraction of validation studies would be
    /// referred by each signal (0 < F < 1).
    #[arg(long)]
    pub refer_fraction: Option<f64>,
    /// Gate: "I don't know" above this evidential uncertainty K/S.
    #[arg(long)]
    pub max_uncertainty: Option<f64>,
    /// Gate: "I don't know" above this standard deviation across clips.
    #[arg(long)]
    pub max_clip_spread: Option<f64>,
    /// Clips per validation study when choosing thresholds (evenly spaced).
    #[arg(long, default_value_t = 4)]
    pub gate_clips: usize,
}

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let manifest =
        bedside_ml::bundle::export(&args.run, &args.out).map_err(super::train::train_error)?;
    ctx.say(format!(
        "Exported {} to {}",
        manifest.name,
        args.out.display()
    ));
    ctx.say(format!("  task      {}", manifest.task));
    let input = &manifest.model.input;
    ctx.say(format!(
        "  input     {} frames every {} at {}x{} ({} channels)",
        input.clip_length, input.period, input.size, input.size, input.channels
    ));
    ctx.say(format!("  outputs   {}", manifest.outputs.join(", ")));
    let metrics: Vec<String> = manifest
        .validation
        .metrics
        .iter()
        .filter(|(k, _)| k.starts_with("val_"))
        .map(|(k, v)| match v {
            Some(v) => format!("{k} {v:.4}"),
            None => format!("{k} n/a"),
        })
        .collect();
    ctx.say(format!(
        "  epoch {}  {}",
        manifest.validation.epoch,
        metrics.join("  ")
    ));
    if let Some(gate) = gate_policy(&args, ctx)? {
        let show = |v: Option<f64>| v.map_or_else(|| "none".to_string(), |v| format!("{v:.4}"));
        ctx.say(format!(
            "  gate      max uncertainty {}, max clip spread {} ({})",
            show(gate.max_uncertainty),
            show(gate.max_clip_spread),
            gate.chosen_by
        ));
        bedside_ml::gate::record(&args.out, gate).map_err(super::train::train_error)?;
    }
    Ok(())
}

/// The gate the flags ask for (none when no gate flag is given).
fn gate_policy(args: &Args, ctx: &Ctx) -> anyhow::Result<Option<GatePolicy>> {
    for (flag, value) in [
        ("--max-uncertainty", args.max_uncertainty),
        ("--max-clip-spread", args.max_clip_spread),
    ] {
        if let Some(v) = value
            && !(v.is_finite() && v > 0.0)
        {
            return Err(Exit::invalid(format!("{flag} must be a positive number, got {v}")).into());
        }
    }
    let mut gate = match args.refer_fraction {
        Some(fraction) => {
            let config_path = args.run.join("config.toml");
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", config_path.display()))?;
            let config: ExperimentConfig =
                bedside_core::config::from_str(&text, &config_path.display().to_string())
                    .map_err(|e| Exit::invalid(e.to_string()))?;
            // Thresholds do not depend on the backend; the CPU default runs everywhere.
            let device =
                BackendKind::select("flex", "cpu").map_err(|e| Exit::invalid(e.to_string()))?;
            let bundle =
                bedside_ml::bundle::load(&args.out, &device).map_err(super::train::train_error)?;
            let bar = ctx.progress(0, "gate");
            let scratch = args.out.join(".gate-validation.csv");
            let gate = bedside_ml::gate::from_validation(
                &bundle,
                &config,
                fraction,
                Some(args.gate_clips.max(1)),
                &scratch,
                &device,
                &mut |done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                },
            )
            .map_err(super::train::train_error)?;
            bar.finish_and_clear();
            gate
        }
        None if args.max_uncertainty.is_none() && args.max_clip_spread.is_none() => {
            return Ok(None);
        }
        None => GatePolicy {
            max_uncertainty: None,
            max_clip_spread: None,
            chosen_by: "given at export".into(),
        },
    };
    if let Some(v) = args.max_uncertainty {
        gate.max_uncertainty = Some(v);
        gate.chosen_by = format!("{}; max uncertainty given at export", gate.chosen_by);
    }
    if let Some(v) = args.max_clip_spread {
        gate.max_clip_spread = Some(v);
        gate.chosen_by = format!("{}; max clip spread given at export", gate.chosen_by);
    }
    Ok(Some(gate))
}
