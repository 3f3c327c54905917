//! Test-time prediction with a bundle (`bedside predict`), following EchoNet-Dynamic: every
//! clip of every array of a study is run, the per-clip predictions are averaged, and their
//! standard deviation across clips is kept beside each column as an uncertainty signal.
//!
//! The table has one row per study: the study column, any kept manifest columns, `clips`, the
//! bundle's output columns (class probabilities and evidential uncertainty `K/S`, the value,
//! or the risk score and the survival curve `surv@<t>`) and `<column>_std` for each. It is the
//! input format of `bedside evaluate` (pick the columns with `--score`, `--predicted`,
//! `--risk`, `--survival-prefix surv@`, `--uncertainty`).

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

use crate::bundle::Bundle;
use crate::data::clips::{ClipSamplerConfig, RandPipeline};
use crate::data::loader::{
    ClipJob, ClipMaker, ClipStart, LoaderError, Table, VideoStore, load_table, npy_shape,
    run_batches,
};
use crate::data::manifest::{Manifest, ManifestColumns};
use crate::train::TrainError;
use crate::train::model::ModelSpec;

/// Which manifest columns to read and how to run.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictOptions {
    /// Study identifier column (rows sharing it are pooled into one prediction).
    pub study_column: String,
    /// Array path column.
    pub array_column: String,
    /// Split column and the split to predict (absent: every row).
    pub split: Option<(String, String)>,
    /// Label table joined to the manifest on `join_key`.
    pub labels: Option<PathBuf>,
    /// Join column (default: the study column).
    pub join_key: Option<String>,
    /// Manifest columns copied into the predictions (labels, groups, patient id).
    pub keep: Vec<String>,
    /// Clips per forward pass.
    pub batch_size: usize,
    /// Loader threads.
    pub workers: usize,
    /// At most this many clips per array, evenly spaced over the valid starts (absent: all).
    pub max_clips: Option<usize>,
}

impl Default for PredictOptions {
    fn default() -> Self {
        Self {
            study_column: "study_id".into(),
            array_column: "array".into(),
            split: None,
            labels: None,
            join_key: None,
            keep: Vec::new(),
            batch_size: 8,
            workers: 1,
            max_clips: None,
        }
    }
}

/// What was predicted.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictSummary {
    /// Studies (rows of the output).
    pub studies: usize,
    /// Clips run.
    pub clips: usize,
    /// Output columns (without the `_std` companions).
    pub outputs: Vec<String>,
}

/// Where a bundle's studies come from.
#[derive(Debug, Clone, Copy)]
pub struct ManifestSource<'a> {
    /// Manifest (CSV or Parquet; an array index when `labels` is given).
    pub manifest: &'a Path,
    /// Label table joined to the manifest on `join_key`.
    pub labels: Option<&'a Path>,
    /// Join column (default: the study column).
    pub join_key: Option<&'a str>,
    /// Study identifier column.
    pub study_column: &'a str,
    /// Array path column.
    pub array_column: &'a str,
    /// Split column, when rows are filtered by split.
    pub split_column: Option<&'a str>,
}

/// The table and the parsed manifest as a bundle reads them: with its tabular covariates, and
/// switched to the resized copies it was trained on (`InputSpec::resized_copy`).
pub fn load_for_bundle(
    spec: &ModelSpec,
    source: &ManifestSource<'_>,
) -> Result<(Table, Manifest), LoaderError> {
    let key = source.join_key.unwrap_or(source.study_column);
    let table = load_table(source.manifest, source.labels, key)?;
    let columns = ManifestColumns {
        study: source.study_column.to_string(),
        array: source.array_column.to_string(),
        // Without a split filter any column will do: the study column is always there.
        split: source
            .split_column
            .unwrap_or(source.study_column)
            .to_string(),
        covariates: spec.tabular.iter().map(|c| c.name.clone()).collect(),
        ..ManifestColumns::default()
    };
    let mut parsed = table.manifest(columns)?;
    if let Some(size) = spec.input.resized_copy {
        parsed.use_resized_copies(&table.origin, size)?;
    }
    Ok((table, parsed))
}

/// Predict every study of `manifest` with `bundle` and write the table to `out` (CSV).
/// `progress(done, total)` is called after each batch of clips.
pub fn predict(
    bundle: &Bundle,
    manifest: &Path,
    options: &PredictOptions,
    out: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PredictSummary, TrainError> {
    if options.batch_size == 0 {
        return Err(TrainError::invalid("the batch size must be at least 1"));
    }
    let spec = &bundle.manifest.model;
    let (table, parsed) = load_for_bundle(
        spec,
        &ManifestSource {
            manifest,
            labels: options.labels.as_deref(),
            join_key: options.join_key.as_deref(),
            study_column: &options.study_column,
            array_column: &options.array_column,
            split_column: options.split.as_ref().map(|(c, _)| c.as_str()),
        },
    )?;
    for name in &options.keep {
        if !table.header.contains(name) {
            return Err(
                LoaderError::from(crate::data::manifest::ManifestError::MissingColumn {
                    path: table.origin.clone(),
                    column: name.clone(),
                    available: table.header.join(", "),
                })
                .into(),
            );
        }
    }
    let rows: Vec<usize> = (0..parsed.studies.len())
        .filter(|&i| {
            options
                .split
                .as_ref()
                .is_none_or(|(_, s)| &parsed.studies[i].split == s)
        })
        .collect();
    if rows.is_empty() {
        return Err(TrainError::invalid(format!(
            "no rows to predict in {}",
            table.origin.display()
        )));
    }
    let sampler = ClipSamplerConfig::new()
        .with_length(spec.input.clip_length)
        .with_period(spec.input.period)
        .init()?;
    // Every clip start of every array, from the array headers (no pixels read yet).
    let mut jobs = Vec::new();
    for &i in &rows {
        let path = &parsed.studies[i].array;
        let shape = npy_shape(path).map_err(|message| LoaderError::Array {
            row: i + 1,
            path: path.clone(),
            message,
        })?;
        let frames = shape.first().copied().unwrap_or(0);
        let chosen = sampler.spaced_starts(frames, options.max_clips);
        jobs.extend(chosen.into_iter().map(|s| ClipJob {
            study: i,
            start: ClipStart::At(s),
            augment: false,
        }));
    }
    let store = VideoStore::new(
        parsed.studies.iter().map(|s| s.array.clone()).collect(),
        spec.input.size,
        false,
    );
    let pipeline = RandPipeline::new(0, Vec::new());
    let maker = ClipMaker {
        store: &store,
        sampler,
        pipeline: &pipeline,
        normalization: &spec.input.normalization,
        seed: 0,
        epoch: 0,
    };
    let plan: Vec<Vec<ClipJob>> = jobs.chunks(options.batch_size).map(<[_]>::to_vec).collect();
    let dim = spec.task.output_dim();
    let names = spec.task.output_names();
    // Per study: clip count, sums and sums of squares of each output column.
    let studies = &parsed.studies;
    let mut acc: BTreeMap<String, (usize, Vec<f64>, Vec<f64>)> = BTreeMap::new();
    let mut done = 0;
    let total = jobs.len();
    let _ = run_batches(
        &maker,
        &plan,
        options.workers,
        4,
        |_, batch| -> Result<ControlFlow<()>, TrainError> {
            let ids: Vec<usize> = batch.jobs.iter().map(|j| j.study).collect();
            let x = Tensor::<5>::from_data(TensorData::new(batch.data, batch.shape), device);
            let tabular = (!spec.tabular.is_empty()).then(|| {
                let data: Vec<f32> = ids
                    .iter()
                    .flat_map(|&i| {
                        spec.tabular.iter().enumerate().map(move |(c, col)| {
                            ((studies[i].covariates[c] - col.mean) / col.std) as f32
                        })
                    })
                    .collect();
                Tensor::<2>::from_data(
                    TensorData::new(data, [ids.len(), spec.tabular.len()]),
                    device,
                )
            });
            let raw = bundle
                .model
                .forward(x, tabular)
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| TrainError::invalid(format!("cannot read predictions: {e:?}")))?;
            for (k, &i) in ids.iter().enumerate() {
                let values = spec.task.interpret(&raw[k * dim..(k + 1) * dim]);
                let entry = acc
                    .entry(studies[i].study.clone())
                    .or_insert_with(|| (0, vec![0.0; values.len()], vec![0.0; values.len()]));
                entry.0 += 1;
                for (j, v) in values.iter().enumerate() {
                    entry.1[j] += v;
                    entry.2[j] += v * v;
                }
            }
            done += ids.len();
            progress(done, total);
            Ok(ControlFlow::Continue(()))
        },
    )?;
    // Studies in manifest order, each with the kept columns of its first row.
    let mut first_row: Vec<(&str, usize)> = Vec::new();
    for &i in &rows {
        let s = parsed.studies[i].study.as_str();
        if !first_row.iter().any(|(id, _)| *id == s) {
            first_row.push((s, i));
        }
    }
    let mut header = vec![options.study_column.clone()];
    header.extend(
        options
            .keep
            .iter()
            .filter(|k| **k != options.study_column)
            .cloned(),
    );
    header.push("clips".into());
    header.extend(names.iter().cloned());
    header.extend(names.iter().map(|n| format!("{n}_std")));
    let write = |w: &mut std::io::BufWriter<&mut std::fs::File>| -> std::io::Result<()> {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(&header)?;
        for (study, row) in &first_row {
            let Some((n, sum, sq)) = acc.get(*study) else {
                continue;
            };
            let n_f = *n as f64;
            let mut record = vec![study.to_string()];
            for k in options.keep.iter().filter(|k| **k != options.study_column) {
                record.push(table.cell(*row, k).unwrap_or("").to_string());
            }
            record.push(n.to_string());
            let means: Vec<f64> = sum.iter().map(|s| s / n_f).collect();
            record.extend(means.iter().map(|m| format!("{m:.6}")));
            record.extend(
                sq.iter()
                    .zip(&means)
                    .map(|(s, m)| format!("{:.6}", (s / n_f - m * m).max(0.0).sqrt())),
            );
            csv.write_record(&record)?;
        }
        csv.flush()
    };
    bedside_core::fsio::write_atomic_with(out, write).map_err(TrainError::io(out))?;
    Ok(PredictSummary {
        studies: first_row.len(),
        clips: total,
        outputs: names,
    })
}
