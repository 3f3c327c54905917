//! The `video` site trainer: `bedside train`'s models and training loop on the site's
//! curated arrays, one fresh run folder per round under `<site folder>/rounds/`.

use std::ops::ControlFlow;
use std::path::PathBuf;

use bedside_federate::FederateError;
use bedside_federate::npy::Tensor;
use bedside_federate::trainer::{Statistics, TrainConfig, TrainOutput, Trainer};
use bedside_ml::data::clips::Normalization;
use bedside_ml::data::loader::MODEL_CHANNELS;
use bedside_ml::data::quality::{Histogram, site_statistics};
use bedside_ml::train::arrays::{NamedArray, StartFrom};
use bedside_ml::train::config::ExperimentConfig;

/// Trains the experiment's model from the global arrays for the instruction's local epochs.
pub struct VideoTrainer {
    experiment: ExperimentConfig,
    folder: PathBuf,
    rounds: PathBuf,
    /// The federation's normalisation of the last instruction, used by `evaluate` too.
    normalization: Option<Normalization>,
    /// Evaluate with BatchNorm statistics re-estimated on this site's training split.
    site_statistics: bool,
}

impl VideoTrainer {
    /// Loads the experiment configuration (checked as `bedside train` checks it).
    pub fn new(experiment: &std::path::Path, folder: &std::path::Path) -> anyhow::Result<Self> {
        let config = crate::commands::train::load_config_file(experiment)?;
        Ok(VideoTrainer {
            experiment: config,
            folder: folder.to_path_buf(),
            rounds: folder.join("rounds"),
            normalization: None,
            site_statistics: false,
        })
    }

    /// Answer `evaluate` with [`Self::site_statistics`] of the global model.
    pub fn with_site_statistics(mut self, on: bool) -> Self {
        self.site_statistics = on;
        self
    }

    /// `global` with its BatchNorm running statistics re-estimated on this site's training
    /// split: one epoch of forward passes in training mode, no optimiser step, in
    /// `<folder>/site-statistics/`. Each site's layers were trained on batches of that site
    /// alone, so the federation's averaged statistics fit none of them; the site's own do.
    pub fn site_statistics(
        &self,
        global: &[NamedArray],
        normalization: Option<Normalization>,
    ) -> anyhow::Result<Vec<NamedArray>> {
        let mut exp = self.experiment.clone();
        exp.training.epochs = 1;
        exp.training.early_stopping.patience = None;
        let run = self.folder.join("site-statistics");
        if run.exists() {
            std::fs::remove_dir_all(&run)?;
        }
        let start = StartFrom {
            arrays: Some(global.to_vec()),
            normalization,
            statistics_only: true,
            ..StartFrom::default()
        };
        bedside_ml::train::train_with(
            &exp,
            &run,
            false,
            &start,
            &mut |_| ControlFlow::Continue(()),
        )
        .map_err(crate::commands::train::train_error)?;
        let (arrays, _) = bedside_ml::train::run_arrays(&run, false)
            .map_err(crate::commands::train::train_error)?;
        Ok(arrays)
    }
}

fn data_error(e: impl std::fmt::Display) -> FederateError {
    FederateError::Data(e.to_string())
}

fn to_named(global: &[(String, Tensor)]) -> Vec<NamedArray> {
    global
        .iter()
        .map(|(name, t)| NamedArray {
            name: name.clone(),
            shape: t.shape.clone(),
            data: t.data.clone(),
        })
        .collect()
}

fn from_named(arrays: Vec<NamedArray>) -> Vec<(String, Tensor)> {
    arrays
        .into_iter()
        .map(|a| {
            (
                a.name,
                Tensor {
                    shape: a.shape,
                    data: a.data,
                },
            )
        })
        .collect()
}

fn normalization(mean_sd: (f64, f64)) -> Normalization {
    Normalization {
        mean: vec![mean_sd.0; MODEL_CHANNELS],
        std: vec![mean_sd.1; MODEL_CHANNELS],
    }
}

impl Trainer for VideoTrainer {
    fn train(
        &mut self,
        global: &[(String, Tensor)],
        config: &TrainConfig,
    ) -> Result<TrainOutput, FederateError> {
        let mut exp = self.experiment.clone();
        exp.training.epochs = config.local_epochs.max(1) as usize;
        exp.training.early_stopping.patience = None;
        if let Some(lr) = config.lr {
            exp.optimizer.lr = lr;
        }
        // A different shuffle and augmentation stream every round.
        exp.seed = exp.seed.wrapping_add(config.server_round);
        self.normalization = config.normalization.map(normalization);
        let run = self
            .rounds
            .join(format!("round-{:04}", config.server_round));
        // A restarted agent redoes the round it was killed in.
        if run.exists() {
            std::fs::remove_dir_all(&run).map_err(data_error)?;
        }
        // Round 1 of a run without an initial model: every site initialises from the
        // experiment's seed (not the round's), so all start from the same weights.
        let (initial, base) = if global.is_empty() {
            let initial =
                bedside_ml::train::initial_arrays(&self.experiment).map_err(data_error)?;
            let base = from_named(initial.clone());
            (initial, Some(base))
        } else {
            (to_named(global), None)
        };
        let start = StartFrom {
            arrays: Some(initial),
            normalization: self.normalization.clone(),
            proximal_mu: config.proximal_mu,
            statistics_only: false,
        };
        let outcome = bedside_ml::train::train_with(&exp, &run, false, &start, &mut |_| {
            ControlFlow::Continue(())
        })
        .map_err(data_error)?;
        let (arrays, _) = bedside_ml::train::run_arrays(&run, false).map_err(data_error)?;
        let state = bedside_ml::train::load_run_state(&run).map_err(data_error)?;
        let examples = state
            .data
            .splits
            .get(&exp.data.train_split)
            .map_or(0, |s| s.studies as u64);
        let metrics = outcome
            .last
            .map(|row| {
                row.values
                    .into_iter()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(k, v)| (k.replace('_', "-"), v))
                    .collect()
            })
            .unwrap_or_default();
        Ok(TrainOutput {
            arrays: from_named(arrays),
            num_examples: examples,
            metrics,
            base,
        })
    }

    fn evaluate(
        &mut self,
        global: &[(String, Tensor)],
    ) -> Result<(u64, Vec<(String, f64)>), FederateError> {
        let mut arrays = to_named(global);
        if self.site_statistics {
            arrays = self
                .site_statistics(&arrays, self.normalization.clone())
                .map_err(data_error)?;
        }
        let evaluation = bedside_ml::train::evaluate_arrays(
            &self.experiment,
            &arrays,
            self.normalization.as_ref(),
        )
        .map_err(data_error)?;
        Ok((
            evaluation.len() as u64,
            evaluation
                .metrics
                .into_iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(k, v)| (format!("eval-{}", k.replace('_', "-")), v))
                .collect(),
        ))
    }

    fn statistics(&mut self) -> Result<Statistics, FederateError> {
        let s = site_statistics(&self.experiment).map_err(data_error)?;
        let mut values: Vec<(String, Vec<f64>)> = vec![
            ("failures".into(), vec![s.failures as f64]),
            ("unlabelled".into(), vec![s.unlabelled as f64]),
        ];
        for (split, n) in &s.splits {
            values.push((format!("split.{split}"), vec![*n as f64]));
        }
        for (column, n) in &s.missing {
            values.push((format!("missing.{column}"), vec![*n as f64]));
        }
        for (class, p) in &s.prevalence {
            values.push((format!("prevalence.{class}"), vec![*p]));
        }
        let mut histogram = |name: &str, h: &Histogram| {
            values.push((
                format!("{name}.counts"),
                h.counts.iter().map(|&c| c as f64).collect(),
            ));
            values.push((format!("{name}.edges"), h.edges.clone()));
            values.push((format!("{name}.n"), vec![h.n as f64]));
            if h.n > 0 {
                values.push((format!("{name}.mean"), vec![h.mean]));
                values.push((format!("{name}.sd"), vec![h.sd]));
            }
        };
        histogram("frame_rate", &s.frame_rate);
        histogram("rows", &s.rows);
        histogram("columns", &s.columns);
        histogram("intensity", &s.intensity);
        Ok(Statistics {
            count: s.count,
            values,
        })
    }
}
