//! `bedside synth`: synthetic data generators.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

use bedside_phantom::{BiasSpec, PhantomConfig};

use crate::ui::{Ctx, Exit};

/// Synthetic data generators.
#[derive(Subcommand, Debug)]
pub enum SynthCommand {
    /// Generate a synthetic echocardiography cohort as real DICOM with known ground truth.
    #[command(after_help = PHANTOM_EXAMPLES)]
    Phantom(PhantomArgs),
}

const PHANTOM_EXAMPLES: &str = "Examples:
  bedside synth phantom cohort/
  bedside synth phantom cohort/ --patients 50 --sites 4 --seed 7
  bedside synth phantom cohort/ --bias sex=F:0.3 --bias site=2:0.1
  bedside synth phantom cohort/ --config examples/phantom/small.toml --force

Writes dicom/ (one US multi-frame cine per study), patients.csv, studies.csv, phi.json,
truth/ (per-frame LV ellipses and masks) and cohort.json. Flags override the config file;
BEDSIDE__<KEY>=value environment variables override both defaults and file, e.g.
BEDSIDE__ROWS=240.";

/// Arguments of `bedside synth phantom`.
#[derive(Args, Debug)]
pub struct PhantomArgs {
    /// Output folder (created; must be empty unless --force).
    pub out: PathBuf,
    /// TOML configuration (see examples/phantom/); flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Number of patients [default: 200].
    #[arg(long)]
    pub patients: Option<usize>,
    /// Number of sites, each with its own vendor and image appearance [default: 3].
    #[arg(long)]
    pub sites: Option<usize>,
    /// Seed: the same seed and settings give byte-identical output [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Image rows [default: 480].
    #[arg(long)]
    pub rows: Option<usize>,
    /// Image columns [default: 640].
    #[arg(long)]
    pub columns: Option<usize>,
    /// Frames per cine as MIN:MAX [default: 32:64].
    #[arg(long, value_parser = parse_range)]
    pub frames: Option<(usize, usize)>,
    /// Share of studies with a burned-in text item inside the scan sector [default: 0.2].
    #[arg(long)]
    pub in_sector_text: Option<f64>,
    /// Label noise in a subgroup, COLUMN=VALUE:NOISE (columns: sex, ethnicity, income, site,
    /// age_band); repeatable.
    #[arg(long, value_parser = BiasSpec::parse)]
    pub bias: Vec<BiasSpec>,
    /// Skip writing per-frame LV masks (truth/masks).
    #[arg(long)]
    pub no_masks: bool,
    /// Replace a previous cohort in the output folder.
    #[arg(long)]
    pub force: bool,
}

fn parse_range(text: &str) -> Result<(usize, usize), String> {
    let (a, b) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: expected MIN:MAX, e.g. 32:64"))?;
    let a: usize = a
        .trim()
        .parse()
        .map_err(|_| format!("`{a}` is not a whole number"))?;
    let b: usize = b
        .trim()
        .parse()
        .map_err(|_| format!("`{b}` is not a whole number"))?;
    Ok((a, b))
}

impl PhantomArgs {
    /// Resolves the configuration: defaults, file, environment, then flags.
    pub fn resolve(&self) -> anyhow::Result<PhantomConfig> {
        let mut c: PhantomConfig = bedside_core::config::load(self.config.as_deref())?;
        if let Some(v) = self.patients {
            c.patients = v;
        }
        if let Some(v) = self.sites {
            c.sites = v;
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        if let Some(v) = self.rows {
            c.rows = v;
        }
        if let Some(v) = self.columns {
            c.columns = v;
        }
        if let Some((a, b)) = self.frames {
            c.frames = [a, b];
        }
        if let Some(v) = self.in_sector_text {
            c.in_sector_text_fraction = v;
        }
        if !self.bias.is_empty() {
            c.bias = self.bias.clone();
        }
        if self.no_masks {
            c.write_masks = false;
        }
        use bedside_core::config::Validate;
        c.validate().map_err(|(key, message)| {
            Exit::invalid(format!("invalid setting `{key}`: {message}"))
        })?;
        Ok(c)
    }
}

/// Runs a `synth` subcommand.
pub fn run(cmd: SynthCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        SynthCommand::Phantom(args) => {
            let config = args.resolve()?;
            let summary = phantom(&config, &args.out, args.force, ctx)?;
            print_summary(&summary, ctx);
            Ok(())
        }
    }
}

/// Generates a phantom cohort with a progress bar.
pub fn phantom(
    config: &PhantomConfig,
    out: &std::path::Path,
    force: bool,
    ctx: &Ctx,
) -> anyhow::Result<bedside_phantom::Summary> {
    let start = Instant::now();
    let planned = bedside_phantom::cohort::plan(config).study_count();
    let bar = ctx.progress(planned as u64, "phantom");
    bar.set_message("studies");
    let result = bedside_phantom::generate(config, out, force, &|| bar.inc(1));
    bar.finish_and_clear();
    let summary = match result {
        Err(e @ bedside_phantom::PhantomError::OutputExists { .. }) => {
            return Err(Exit::invalid(e.to_string()).into());
        }
        other => {
            other.with_context(|| format!("generating the phantom cohort in {}", out.display()))?
        }
    };
    tracing::info!(
        seconds = start.elapsed().as_secs_f64(),
        "phantom cohort written"
    );
    ctx.say(format!(
        "Phantom cohort written to {} in {:.1} s",
        out.display(),
        start.elapsed().as_secs_f64()
    ));
    Ok(summary)
}

/// Prints the one-screen summary of a phantom cohort.
pub fn print_summary(s: &bedside_phantom::Summary, ctx: &Ctx) {
    ctx.say(format!(
        "  patients {:>6}   (train {} / val {} / test {})",
        s.patients, s.split[0], s.split[1], s.split[2]
    ));
    ctx.say(format!(
        "  studies  {:>6}   ({} RGB, {} JPEG baseline, {:.1} MB of DICOM)",
        s.studies,
        s.rgb,
        s.jpeg,
        s.dicom_bytes as f64 / 1e6
    ));
    ctx.say(format!(
        "  reduced EF {:>4}   events {} ; labels flipped by --bias: {}",
        s.reduced_ef, s.events, s.flipped_labels
    ));
    ctx.say(format!(
        "  planted PHI: {} header values, {} burned-in boxes ({} studies with text in the sector)",
        s.header_phi, s.pixel_phi, s.in_sector_text
    ));
    ctx.say(format!(
        "  ground truth: {0}/patients.csv {0}/studies.csv {0}/phi.json {0}/truth/",
        s.out.display()
    ));
}
