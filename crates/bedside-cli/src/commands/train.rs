//! `bedside train`: config-driven training of a video model (see `bedside_ml::train`).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bedside_ml::train::config::ExperimentConfig;
use bedside_ml::train::{TrainError, TrainEvent, train};

use crate::ui::{Ctx, Exit};

/// Arguments of `bedside train`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bedside train --config examples/train/reduced-ef.toml --run runs/ref
  bedside train --config exp.toml --run runs/ref --resume      # continue after a crash
  bedside train --config exp.toml --run runs/b --seed 7 --epochs 20
  BEDSIDE__OPTIMIZER__LR=3e-4 bedside train --config exp.toml --run runs/c

The run folder gets config.toml (resolved), metrics.csv (one row per epoch), checkpoint/
(last epoch, written atomically), best/model.bpk and data.json. Relative paths in the
configuration resolve against its folder. Then: bedside export --run RUN --out BUNDLE.")]
pub struct Args {
    /// Experiment configuration (TOML).
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Run folder (created; must not hold a run unless --resume).
    #[arg(long, short = 'r')]
    pub run: PathBuf,
    /// Continue the run in --run from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Override `seed`.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override `training.epochs`.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override `data.workers` (loader threads).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Load the configuration with the flags as the last layer.
pub fn load_config(args: &Args) -> anyhow::Result<ExperimentConfig> {
    let mut config: ExperimentConfig = bedside_core::config::load(Some(&args.config))?;
    overrides_and_checks(&mut config, args)?;
    Ok(config)
}

/// Loads an experiment file as `bedside train --config FILE` would, with no overrides.
pub fn load_config_file(path: &Path) -> anyhow::Result<ExperimentConfig> {
    load_config(&Args {
        config: path.to_path_buf(),
        run: PathBuf::new(),
        resume: false,
        seed: None,
        epochs: None,
        workers: None,
    })
}

fn overrides_and_checks(config: &mut ExperimentConfig, args: &Args) -> anyhow::Result<()> {
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(epochs) = args.epochs {
        config.training.epochs = epochs;
    }
    if let Some(workers) = args.workers {
        config.data.workers = workers;
    }
    bedside_core::config::Validate::validate(&*config).map_err(|(key, message)| {
        Exit::invalid(format!("{}: key `{key}`: {message}", args.config.display()))
    })?;
    let base = args.config.parent().unwrap_or(Path::new("."));
    config.resolve_paths(base);
    Ok(())
}

/// Map a training error to the CLI's exit codes.
pub fn train_error(e: TrainError) -> anyhow::Error {
    if e.is_invalid_input() {
        Exit::invalid(e.to_string()).into()
    } else {
        e.into()
    }
}

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let start = Instant::now();
    ctx.say(format!(
        "Training {} ({} x{} {:?}, task {:?}) in {}",
        config.name,
        config.model.backbone,
        config.model.width,
        config.model.layers,
        config.task.kind,
        args.run.display()
    ));
    let mut bar = None;
    let mut train_batches = 0u64;
    let mut epochs = 0usize;
    let outcome = train(&config, &args.run, args.resume, &mut |event| {
        match event {
            TrainEvent::Prepared {
                summary,
                start_epoch,
                epochs: total,
                train_batches: tb,
                ..
            } => {
                for (name, split) in &summary.splits {
                    ctx.say(format!("  split {name:<8} {:>6} studies", split.studies));
                }
                if start_epoch > 0 {
                    ctx.say(format!("  resuming after epoch {start_epoch}"));
                }
                train_batches = tb as u64;
                epochs = total;
            }
            TrainEvent::Batch { epoch, batch, loss } => {
                let b = bar.get_or_insert_with(|| {
                    ctx.progress(train_batches, &format!("epoch {epoch}/{epochs}"))
                });
                b.set_position(batch as u64);
                b.set_message(format!("loss {loss:.4}"));
            }
            TrainEvent::Validating { epoch } => {
                if let Some(b) = &bar {
                    b.set_message(format!("validating epoch {epoch}"));
                }
            }
            TrainEvent::EpochEnd { row, improved } => {
                if let Some(b) = bar.take() {
                    b.finish_and_clear();
                }
                let values: Vec<String> = row
                    .values
                    .iter()
                    .map(|(n, v)| format!("{n} {v:.4}"))
                    .collect();
                ctx.say(format!(
                    "  epoch {:>3}  {}{}",
                    row.epoch,
                    values.join("  "),
                    if improved { "  *" } else { "" }
                ));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    })
    .map_err(train_error)?;
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
    let secs = start.elapsed().as_secs_f64();
    ctx.say(format!(
        "Trained {} epoch(s) in {secs:.1} s{}",
        outcome.epochs_done,
        if outcome.stopped_early {
            " (early stopping)"
        } else {
            ""
        }
    ));
    if let Some((epoch, value)) = outcome.best {
        ctx.say(format!(
            "  best epoch {epoch}: {} = {value:.4}  ->  {}",
            outcome.metric,
            args.run.join("best").join("model.bpk").display()
        ));
    }
    ctx.say(format!(
        "  metrics: {}",
        args.run.join("metrics.csv").display()
    ));
    ctx.say(format!(
        "  next: bedside export --run {} --out BUNDLE",
        args.run.display()
    ));
    Ok(())
}
