//! `bedside demo`: the whole pipeline on a fresh synthetic cohort.

use std::path::PathBuf;
use std::time::Instant;

use bedside_phantom::PhantomConfig;

use crate::ui::Ctx;

/// Arguments of `bedside demo`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bedside demo                     # writes ./bedside-demo
  bedside demo /tmp/demo --force   # replace a previous demo there
  bedside demo --patients 200      # the full-size cohort (slower)

Stages run now: synth (phantom cohort). Each later stage (curate, train, evaluate, explain)
joins the demo as it lands.")]
pub struct Args {
    /// Working folder for everything the demo makes.
    #[arg(default_value = "bedside-demo")]
    pub dir: PathBuf,
    /// Patients in the phantom cohort (the demo keeps images small to stay within minutes).
    #[arg(long, default_value_t = 120)]
    pub patients: usize,
    /// Seed of the phantom cohort.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Replace a previous demo in the folder.
    #[arg(long)]
    pub force: bool,
}

/// Runs the demo.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let start = Instant::now();
    ctx.say(format!("Bedside demo in {}", args.dir.display()));
    ctx.say("[1/1] synth: phantom echocardiography cohort");
    let config = PhantomConfig {
        seed: args.seed,
        patients: args.patients,
        rows: 240,
        columns: 320,
        ..PhantomConfig::default()
    };
    let cohort_dir = args.dir.join("cohort");
    let summary = super::synth::phantom(&config, &cohort_dir, args.force, ctx)?;
    super::synth::print_summary(&summary, ctx);
    ctx.say("");
    ctx.say(format!(
        "Demo finished in {:.1} s. What it made:",
        start.elapsed().as_secs_f64()
    ));
    ctx.say(format!(
        "  {}  synthetic cohort (DICOM + ground truth)",
        cohort_dir.display()
    ));
    Ok(())
}
