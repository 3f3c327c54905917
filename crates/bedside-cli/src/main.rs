//! The `bedside` command: one binary for every stage, from raw DICOM to a trusted model.
//!
//! Each subcommand lives in its own module under `commands/` and exposes `Args` (clap) and
//! `run(args, &ctx) -> anyhow::Result<()>`. Libraries return typed errors; this binary turns
//! them into reports and exit codes.

mod commands;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bedside: from raw hospital imaging to AI models that can be trusted at the bedside.
#[derive(Parser, Debug)]
#[command(
    name = "bedside",
    version,
    about = "From raw hospital imaging (echo cines, CT, MRI as DICOM) to clinical AI you can trust.",
    long_about = None,
    after_help = "Examples:\n  bedside demo                      # whole pipeline on a synthetic cohort\n  bedside synth phantom cohort/     # synthetic echo cohort as DICOM\n  bedside <command> --help          # details and examples for each command"
)]
struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors; no progress bars.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate synthetic data (a phantom echocardiography cohort as DICOM).
    #[command(subcommand)]
    Synth(commands::synth::SynthCommand),
    /// Curate DICOM: de-identify headers, remove burned-in text, metadata table, arrays.
    Curate(Box<commands::curate::Args>),
    /// Run the whole pipeline on a fresh synthetic cohort and say what it made.
    Demo(commands::demo::Args),
    /// Evaluate predictions: metrics with CIs, survival, calibration, subgroups, fairness, referral.
    Evaluate(Box<commands::evaluate::Args>),
    /// Train a video model from an experiment configuration (TOML).
    Train(commands::train::Args),
    /// Export a trained run as a self-contained model bundle.
    Export(commands::export::Args),
    /// Predict every study of a manifest with a bundle (all clips, mean and spread).
    Predict(Box<commands::predict::Args>),
    /// Annotation server: DICOMweb over a study store, and import of curated studies.
    #[command(subcommand)]
    Annotate(commands::annotate::AnnotateCommand),
    /// Clinical inference service: C-STORE/STOW-RS in, QC, prediction, DICOM SR out to the PACS.
    Serve(Box<commands::serve::Args>),
    /// Explain a model's predictions: saliency, Integrated Gradients, Grad-CAM, occlusion.
    Explain(Box<commands::explain::Args>),
    /// Benchmarks beside peer tools, as ratios (e.g. `bedside bench curate`).
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Federated learning: join a Flower federation as a site (no remote code runs).
    #[command(subcommand)]
    Federate(commands::federate::FederateCommand),
    /// Agreement between readers (kappa, ICC, Bland–Altman, Dice) and the AI against readers.
    Agreement(Box<commands::agreement::Args>),
    /// Write binary masks as a DICOM Segmentation (SEG) of a source image.
    Seg(Box<commands::seg::Args>),
}

fn main() -> ExitCode {
    bedside_core::alloc::retain_large_allocations();
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Curate(_) | Command::Bench(_) | Command::Demo(_)
    ) {
        commands::curate::limit_ocr_threads();
    }
    let ctx = ui::Ctx::init(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Synth(cmd) => commands::synth::run(cmd, &ctx),
        Command::Curate(args) => commands::curate::run(*args, &ctx),
        Command::Demo(args) => commands::demo::run(args, &ctx),
        Command::Evaluate(args) => commands::evaluate::run(*args, &ctx),
        Command::Train(args) => commands::train::run(args, &ctx),
        Command::Export(args) => commands::export::run(args, &ctx),
        Command::Predict(args) => commands::predict::run(*args, &ctx),
        Command::Annotate(cmd) => commands::annotate::run(cmd, &ctx),
        Command::Serve(args) => commands::serve::run(*args, &ctx),
        Command::Explain(args) => commands::explain::run(*args, &ctx),
        Command::Bench(cmd) => commands::bench::run(cmd, &ctx),
        Command::Federate(cmd) => commands::federate::run(cmd, &ctx),
        Command::Agreement(args) => commands::agreement::run(*args, &ctx),
        Command::Seg(args) => commands::seg::run(*args, &ctx),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => ui::report_error(&err),
    }
}
