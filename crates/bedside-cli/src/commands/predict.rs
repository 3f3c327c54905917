//! `bedside predict`: per-study predictions of a bundle over every clip (EchoNet protocol).

use std::path::PathBuf;
use std::time::Instant;

use bedside_ml::backend::BackendKind;
use bedside_ml::predict::{PredictOptions, predict};

use crate::ui::{Ctx, Exit};

/// Arguments of `bedside predict`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bedside predict --bundle bundles/reduced-ef --manifest manifest.csv --split test \\
      --keep reduced_ef --keep sex --out preds.csv
  # curate's metadata table joined with a label sheet on a shared column
  bedside predict --bundle B --manifest curated/metadata.csv --labels labels.csv \\
      --join-key input_sha256 --study study_key --out preds.csv
  bedside evaluate preds.csv --id study_id --score prob_1 --label reduced_ef --uncertainty prob_1_std

Every clip of every array of a study is run; the table holds the mean of each output column
and its standard deviation across clips (<column>_std).")]
pub struct Args {
    /// Bundle folder written by `bedside export`.
    #[arg(long, short = 'b')]
    pub bundle: PathBuf,
    /// Manifest CSV (array index when --labels is given).
    #[arg(long, short = 'm')]
    pub manifest: PathBuf,
    /// Label table joined to the manifest on --join-key.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Column present in both tables (default: the --study column).
    #[arg(long)]
    pub join_key: Option<String>,
    /// Study identifier column; rows sharing it are pooled (default: the column the bundle was
    /// trained with, else `study_id`).
    #[arg(long)]
    pub study: Option<String>,
    /// Array path column.
    #[arg(long, default_value = "array")]
    pub array: String,
    /// Only rows of this split.
    #[arg(long)]
    pub split: Option<String>,
    /// Split column (with --split).
    #[arg(long, default_value = "split")]
    pub split_column: String,
    /// Manifest column copied into the predictions (repeat).
    #[arg(long)]
    pub keep: Vec<String>,
    /// At most this many clips per array, evenly spaced (default: every clip).
    #[arg(long)]
    pub max_clips: Option<usize>,
    /// Clips per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Loader threads.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Backend (flex, or tch when compiled in).
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Device: cpu, or cuda / cuda:N with the tch backend.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output CSV.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let start = Instant::now();
    let device = BackendKind::select(&args.backend, &args.device)
        .map_err(|e| Exit::invalid(e.to_string()))?;
    let bundle =
        bedside_ml::bundle::load(&args.bundle, &device).map_err(super::train::train_error)?;
    let options = PredictOptions {
        study_column: args
            .study
            .clone()
            .or_else(|| bundle.manifest.training_data.study_column.clone())
            .unwrap_or_else(|| "study_id".into()),
        array_column: args.array.clone(),
        split: args.split.clone().map(|s| (args.split_column.clone(), s)),
        labels: args.labels.clone(),
        join_key: args.join_key.clone(),
        keep: args.keep.clone(),
        batch_size: args.batch_size,
        workers: args.workers,
        max_clips: args.max_clips,
    };
    let bar = ctx.progress(0, "predict");
    let summary = predict(
        &bundle,
        &args.manifest,
        &options,
        &args.out,
        &device,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )
    .map_err(super::train::train_error)?;
    bar.finish_and_clear();
    ctx.say(format!(
        "Predicted {} studies ({} clips) with {} in {:.1} s -> {}",
        summary.studies,
        summary.clips,
        bundle.manifest.name,
        start.elapsed().as_secs_f64(),
        args.out.display()
    ));
    ctx.say(format!(
        "  columns: {} (each with _std across clips)",
        summary.outputs.join(", ")
    ));
    Ok(())
}
