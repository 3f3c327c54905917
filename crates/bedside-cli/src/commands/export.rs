//! `bedside export`: a self-contained model bundle from a run folder.

use std::path::PathBuf;

use crate::ui::Ctx;

/// Arguments of `bedside export`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bedside export --run runs/ref --out bundles/reduced-ef

Writes BUNDLE/weights.bpk (the best epoch's weights) and BUNDLE/bundle.json: task, input spec
(clip length, frame period, frame size, normalisation), output columns, intended use, training
data summary and validation metrics. The bundle alone rebuilds the model:
  bedside predict --bundle bundles/reduced-ef --manifest test.csv --out preds.csv")]
pub struct Args {
    /// Run folder written by `bedside train`.
    #[arg(long, short = 'r')]
    pub run: PathBuf,
    /// Bundle folder to write.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
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
    Ok(())
}
