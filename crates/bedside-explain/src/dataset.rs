//! Explanations over a dataset (`bedside explain --dataset`): the serial occlusion test with a
//! clinical region, the attribution mass inside the region, and the sanity checks of the
//! methods, written as tables (CSV) and as the "Explanations" section of the evaluation report.
//!
//! For every study, the region (e.g. the left ventricle from the phantom's masks) is mapped
//! onto the model input ([`crate::region`]) and `K` copies of it are moved to random places
//! (seeded, same shape and area, off the region, on the scan sector). Each clip is scored
//! intact, with the region filled and with each control filled; a study's prediction is the
//! mean over its clips, as `bedside predict` computes it. The task metric (AUROC of the
//! explained class for classifiers, MAE for regression, Harrell's C for survival; from
//! `bedside-eval`) is computed for each condition with percentile bootstrap intervals that
//! resample patients; the degradations (loss against the intact input) and the difference
//! between the region's and the random masks' degradation get intervals from the same
//! replicates.
//!
//! Output folder:
//!
//! ```text
//! OUT/occlusion_test.csv       condition, metric (95% CI), degradation (95% CI)
//! OUT/occlusion_studies.csv    per study: label, prediction intact / region / each control
//! OUT/attribution_mass.csv     per method: share of |attribution| inside the region
//! OUT/sanity.csv               per method and randomisation: Spearman, SSIM
//! OUT/sanity_verdicts.csv      per method: pass / fail
//! OUT/explanations.json/.html  the report section (`bedside evaluate --explanations`)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bedside_core::rng::Rng;
use bedside_eval::bootstrap::{BootstrapOptions, Clusters, bootstrap_ci_many};
use bedside_eval::classification::compute_auroc;
use bedside_eval::explanations::{
    ExplanationsSection, Interval, MassRow, OcclusionRow, OcclusionTest, SanityChecks, SanityRow,
    SanityVerdict, write_section,
};
use bedside_eval::regression::compute_mae;
use bedside_eval::survival::{ConcordanceOptions, compute_harrell_c};
use bedside_ml::bundle::Bundle;
use bedside_ml::data::clips::{ClipSamplerConfig, RandPipeline, VideoArray};
use bedside_ml::data::loader::{ClipJob, ClipMaker, ClipStart, LoaderError, VideoStore, npy_shape};
use bedside_ml::predict::{ManifestSource, load_for_bundle};
use bedside_ml::train::TrainError;
use bedside_ml::train::config::TaskKind;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use crate::error::ExplainError;
use crate::gradient::read_f32;
use crate::model::{Cascade, Explainee, Target};
use crate::region::{
    CopyGeometry, PlacementOptions, RegionFill, RegionMask, fill_region, mask_to_input,
    random_placements, read_mask_file,
};
use crate::run::load_err;
use crate::sanity::similarity;
use crate::study::{Method, MethodOptions, explain_clip};

/// Where each study's region mask comes from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum MaskSource {
    /// A manifest column holding a `.npy`/`.npz` path per study (e.g. the phantom's
    /// `mask_file`, relative to the cohort folder given as `root`; default: the manifest's
    /// folder).
    Column {
        /// Column name.
        column: String,
        /// Folder relative paths resolve against.
        root: Option<PathBuf>,
        /// `.npz` member (default `lv`, else the first).
        member: Option<String>,
    },
    /// One mask for every study.
    File {
        /// The `.npy`/`.npz` file.
        path: PathBuf,
        /// `.npz` member.
        member: Option<String>,
    },
}

/// Settings of the sanity checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SanityOptions {
    /// Studies checked (their first clip).
    pub studies: usize,
    /// A method passes when both mean similarities are below this.
    pub threshold: f64,
    /// Seed of the fresh weights of the cascading randomisation.
    pub seed: u64,
}

impl Default for SanityOptions {
    fn default() -> Self {
        Self {
            studies: 4,
            threshold: 0.5,
            seed: 7,
        }
    }
}

/// What to compute over the dataset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetOptions {
    /// Study identifier column.
    pub study_column: String,
    /// Array path column.
    pub array_column: String,
    /// Label table joined to the manifest.
    #[serde(skip)]
    pub labels: Option<PathBuf>,
    /// Join column (default: the study column).
    pub join_key: Option<String>,
    /// Split column and value to restrict to.
    pub split: Option<(String, String)>,
    /// At most this many studies.
    pub max_studies: Option<usize>,
    /// Patient column (bootstrap units; default: each study its own patient).
    pub patient_column: Option<String>,
    /// Label column: class index (classification), value (regression).
    pub label_column: Option<String>,
    /// Time and event columns (survival).
    pub time_column: Option<String>,
    /// Event column (survival).
    pub event_column: Option<String>,
    /// Class whose AUROC and maps are computed (default: the last).
    pub class: Option<usize>,
    /// The region.
    pub mask: MaskSource,
    /// Region grown by this many pixels of the model input.
    pub dilate: usize,
    /// Random control masks.
    pub placements: PlacementOptions,
    /// Fill of masked pixels.
    pub fill: RegionFill,
    /// Seed of the placements.
    pub seed: u64,
    /// Clips per study, evenly spaced (absent: all).
    pub max_clips: Option<usize>,
    /// Clips per forward pass.
    pub batch_size: usize,
    /// Methods whose attribution mass is measured.
    pub methods: Vec<Method>,
    /// Their settings.
    pub method_options: MethodOptions,
    /// Studies whose maps are computed for the attribution mass (the first ones).
    pub mass_studies: usize,
    /// Sanity checks (absent: not run).
    pub sanity: Option<SanityOptions>,
    /// Bootstrap.
    pub bootstrap: BootstrapOptions,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        Self {
            study_column: "study_id".into(),
            array_column: "array".into(),
            labels: None,
            join_key: None,
            split: None,
            max_studies: None,
            patient_column: None,
            label_column: None,
            time_column: None,
            event_column: None,
            class: None,
            mask: MaskSource::Column {
                column: "mask_file".into(),
                root: None,
                member: None,
            },
            dilate: 1,
            placements: PlacementOptions::default(),
            fill: RegionFill::TrainingMean,
            seed: 0,
            max_clips: Some(2),
            batch_size: 8,
            methods: vec![
                Method::Saliency,
                Method::InputXGradient,
                Method::IntegratedGradients,
                Method::SmoothGrad,
                Method::GradCam,
            ],
            method_options: MethodOptions::default(),
            mass_studies: 16,
            sanity: Some(SanityOptions::default()),
            bootstrap: BootstrapOptions::default(),
        }
    }
}

/// The task metric of the occlusion test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskMetric {
    /// AUROC of one class against the rest.
    Auroc,
    /// Mean absolute error.
    Mae,
    /// Harrell's concordance index.
    CIndex,
}

impl TaskMetric {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            TaskMetric::Auroc => "auroc",
            TaskMetric::Mae => "mae",
            TaskMetric::CIndex => "c_index",
        }
    }

    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        self != TaskMetric::Mae
    }
}

/// Outcomes of the studies, in study order.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcomes {
    /// The metric.
    pub metric: TaskMetric,
    /// Positive class (AUROC), the true value (MAE) or the time (C-index).
    pub values: Vec<f64>,
    /// Event indicators (C-index).
    pub events: Vec<bool>,
}

impl Outcomes {
    /// The metric of `scores` on the rows `rows` (with repeats).
    pub fn metric_on(&self, scores: &[f64], rows: &[usize]) -> Option<f64> {
        let s: Vec<f64> = rows.iter().map(|&i| scores[i]).collect();
        let v: Vec<f64> = rows.iter().map(|&i| self.values[i]).collect();
        let value = match self.metric {
            TaskMetric::Auroc => {
                let labels: Vec<bool> = v.iter().map(|&x| x > 0.5).collect();
                compute_auroc(&labels, &s).ok()
            }
            TaskMetric::Mae => compute_mae(&v, &s).ok(),
            TaskMetric::CIndex => {
                let e: Vec<bool> = rows.iter().map(|&i| self.events[i]).collect();
                compute_harrell_c(&v, &e, &s, &ConcordanceOptions::default())
                    .ok()
                    .map(|c| c.c_index)
            }
        };
        value.filter(|x| x.is_finite())
    }
}

/// The occlusion test's statistics from per-study predictions: `scores[c][s]` is study `s`'s
/// prediction under condition `c` (0 intact, 1 region, then the random controls).
pub fn occlusion_statistics(
    outcomes: &Outcomes,
    scores: &[Vec<f64>],
    patients: &[String],
    bootstrap: &BootstrapOptions,
) -> Result<OcclusionTest, ExplainError> {
    let k = scores.len().saturating_sub(2);
    if k == 0 {
        return Err(ExplainError::invalid(
            "the occlusion test needs at least one random mask",
        ));
    }
    let sign = if outcomes.metric.higher_is_better() {
        1.0
    } else {
        -1.0
    };
    // [intact, region, random mean, random 1..k, deg region, deg random mean, region − random,
    //  deg random 1..k]
    let all = |rows: &[usize]| -> Vec<Option<f64>> {
        let m: Vec<Option<f64>> = scores.iter().map(|s| outcomes.metric_on(s, rows)).collect();
        let randoms: Option<Vec<f64>> = m[2..].iter().copied().collect();
        let random_mean = randoms.map(|r| r.iter().sum::<f64>() / r.len() as f64);
        let deg = |x: Option<f64>| Some(sign * (m[0]? - x?));
        let deg_region = deg(m[1]);
        let deg_random = deg(random_mean);
        let mut out = vec![m[0], m[1], random_mean];
        out.extend(m[2..].iter().copied());
        out.extend([
            deg_region,
            deg_random,
            deg_region.zip(deg_random).map(|(a, b)| a - b),
        ]);
        out.extend(m[2..].iter().map(|&x| deg(x)));
        out
    };
    let n = patients.len();
    let rows: Vec<usize> = (0..n).collect();
    let point = all(&rows);
    let values: Vec<f64> = point.iter().map(|v| v.unwrap_or(f64::NAN)).collect();
    let clusters = Clusters::from_ids(patients);
    let est = bootstrap_ci_many(&values, &clusters, bootstrap, |r| all(&r.indices))
        .map_err(|e| ExplainError::invalid(e.to_string()))?;
    let iv = |i: usize| Interval::from(est[i]);
    let d0 = 3 + k;
    let mut table = vec![
        OcclusionRow {
            condition: "intact".into(),
            metric: iv(0),
            degradation: Interval::point(0.0),
        },
        OcclusionRow {
            condition: "region".into(),
            metric: iv(1),
            degradation: iv(d0),
        },
        OcclusionRow {
            condition: format!("random (mean of {k})"),
            metric: iv(2),
            degradation: iv(d0 + 1),
        },
    ];
    for j in 0..k {
        table.push(OcclusionRow {
            condition: format!("random {}", j + 1),
            metric: iv(3 + j),
            degradation: iv(d0 + 3 + j),
        });
    }
    let mut deg_random: Vec<f64> = (0..k).filter_map(|j| point[d0 + 3 + j]).collect();
    deg_random.sort_by(f64::total_cmp);
    let range = if deg_random.is_empty() {
        (None, None)
    } else {
        (
            Some(bedside_eval::stats::quantile_sorted(&deg_random, 0.025)),
            Some(bedside_eval::stats::quantile_sorted(&deg_random, 0.975)),
        )
    };
    let at_least = match point[d0] {
        Some(r) if !deg_random.is_empty() => {
            Some(deg_random.iter().filter(|&&d| d >= r).count() as f64 / deg_random.len() as f64)
        }
        _ => None,
    };
    Ok(OcclusionTest {
        metric: outcomes.metric.name().into(),
        higher_is_better: outcomes.metric.higher_is_better(),
        random_masks: k,
        rows: table,
        region_minus_random: iv(d0 + 2),
        random_degradation_range: range,
        random_at_least_region: at_least,
        region_area_share: 0.0,
        random_overlap: 0.0,
        random_on_signal: 0.0,
    })
}

/// Raw head outputs of `batch` clips of `shape`.
fn batch_outputs(
    model: &Explainee,
    data: Vec<f32>,
    batch: usize,
    shape: [usize; 4],
) -> Result<Vec<f32>, ExplainError> {
    let [c, t, h, w] = shape;
    let x = Tensor::<5>::from_data(TensorData::new(data, [batch, c, t, h, w]), model.device());
    read_f32(model.outputs(x))
}

/// Share of `Σ|map|` inside `region` (every frame), `None` for a zero map.
pub fn mass_inside(map: &VideoArray, region: &RegionMask) -> Option<f64> {
    let plane = map.height * map.width;
    if plane == 0 || region.inside.len() != plane {
        return None;
    }
    let (mut inside, mut total) = (0.0f64, 0.0f64);
    for (i, v) in map.data.iter().enumerate() {
        let a = f64::from(v.abs());
        total += a;
        if region.inside[i % plane] {
            inside += a;
        }
    }
    (total > 0.0).then(|| inside / total)
}

fn csv_text(header: &[&str], rows: &[Vec<String>]) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = header.join(",");
    out.push('\n');
    for r in rows {
        out.push_str(&r.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v:.6}"))
}

/// Sums of Spearman (and count), of SSIM (and count), and the clips compared.
type SimilaritySums = (f64, usize, f64, usize, usize);

struct MassAcc {
    studies: Vec<(usize, f64)>,
    area: Vec<f64>,
    zero_clips: usize,
}

/// Compute the occlusion test, the attribution mass and the sanity checks over the studies of
/// `manifest`, write the tables into `out` and return the report section. `random_label` is
/// a bundle of the same architecture trained on permuted labels (data randomisation test).
/// `progress(done, total)` is called after each study.
pub fn explain_dataset(
    bundle: &Bundle,
    random_label: Option<&Bundle>,
    manifest: &Path,
    options: &DatasetOptions,
    out: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ExplanationsSection, ExplainError> {
    let spec = &bundle.manifest.model;
    if let Some(r) = random_label
        && (r.manifest.model.input != spec.input
            || r.manifest.model.task.output_dim() != spec.task.output_dim())
    {
        return Err(ExplainError::invalid(
            "the random-label bundle must take the same input and give the same outputs as the model",
        ));
    }
    let target = Target::for_task(&spec.task, options.class)?;
    let (metric, column) = match spec.task.kind {
        TaskKind::Classification | TaskKind::Evidential => {
            let k = match target {
                Target::Output(k) => k,
                _ => 0,
            };
            (TaskMetric::Auroc, format!("prob_{k}"))
        }
        TaskKind::Regression => (TaskMetric::Mae, "value".to_string()),
        TaskKind::Survival => (TaskMetric::CIndex, "risk".to_string()),
    };
    let out_col = spec
        .task
        .output_names()
        .iter()
        .position(|n| *n == column)
        .ok_or_else(|| ExplainError::invalid(format!("the model has no output `{column}`")))?;
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
    )
    .map_err(load_err)?;
    let mut notes = Vec::new();
    // One row per study, with its outcome.
    let mut seen = std::collections::BTreeSet::new();
    let mut rows: Vec<(usize, f64, bool)> = Vec::new();
    let mut unlabelled = 0;
    for (i, s) in parsed.studies.iter().enumerate() {
        if options.split.as_ref().is_some_and(|(_, v)| &s.split != v)
            || !seen.insert(s.study.clone())
        {
            continue;
        }
        let number = |name: &Option<String>| -> Option<f64> {
            table.cell(i, name.as_deref()?)?.parse::<f64>().ok()
        };
        let outcome = match metric {
            TaskMetric::Auroc => number(&options.label_column).map(|c| {
                let k = match target {
                    Target::Output(k) => k,
                    _ => 0,
                };
                (f64::from(u8::from((c - k as f64).abs() < 0.5)), false)
            }),
            TaskMetric::Mae => number(&options.label_column).map(|v| (v, false)),
            TaskMetric::CIndex => number(&options.time_column)
                .zip(number(&options.event_column))
                .map(|(t, e)| (t, e > 0.5)),
        };
        match outcome {
            Some((v, e)) => rows.push((i, v, e)),
            None => unlabelled += 1,
        }
    }
    for column in [
        &options.label_column,
        &options.time_column,
        &options.event_column,
        &options.patient_column,
    ]
    .into_iter()
    .flatten()
    {
        if !table.header.contains(column) {
            return Err(ExplainError::invalid(format!(
                "the manifest has no column `{column}` (columns: {})",
                table.header.join(", ")
            )));
        }
    }
    if let MaskSource::Column { column, .. } = &options.mask
        && !table.header.contains(column)
    {
        return Err(ExplainError::invalid(format!(
            "the manifest has no mask column `{column}` (columns: {})",
            table.header.join(", ")
        )));
    }
    if options.label_column.is_none() && metric != TaskMetric::CIndex {
        return Err(ExplainError::invalid(
            "the occlusion test needs the label column (--label)",
        ));
    }
    if metric == TaskMetric::CIndex
        && (options.time_column.is_none() || options.event_column.is_none())
    {
        return Err(ExplainError::invalid(
            "the occlusion test of a survival model needs --time and --event columns",
        ));
    }
    if unlabelled > 0 {
        notes.push(format!(
            "{unlabelled} studies without a usable outcome were left out"
        ));
    }
    if let Some(m) = options.max_studies {
        rows.truncate(m);
    }
    if rows.len() < 2 {
        return Err(ExplainError::invalid(format!(
            "the occlusion test needs at least two studies with outcomes, found {}",
            rows.len()
        )));
    }
    let sampler = ClipSamplerConfig::new()
        .with_length(spec.input.clip_length)
        .with_period(spec.input.period)
        .init()
        .map_err(|e| ExplainError::Load(TrainError::Ml(e)))?;
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
    let root_rng = Rng::seed_from(options.seed);
    let conditions = options.placements.count + 2;
    let mut scores: Vec<Vec<f64>> = vec![Vec::new(); conditions];
    let mut kept: Vec<(usize, f64, bool, String)> = Vec::new();
    let mut study_rows: Vec<Vec<String>> = Vec::new();
    let (mut area_sum, mut overlap_sum, mut signal_sum, mut placements_n) = (0.0, 0.0, 0.0, 0);
    let map_methods: Vec<Method> = options
        .methods
        .iter()
        .copied()
        .filter(|m| m.has_map())
        .collect();
    let mut mass: BTreeMap<Method, MassAcc> = BTreeMap::new();
    let sanity_methods: Vec<Method> = map_methods.clone();
    let mut sanity_sums: BTreeMap<(Method, usize), SimilaritySums> = BTreeMap::new();
    let fresh = match &options.sanity {
        Some(s) => {
            device.seed(s.seed);
            let model = spec
                .init(device)
                .map_err(|e| ExplainError::Load(TrainError::Ml(e)))?;
            let backbone = model.backbone.ok_or_else(|| {
                ExplainError::invalid("the sanity checks need a video ResNet backbone")
            })?;
            Some((backbone, model.fusion))
        }
        None => None,
    };
    let mut skipped_masks = 0;
    let total = rows.len();
    progress(0, total);
    for (done, &(i, value, event)) in rows.iter().enumerate() {
        let record = &parsed.studies[i];
        let array_shape = npy_shape(&record.array).map_err(|message| {
            load_err(LoaderError::Array {
                row: i + 1,
                path: record.array.clone(),
                message,
            })
        })?;
        let raw_mask = match &options.mask {
            MaskSource::File { path, member } => Some(read_mask_file(path, member.as_deref())?),
            MaskSource::Column {
                column,
                root,
                member,
            } => match table.cell(i, column).filter(|c| !c.is_empty()) {
                Some(rel) => {
                    let path = root.as_deref().unwrap_or(&table.base).join(rel);
                    Some(read_mask_file(&path, member.as_deref())?)
                }
                None => None,
            },
        };
        let Some(raw_mask) = raw_mask else {
            skipped_masks += 1;
            progress(done + 1, total);
            continue;
        };
        let region = mask_to_input(
            &raw_mask,
            &array_shape,
            CopyGeometry::beside(&record.array),
            spec.input.size,
        )?
        .dilate(options.dilate);
        if region.area() == 0 {
            skipped_masks += 1;
            progress(done + 1, total);
            continue;
        }
        let video = store.get(i).map_err(load_err)?;
        let signal = RegionMask::signal(&video);
        let mut rng = root_rng.fork(i as u64);
        let controls = random_placements(&region, &signal, &options.placements, &mut rng);
        if controls.len() != options.placements.count {
            return Err(ExplainError::invalid(format!(
                "no room for random masks beside the region of study {}",
                record.study
            )));
        }
        area_sum += region.area_share();
        for c in &controls {
            overlap_sum += c.overlap;
            signal_sum += c.on_signal;
            placements_n += 1;
        }
        let tabular: Option<Vec<f32>> = (!spec.tabular.is_empty()).then(|| {
            spec.tabular
                .iter()
                .enumerate()
                .map(|(c, col)| ((record.covariates[c] - col.mean) / col.std) as f32)
                .collect()
        });
        let model = Explainee::from_model(&bundle.model, tabular.clone(), device)?;
        let starts = sampler.all_starts(video.frames);
        let chosen: Vec<usize> = match options.max_clips {
            Some(m) if m > 0 && m < starts.len() => (0..m)
                .map(|k| starts[k * (starts.len() - 1) / (m - 1).max(1)])
                .collect(),
            _ => starts,
        };
        let mut sums = vec![0.0f64; conditions];
        let dim = spec.task.output_dim();
        let masks: Vec<&RegionMask> = std::iter::once(&region)
            .chain(controls.iter().map(|c| &c.mask))
            .collect();
        let mut first_clip = None;
        for &start in &chosen {
            let clip = maker
                .clip(ClipJob {
                    study: i,
                    start: ClipStart::At(start),
                    augment: false,
                })
                .map_err(load_err)?;
            let shape = [clip.channels, clip.frames, clip.height, clip.width];
            let mut variants: Vec<Vec<f32>> = vec![clip.data.clone()];
            variants.extend(
                masks
                    .iter()
                    .map(|m| fill_region(&clip, m, options.fill).data),
            );
            let mut c0 = 0;
            for chunk in variants.chunks(options.batch_size.max(1)) {
                let data: Vec<f32> = chunk.iter().flatten().copied().collect();
                let raw = batch_outputs(&model, data, chunk.len(), shape)?;
                for b in 0..chunk.len() {
                    sums[c0 + b] += spec.task.interpret(&raw[b * dim..(b + 1) * dim])[out_col];
                }
                c0 += chunk.len();
            }
            if kept.len() < options.mass_studies {
                for &method in &map_methods {
                    let r = explain_clip(&model, &target, &clip, method, &options.method_options)?;
                    let acc = mass.entry(method).or_insert(MassAcc {
                        studies: Vec::new(),
                        area: Vec::new(),
                        zero_clips: 0,
                    });
                    let share = mass_inside(&r.map, &region);
                    if share.is_none() {
                        acc.zero_clips += 1;
                    }
                    if let Some(share) = share {
                        // Mean over the study's clips: accumulate, divided below.
                        match acc.studies.last_mut() {
                            Some((s, v)) if *s == kept.len() => *v += share / chosen.len() as f64,
                            _ => {
                                acc.studies.push((kept.len(), share / chosen.len() as f64));
                                acc.area.push(region.area_share());
                            }
                        }
                    }
                }
            }
            if first_clip.is_none() {
                first_clip = Some(clip);
            }
        }
        if let (Some(s), Some(fresh), Some(clip)) = (&options.sanity, &fresh, &first_clip)
            && kept.len() < s.studies
        {
            for &method in &sanity_methods {
                let original =
                    explain_clip(&model, &target, clip, method, &options.method_options)?.map;
                let mut compare = |slot: usize, other: &Explainee| -> Result<(), ExplainError> {
                    let map =
                        explain_clip(other, &target, clip, method, &options.method_options)?.map;
                    let sim = similarity(&original, &map);
                    let e = sanity_sums
                        .entry((method, slot))
                        .or_insert((0.0, 0, 0.0, 0, 0));
                    if let Some(r) = sim.spearman {
                        e.0 += r;
                        e.1 += 1;
                    }
                    if let Some(v) = sim.ssim {
                        e.2 += v;
                        e.3 += 1;
                    }
                    e.4 += 1;
                    Ok(())
                };
                for steps in 1..=Cascade::ORDER.len() {
                    let randomised = model.randomised(&fresh.0, fresh.1.as_ref(), steps);
                    compare(steps, &randomised)?;
                }
                if let Some(r) = random_label {
                    let other = Explainee::from_model(&r.model, tabular.clone(), device)?;
                    compare(0, &other)?;
                }
            }
        }
        let n_clips = chosen.len().max(1) as f64;
        for (c, s) in sums.iter().enumerate() {
            scores[c].push(s / n_clips);
        }
        let patient = options
            .patient_column
            .as_deref()
            .and_then(|p| table.cell(i, p))
            .filter(|p| !p.is_empty())
            .map_or_else(|| record.study.clone(), str::to_string);
        let mut row = vec![
            record.study.clone(),
            patient.clone(),
            format!("{value}"),
            format!("{}", u8::from(event)),
            format!("{:.6}", region.area_share()),
        ];
        row.extend(sums.iter().map(|s| format!("{:.6}", s / n_clips)));
        study_rows.push(row);
        kept.push((i, value, event, patient));
        progress(done + 1, total);
    }
    if skipped_masks > 0 {
        notes.push(format!(
            "{skipped_masks} studies without a region mask (or with an empty one) were left out"
        ));
    }
    if kept.len() < 2 {
        return Err(ExplainError::invalid(
            "fewer than two studies have both an outcome and a region mask",
        ));
    }
    let outcomes = Outcomes {
        metric,
        values: kept.iter().map(|k| k.1).collect(),
        events: kept.iter().map(|k| k.2).collect(),
    };
    let patients: Vec<String> = kept.iter().map(|k| k.3.clone()).collect();
    let mut occlusion = occlusion_statistics(&outcomes, &scores, &patients, &options.bootstrap)?;
    occlusion.region_area_share = area_sum / kept.len() as f64;
    occlusion.random_overlap = overlap_sum / placements_n.max(1) as f64;
    occlusion.random_on_signal = signal_sum / placements_n.max(1) as f64;

    // Attribution mass.
    let mut mass_rows = Vec::new();
    for (method, acc) in &mass {
        if acc.zero_clips > 0 {
            notes.push(format!(
                "{}: {} clips gave an all-zero map and count only through their other clips in the attribution mass",
                method.name(),
                acc.zero_clips
            ));
        }
        if acc.studies.is_empty() {
            continue;
        }
        let values: Vec<f64> = acc.studies.iter().map(|s| s.1).collect();
        let ids: Vec<&str> = acc.studies.iter().map(|s| patients[s.0].as_str()).collect();
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        let est = bootstrap_ci_many(
            &[mean],
            &Clusters::from_ids(&ids),
            &options.bootstrap,
            |r| {
                vec![Some(
                    r.indices.iter().map(|&j| values[j]).sum::<f64>()
                        / r.indices.len().max(1) as f64,
                )]
            },
        )
        .map_err(|e| ExplainError::invalid(e.to_string()))?;
        let area = acc.area.iter().sum::<f64>() / acc.area.len().max(1) as f64;
        mass_rows.push(MassRow {
            method: method.name().into(),
            studies: values.len(),
            mass_inside: est[0].into(),
            area_share: area,
            concentration: (area > 0.0).then(|| mean / area),
        });
    }

    // Sanity checks.
    let sanity = options.sanity.as_ref().map(|s| {
        let mut rows = Vec::new();
        let mut verdicts = Vec::new();
        let mean = |e: &SimilaritySums| {
            (
                (e.1 > 0).then(|| e.0 / e.1 as f64),
                (e.3 > 0).then(|| e.2 / e.3 as f64),
            )
        };
        let passes = |sp: Option<f64>, ss: Option<f64>| match (sp, ss) {
            (None, None) => None,
            (a, b) => Some(a.is_none_or(|v| v < s.threshold) && b.is_none_or(|v| v < s.threshold)),
        };
        for &method in &sanity_methods {
            let mut model_verdict = None;
            for steps in 1..=Cascade::ORDER.len() {
                if let Some(e) = sanity_sums.get(&(method, steps)) {
                    let (sp, ss) = mean(e);
                    rows.push(SanityRow {
                        method: method.name().into(),
                        test: format!(
                            "model: {}",
                            Cascade::ORDER[..steps]
                                .iter()
                                .map(|c| c.name())
                                .collect::<Vec<_>>()
                                .join("+")
                        ),
                        spearman: sp,
                        ssim: ss,
                        clips: e.4,
                    });
                    if steps == Cascade::ORDER.len() {
                        model_verdict = passes(sp, ss);
                    }
                }
            }
            let data_verdict = sanity_sums.get(&(method, 0)).and_then(|e| {
                let (sp, ss) = mean(e);
                rows.push(SanityRow {
                    method: method.name().into(),
                    test: "data: permuted labels".into(),
                    spearman: sp,
                    ssim: ss,
                    clips: e.4,
                });
                passes(sp, ss)
            });
            verdicts.push(SanityVerdict {
                method: method.name().into(),
                model_randomisation: model_verdict,
                data_randomisation: data_verdict,
            });
        }
        SanityChecks {
            threshold: s.threshold,
            rows,
            verdicts,
        }
    });
    if options.sanity.is_some() && random_label.is_none() {
        notes.push(
            "data randomisation test not run: give a bundle trained on permuted labels".into(),
        );
    }

    let region = match &options.mask {
        MaskSource::Column { column, .. } => format!("per-study mask `{column}`"),
        MaskSource::File { path, .. } => format!(
            "mask file {}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    };
    let section = ExplanationsSection {
        model: bundle.manifest.name.clone(),
        target: target.describe(),
        region: if options.dilate > 0 {
            format!(
                "{region}, united over frames, dilated by {} px",
                options.dilate
            )
        } else {
            format!("{region}, united over frames")
        },
        studies: kept.len(),
        patients: Clusters::from_ids(&patients).n_clusters(),
        settings: serde_json::to_value(options).unwrap_or_default(),
        occlusion: Some(occlusion),
        attribution_mass: mass_rows,
        sanity,
        notes,
    };
    write_tables(&section, options.placements.count, &study_rows, out)?;
    Ok(section)
}

/// The headline numbers of a dataset run, one line each: the occlusion test's intact,
/// region and random conditions, the attribution mass per method, the sanity verdicts.
pub fn headline(section: &ExplanationsSection) -> Vec<String> {
    let f = |v: Option<f64>| v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"));
    let iv = |i: &Interval| match (i.lower, i.upper) {
        (Some(l), Some(u)) => format!("{} ({l:.3} to {u:.3})", f(i.value)),
        _ => f(i.value),
    };
    let mut lines = Vec::new();
    if let Some(o) = &section.occlusion {
        for r in o.rows.iter().take(3) {
            lines.push(format!(
                "{:<20} {} {}  degradation {}",
                r.condition,
                o.metric,
                iv(&r.metric),
                iv(&r.degradation)
            ));
        }
        lines.push(format!(
            "region minus random degradation {}",
            iv(&o.region_minus_random)
        ));
    }
    for m in &section.attribution_mass {
        lines.push(format!(
            "{:<18} |attribution| inside the region {} (area {:.3}, concentration {})",
            m.method,
            iv(&m.mass_inside),
            m.area_share,
            f(m.concentration)
        ));
    }
    if let Some(c) = &section.sanity {
        let word = |v: Option<bool>| match v {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "not run",
        };
        for v in &c.verdicts {
            lines.push(format!(
                "{:<18} sanity: model randomisation {}, data randomisation {} (threshold {})",
                v.method,
                word(v.model_randomisation),
                word(v.data_randomisation),
                c.threshold
            ));
        }
    }
    lines
}

fn write_text(path: &Path, text: &str) -> Result<(), ExplainError> {
    crate::render::write_text(path, text)
}

/// Write the CSV tables and the section (`explanations.json`, `explanations.html`).
fn write_tables(
    s: &ExplanationsSection,
    k: usize,
    study_rows: &[Vec<String>],
    out: &Path,
) -> Result<(), ExplainError> {
    std::fs::create_dir_all(out).map_err(ExplainError::io(out))?;
    if let Some(o) = &s.occlusion {
        let rows: Vec<Vec<String>> = o
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.condition.clone(),
                    o.metric.clone(),
                    opt(r.metric.value),
                    opt(r.metric.lower),
                    opt(r.metric.upper),
                    opt(r.degradation.value),
                    opt(r.degradation.lower),
                    opt(r.degradation.upper),
                ]
            })
            .chain(std::iter::once(vec![
                "region minus random".into(),
                o.metric.clone(),
                String::new(),
                String::new(),
                String::new(),
                opt(o.region_minus_random.value),
                opt(o.region_minus_random.lower),
                opt(o.region_minus_random.upper),
            ]))
            .collect();
        write_text(
            &out.join("occlusion_test.csv"),
            &csv_text(
                &[
                    "condition",
                    "metric",
                    "value",
                    "lower",
                    "upper",
                    "degradation",
                    "degradation_lower",
                    "degradation_upper",
                ],
                &rows,
            ),
        )?;
    }
    let mut header: Vec<String> = [
        "study",
        "patient",
        "outcome",
        "event",
        "region_area_share",
        "intact",
        "region",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend((1..=k).map(|j| format!("random_{j}")));
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    write_text(
        &out.join("occlusion_studies.csv"),
        &csv_text(&header, study_rows),
    )?;
    let rows: Vec<Vec<String>> = s
        .attribution_mass
        .iter()
        .map(|r| {
            vec![
                r.method.clone(),
                r.studies.to_string(),
                opt(r.mass_inside.value),
                opt(r.mass_inside.lower),
                opt(r.mass_inside.upper),
                format!("{:.6}", r.area_share),
                opt(r.concentration),
            ]
        })
        .collect();
    write_text(
        &out.join("attribution_mass.csv"),
        &csv_text(
            &[
                "method",
                "studies",
                "mass_inside",
                "lower",
                "upper",
                "area_share",
                "concentration",
            ],
            &rows,
        ),
    )?;
    if let Some(c) = &s.sanity {
        let rows: Vec<Vec<String>> = c
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.method.clone(),
                    r.test.clone(),
                    opt(r.spearman),
                    opt(r.ssim),
                    r.clips.to_string(),
                ]
            })
            .collect();
        write_text(
            &out.join("sanity.csv"),
            &csv_text(
                &["method", "randomised", "spearman", "ssim", "clips"],
                &rows,
            ),
        )?;
        let word = |v: Option<bool>| match v {
            Some(true) => "pass".to_string(),
            Some(false) => "fail".to_string(),
            None => "not run".to_string(),
        };
        let rows: Vec<Vec<String>> = c
            .verdicts
            .iter()
            .map(|v| {
                vec![
                    v.method.clone(),
                    word(v.model_randomisation),
                    word(v.data_randomisation),
                    format!("{}", c.threshold),
                ]
            })
            .collect();
        write_text(
            &out.join("sanity_verdicts.csv"),
            &csv_text(
                &[
                    "method",
                    "model_randomisation",
                    "data_randomisation",
                    "threshold",
                ],
                &rows,
            ),
        )?;
    }
    write_section(
        s,
        out,
        "explanations",
        &format!("Explanations: {}", s.model),
    )
    .map_err(|e| ExplainError::invalid(format!("cannot write the section: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn statistics_separate_a_region_that_carries_the_signal() {
        // 40 studies of 20 patients; the score is the label plus noise intact and with random
        // masks, pure noise with the region masked.
        let n = 40;
        let mut rng = Rng::seed_from(5);
        let labels: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
        let noise = |rng: &mut Rng| rng.normal() * 0.3;
        let mut scores = vec![
            labels
                .iter()
                .map(|&l| l + noise(&mut rng))
                .collect::<Vec<_>>(),
        ];
        scores.push((0..n).map(|_| noise(&mut rng)).collect());
        for _ in 0..5 {
            scores.push(labels.iter().map(|&l| l + noise(&mut rng)).collect());
        }
        let patients: Vec<String> = (0..n).map(|i| format!("p{}", i / 2)).collect();
        let outcomes = Outcomes {
            metric: TaskMetric::Auroc,
            values: labels.clone(),
            events: vec![false; n],
        };
        let boot = BootstrapOptions {
            replicates: 200,
            seed: 1,
            confidence: 0.95,
        };
        let t = occlusion_statistics(&outcomes, &scores, &patients, &boot).unwrap();
        // Point values equal the metric computed directly.
        let labels_b: Vec<bool> = labels.iter().map(|&l| l > 0.5).collect();
        let direct: Vec<f64> = scores
            .iter()
            .map(|s| compute_auroc(&labels_b, s).unwrap())
            .collect();
        assert_eq!(t.rows[0].metric.value, Some(direct[0]));
        assert_eq!(t.rows[1].metric.value, Some(direct[1]));
        let random_mean = direct[2..].iter().sum::<f64>() / 5.0;
        assert!((t.rows[2].metric.value.unwrap() - random_mean).abs() < 1e-12);
        assert!((t.rows[1].degradation.value.unwrap() - (direct[0] - direct[1])).abs() < 1e-12);
        assert_eq!(t.rows.len(), 3 + 5);
        // The region's degradation is large, the random ones' small; the interval of the
        // difference excludes zero.
        assert!(t.rows[1].degradation.value.unwrap() > 0.3);
        assert!(t.rows[2].degradation.value.unwrap().abs() < 0.1);
        assert!(t.region_minus_random.lower.unwrap() > 0.0);
        assert_eq!(t.random_at_least_region, Some(0.0));
        // MAE: lower is better, so degradation is masked − intact.
        let outcomes = Outcomes {
            metric: TaskMetric::Mae,
            values: labels.clone(),
            events: vec![false; n],
        };
        let t = occlusion_statistics(&outcomes, &scores, &patients, &boot).unwrap();
        let mae = |s: &[f64]| compute_mae(&labels, s).unwrap();
        assert!(
            (t.rows[1].degradation.value.unwrap() - (mae(&scores[1]) - mae(&scores[0]))).abs()
                < 1e-12
        );
        assert!(t.rows[1].degradation.value.unwrap() > 0.0);
    }

    #[test]
    fn mass_inside_counts_absolute_values() {
        let map = VideoArray {
            channels: 1,
            frames: 2,
            height: 2,
            width: 2,
            data: vec![1.0, -1.0, 0.0, 2.0, 0.0, 0.0, 0.0, -4.0],
        };
        let region = RegionMask {
            height: 2,
            width: 2,
            inside: vec![false, false, false, true],
        };
        assert!((mass_inside(&map, &region).unwrap() - 6.0 / 8.0).abs() < 1e-12);
    }
}
