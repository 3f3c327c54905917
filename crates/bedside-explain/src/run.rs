//! `bedside explain`: explain studies of a manifest with a bundle and write, per study, an
//! animated overlay per method, the temporal importance curves (SVG), the maps (`.npy`) and
//! the numbers (JSON).
//!
//! Output folder:
//!
//! ```text
//! OUT/summary.json                       every study: clips, target value, per-method numbers
//! OUT/<study>/explanation.json           target, clips, temporal curves, IG completeness
//! OUT/<study>/<method>.png               animated PNG: frames | frames with the map overlaid
//! OUT/<study>/<method>.npy               float32 [frames, size, size], channels summed
//! OUT/<study>/temporal.svg               temporal importance of every method
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bedside_ml::bundle::Bundle;
use bedside_ml::data::clips::{ClipSamplerConfig, RandPipeline, VideoArray};
use bedside_ml::data::loader::{ClipJob, ClipMaker, ClipStart, LoaderError, VideoStore, npy_shape};
use bedside_ml::predict::{ManifestSource, load_for_bundle};
use bedside_ml::train::TrainError;
use burn::tensor::Device;
use serde::Serialize;

use crate::error::ExplainError;
use crate::model::{Explainee, Target};
use crate::render::{Curve, temporal_svg, write_overlay_apng, write_text};
use crate::study::{ClipNumbers, Method, MethodOptions, StudyAccumulator, explain_clip};

/// What to explain and how.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Study identifier column.
    pub study_column: String,
    /// Array path column.
    pub array_column: String,
    /// Label table joined to the manifest on `join_key` (curate's metadata + a label sheet).
    pub labels: Option<PathBuf>,
    /// Join column (default: the study column).
    pub join_key: Option<String>,
    /// Studies to explain (empty: every study, up to `max_studies`).
    pub studies: Vec<String>,
    /// Split column and value to restrict to.
    pub split: Option<(String, String)>,
    /// At most this many studies when `studies` is empty.
    pub max_studies: Option<usize>,
    /// Methods, in output order.
    pub methods: Vec<Method>,
    /// Their settings.
    pub method_options: MethodOptions,
    /// Class explained by classification models (absent: the last class, the positive one of a
    /// binary model).
    pub class: Option<usize>,
    /// Explain the softmax probability instead of the logit (classification).
    pub probability: bool,
    /// Clips per study, evenly spaced over the valid starts (absent: all).
    pub max_clips: Option<usize>,
    /// Frames per second of the overlays.
    pub fps: u16,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            study_column: "study_id".into(),
            array_column: "array".into(),
            labels: None,
            join_key: None,
            studies: Vec::new(),
            split: None,
            max_studies: None,
            methods: vec![
                Method::IntegratedGradients,
                Method::GradCam,
                Method::FrameAblation,
            ],
            method_options: MethodOptions::default(),
            class: None,
            probability: false,
            max_clips: Some(2),
            fps: 12,
        }
    }
}

/// One method's numbers for one study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodSummary {
    /// Temporal curve per video frame (`null`: not covered).
    pub temporal: Vec<Option<f32>>,
    /// Video frame with the highest temporal value.
    pub peak_frame: Option<usize>,
    /// Per-clip numbers (Integrated Gradients' completeness error).
    pub clips: Vec<ClipNumbers>,
    /// Files written, relative to the study folder.
    pub files: Vec<String>,
}

/// One study's explanation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudySummary {
    /// Study identifier (from the de-identified manifest).
    pub study: String,
    /// Folder under the output folder.
    pub folder: String,
    /// Frames of the video.
    pub frames: usize,
    /// Clip starts explained.
    pub clip_starts: Vec<usize>,
    /// Target value per clip.
    pub scores: Vec<f32>,
    /// Per method.
    pub methods: BTreeMap<String, MethodSummary>,
}

/// Everything `bedside explain` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// Bundle name.
    pub model: String,
    /// What was explained.
    pub target: String,
    /// Methods and their settings.
    pub methods: Vec<String>,
    /// Settings of the methods.
    pub settings: MethodOptions,
    /// Per study.
    pub studies: Vec<StudySummary>,
}

fn folder_name(index: usize, study: &str) -> String {
    let clean: String = study
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let clean = clean.trim_start_matches('.');
    if clean.is_empty() {
        format!("study-{index:04}")
    } else {
        clean.to_string()
    }
}

pub(crate) fn load_err(e: LoaderError) -> ExplainError {
    ExplainError::Load(TrainError::Data(e))
}

/// Explain the studies of `manifest` with `bundle`, writing into `out`.
/// `progress(done, total)` is called after each clip and method.
pub fn explain_manifest(
    bundle: &Bundle,
    manifest: &Path,
    options: &RunOptions,
    out: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<RunSummary, ExplainError> {
    if options.methods.is_empty() {
        return Err(ExplainError::invalid("no method chosen"));
    }
    let spec = &bundle.manifest.model;
    let mut target = Target::for_task(&spec.task, options.class)?;
    if options.probability
        && let Target::Output(k) = target
        && matches!(
            spec.task.kind,
            bedside_ml::train::config::TaskKind::Classification
        )
    {
        target = Target::Probability(k);
    }
    let (_, parsed) = load_for_bundle(
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
    // The first row of each wanted study.
    let mut rows: Vec<usize> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in parsed.studies.iter().enumerate() {
        let wanted = if options.studies.is_empty() {
            options.split.as_ref().is_none_or(|(_, v)| &s.split == v)
        } else {
            options.studies.contains(&s.study)
        };
        if wanted && seen.insert(s.study.clone()) {
            rows.push(i);
        }
    }
    if !options.studies.is_empty() {
        let missing = options
            .studies
            .iter()
            .filter(|s| !seen.contains(*s))
            .count();
        if missing > 0 {
            return Err(ExplainError::invalid(format!(
                "{missing} of the requested studies are not in the manifest"
            )));
        }
    } else if let Some(m) = options.max_studies {
        rows.truncate(m);
    }
    if rows.is_empty() {
        return Err(ExplainError::invalid("no study to explain"));
    }
    let sampler = ClipSamplerConfig::new()
        .with_length(spec.input.clip_length)
        .with_period(spec.input.period)
        .init()
        .map_err(|e| ExplainError::Load(TrainError::Ml(e)))?;
    let mut plan: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in &rows {
        let path = &parsed.studies[i].array;
        let shape = npy_shape(path).map_err(|message| {
            load_err(LoaderError::Array {
                row: i + 1,
                path: path.clone(),
                message,
            })
        })?;
        let starts = sampler.all_starts(shape.first().copied().unwrap_or(0));
        let chosen: Vec<usize> = match options.max_clips {
            Some(m) if m > 0 && m < starts.len() => (0..m)
                .map(|k| starts[k * (starts.len() - 1) / (m - 1).max(1)])
                .collect(),
            _ => starts,
        };
        plan.push((i, chosen));
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
    let total: usize = plan.iter().map(|(_, s)| s.len()).sum::<usize>() * options.methods.len();
    let mut done = 0;
    progress(done, total);
    let mut studies = Vec::new();
    std::fs::create_dir_all(out).map_err(ExplainError::io(out))?;
    for (i, starts) in &plan {
        let record = &parsed.studies[*i];
        let tabular = (!spec.tabular.is_empty()).then(|| {
            spec.tabular
                .iter()
                .enumerate()
                .map(|(c, col)| ((record.covariates[c] - col.mean) / col.std) as f32)
                .collect()
        });
        let model = Explainee::from_model(&bundle.model, tabular, device)?;
        let video: std::sync::Arc<VideoArray> = store.get(*i).map_err(load_err)?;
        let mut acc: BTreeMap<Method, StudyAccumulator> = options
            .methods
            .iter()
            .map(|&m| {
                (
                    m,
                    StudyAccumulator::new(video.frames, video.height, video.width),
                )
            })
            .collect();
        let mut scores = Vec::new();
        for &start in starts {
            let clip = maker
                .clip(ClipJob {
                    study: *i,
                    start: ClipStart::At(start),
                    augment: false,
                })
                .map_err(load_err)?;
            let shape = [clip.channels, clip.frames, clip.height, clip.width];
            scores.push(
                crate::gradient::batch_scores(&model, &target, clip.data.clone(), 1, shape)?[0],
            );
            for &method in &options.methods {
                let result = explain_clip(&model, &target, &clip, method, &options.method_options)?;
                if let Some(a) = acc.get_mut(&method) {
                    a.add(&result, start, spec.input.period);
                }
                done += 1;
                progress(done, total);
            }
        }
        let folder = folder_name(*i, &record.study);
        let dir = out.join(&folder);
        std::fs::create_dir_all(&dir).map_err(ExplainError::io(&dir))?;
        let mut methods = BTreeMap::new();
        let mut curves = Vec::new();
        for (method, a) in acc {
            let map = a.finish();
            let mut files = Vec::new();
            let covered: Vec<usize> = (0..map.covered.len()).filter(|&f| map.covered[f]).collect();
            if method.has_map() {
                let png = format!("{}.png", method.name());
                write_overlay_apng(&dir.join(&png), &video, &map.map, &covered, options.fps)?;
                files.push(png);
                let npy = format!("{}.npy", method.name());
                write_map_npy(&dir.join(&npy), &map.map)?;
                files.push(npy);
            }
            let peak_frame = map
                .temporal
                .iter()
                .enumerate()
                .filter_map(|(f, v)| v.map(|v| (f, v)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(f, _)| f);
            curves.push(Curve {
                label: match method {
                    Method::FrameAblation => "frame ablation (drop)".into(),
                    m => format!("{} (|attr| share)", m.name()),
                },
                values: map.temporal.clone(),
            });
            methods.insert(
                method.name().to_string(),
                MethodSummary {
                    temporal: map.temporal,
                    peak_frame,
                    clips: map.clip_numbers,
                    files,
                },
            );
        }
        let svg = temporal_svg(
            &format!("Temporal importance — {}", target.describe()),
            &curves,
        );
        write_text(&dir.join("temporal.svg"), &svg)?;
        let summary = StudySummary {
            study: record.study.clone(),
            folder: folder.clone(),
            frames: video.frames,
            clip_starts: starts.clone(),
            scores,
            methods,
        };
        let json = serde_json::to_string_pretty(&summary)
            .map_err(|e| ExplainError::invalid(e.to_string()))?;
        write_text(&dir.join("explanation.json"), &json)?;
        studies.push(summary);
    }
    let summary = RunSummary {
        model: bundle.manifest.name.clone(),
        target: target.describe(),
        methods: options
            .methods
            .iter()
            .map(|m| m.name().to_string())
            .collect(),
        settings: options.method_options.clone(),
        studies,
    };
    let json =
        serde_json::to_string_pretty(&summary).map_err(|e| ExplainError::invalid(e.to_string()))?;
    write_text(&out.join("summary.json"), &json)?;
    Ok(summary)
}

/// Write a `[1, frames, h, w]` map as a float32 `.npy` of shape `[frames, h, w]`.
pub fn write_map_npy(path: &Path, map: &VideoArray) -> Result<(), ExplainError> {
    let bytes: Vec<u8> = map.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = [map.channels * map.frames, map.height, map.width];
    bedside_core::fsio::write_atomic_with(path, |w| {
        bedside_core::npy::write_npy(w, bedside_core::npy::Dtype::F32, &shape, &bytes)
    })
    .map_err(ExplainError::io(path))
}

/// Where `explain_manifest` puts a study (for callers that want to open the files).
pub fn study_folder(out: &Path, summary: &StudySummary) -> PathBuf {
    out.join(&summary.folder)
}
