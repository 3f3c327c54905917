//! `bedside explain`: attributions of a bundle's predictions for studies of a manifest.

use std::path::PathBuf;
use std::time::Instant;

use bedside_eval::bootstrap::BootstrapOptions;
use bedside_explain::ExplainError;
use bedside_explain::dataset::{
    DatasetOptions, MaskSource, SanityOptions, explain_dataset, headline,
};
use bedside_explain::gradcam::GradCamOptions;
use bedside_explain::gradient::{Baseline, IgOptions, Quadrature, SmoothGradOptions};
use bedside_explain::occlusion::{FrameFill, OcclusionOptions};
use bedside_explain::region::{PlacementOptions, RegionFill};
use bedside_explain::run::{RunOptions, explain_manifest};
use bedside_explain::study::{Method, MethodOptions};
use bedside_explain::{Stage, Target};
use bedside_ml::backend::BackendKind;

use crate::ui::{Ctx, Exit};

/// Arguments of `bedside explain`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bedside explain --bundle bundles/reduced-ef --manifest cohort/studies.csv --split test \\
      --max-studies 4 --method ig,gradcam,frames --out explain/
  bedside explain -b B -m M --study S0001 --study S0007 --method saliency,smoothgrad,occlusion \\
      --ig-baseline blurred --gradcam-layer layer3 --out explain/
  bedside explain -b B -m M --study S0001 --method ig --ig-steps 64 --ig-rule riemann_trapezoid -o out/

Methods: saliency (|dy/dx|), input_x_gradient, ig (Integrated Gradients), smoothgrad, gradcam,
occlusion (sliding spatio-temporal windows), frames (frame ablation: temporal importance).
The explained value is the logit of --class for classifiers (default: the last class; with
--probability its softmax probability), the predicted value for regression, the risk score for
survival models. Per study OUT/<study>/ holds <method>.png (animated: frames | overlay; red =
evidence for, blue = against), <method>.npy (float32 [frames, size, size]), temporal.svg and
explanation.json; OUT/summary.json has every study. Clips are averaged in video frame numbers.

Over a dataset (--dataset): the serial occlusion test masks a region per study (the phantom's LV
masks via --mask-column mask_file --mask-root COHORT, or --mask-file) and compares the metric
(AUROC of --class, MAE, or C-index with --time/--event) with equal-area random masks, with
patient-bootstrap CIs; it also reports each method's attribution mass inside the region and the
sanity checks (cascading randomisation fc, layer4 ... stem; --random-label-bundle for the data
randomisation test):
  bedside explain --dataset -b bundles/reduced-ef -m curated/metadata.csv --labels labels.csv \\
      --join-key input_sha256 --study-column study_key --split test --label reduced_ef \\
      --patient patient_key --mask-root cohort --out explain-dataset/
  bedside evaluate preds.csv ... --explanations explain-dataset/explanations.json")]
pub struct Args {
    /// Bundle folder written by `bedside export`.
    #[arg(long, short = 'b')]
    pub bundle: PathBuf,
    /// Manifest CSV (e.g. the phantom's studies.csv).
    #[arg(long, short = 'm')]
    pub manifest: PathBuf,
    /// Label table joined to the manifest on --join-key (e.g. curate's metadata.csv + labels).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Column present in both tables (default: the --study-column).
    #[arg(long)]
    pub join_key: Option<String>,
    /// Study to explain (repeat; default: every study, up to --max-studies).
    #[arg(long)]
    pub study: Vec<String>,
    /// Only studies of this split (without --study).
    #[arg(long)]
    pub split: Option<String>,
    /// Split column (with --split).
    #[arg(long, default_value = "split")]
    pub split_column: String,
    /// Study identifier column (default: the column the bundle was trained with, else
    /// `study_id`).
    #[arg(long)]
    pub study_column: Option<String>,
    /// Array path column.
    #[arg(long, default_value = "array")]
    pub array: String,
    /// At most this many studies (without --study; default 8, with --dataset every study).
    #[arg(long)]
    pub max_studies: Option<usize>,
    /// Methods, comma separated (default ig,gradcam,frames; with --dataset
    /// saliency,input_x_gradient,ig,smoothgrad,gradcam).
    #[arg(long, value_delimiter = ',')]
    pub method: Vec<String>,
    /// Class explained by classifiers (default: the last class).
    #[arg(long)]
    pub class: Option<usize>,
    /// Explain the softmax probability instead of the logit.
    #[arg(long)]
    pub probability: bool,
    /// Clips per study, evenly spaced over the video (0: every clip).
    #[arg(long, default_value_t = 2)]
    pub max_clips: usize,
    /// Integrated Gradients: points on the path.
    #[arg(long, default_value_t = 32)]
    pub ig_steps: usize,
    /// Integrated Gradients: rule (gausslegendre, riemann_left, riemann_right, riemann_middle,
    /// riemann_trapezoid).
    #[arg(long, default_value = "gausslegendre")]
    pub ig_rule: String,
    /// Integrated Gradients: baseline (zeros, blurred, mean).
    #[arg(long, default_value = "zeros")]
    pub ig_baseline: String,
    /// Blurred baseline: Gaussian sigma in pixels.
    #[arg(long, default_value_t = 5.0)]
    pub blur_sigma: f32,
    /// Clips per forward/backward pass inside IG and SmoothGrad (bounds memory).
    #[arg(long, default_value_t = 8)]
    pub internal_batch_size: usize,
    /// SmoothGrad: noisy samples.
    #[arg(long, default_value_t = 16)]
    pub smoothgrad_samples: usize,
    /// SmoothGrad: noise sd as a fraction of the clip's value range.
    #[arg(long, default_value_t = 0.15)]
    pub smoothgrad_noise: f64,
    /// SmoothGrad: seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Grad-CAM: stage (stem, layer1, layer2, layer3, layer4).
    #[arg(long, default_value = "layer4")]
    pub gradcam_layer: String,
    /// Grad-CAM: keep negative evidence too (Captum's relu_attributions=False).
    #[arg(long)]
    pub gradcam_signed: bool,
    /// Occlusion window frames,rows,columns (default: a quarter of the clip per axis).
    #[arg(long, value_delimiter = ',')]
    pub occlusion_window: Option<Vec<usize>>,
    /// Occlusion strides frames,rows,columns (default: half the window).
    #[arg(long, value_delimiter = ',')]
    pub occlusion_stride: Option<Vec<usize>>,
    /// Frame ablation: frames ablated together.
    #[arg(long, default_value_t = 1)]
    pub frame_window: usize,
    /// Frame ablation: fill ablated frames with zeros (the training mean) or the mean frame.
    #[arg(long, default_value = "zeros")]
    pub frame_fill: String,
    /// Frames per second of the animated overlays.
    #[arg(long, default_value_t = 12)]
    pub fps: u16,
    /// Over the dataset: serial occlusion test with region masks (the task metric with the
    /// region masked against --random-masks equal-area masks placed at random), attribution mass
    /// inside the region per method, and sanity checks; writes CSV tables and explanations.json
    /// (the report section `bedside evaluate --explanations` adds).
    #[arg(long)]
    pub dataset: bool,
    /// --dataset: label column (class index for classifiers, value for regression).
    #[arg(long)]
    pub label: Option<String>,
    /// --dataset: time column (survival).
    #[arg(long)]
    pub time: Option<String>,
    /// --dataset: event column (survival, 0/1).
    #[arg(long)]
    pub event: Option<String>,
    /// --dataset: patient column (bootstrap units; default: one patient per study).
    #[arg(long)]
    pub patient: Option<String>,
    /// --dataset: column with each study's mask file (.npy or .npz; e.g. the phantom's mask_file).
    #[arg(long, default_value = "mask_file")]
    pub mask_column: String,
    /// --dataset: folder the mask column's relative paths resolve against (e.g. the phantom
    /// cohort; default: the manifest's folder).
    #[arg(long)]
    pub mask_root: Option<PathBuf>,
    /// --dataset: one mask file for every study instead of --mask-column.
    #[arg(long)]
    pub mask_file: Option<PathBuf>,
    /// --dataset: .npz member holding the mask (default: lv, else the first).
    #[arg(long)]
    pub mask_member: Option<String>,
    /// --dataset: grow the region by this many pixels of the model input.
    #[arg(long, default_value_t = 1)]
    pub mask_dilate: usize,
    /// --dataset: random equal-area masks per study.
    #[arg(long, default_value_t = 10)]
    pub random_masks: usize,
    /// --dataset: studies whose attribution maps are computed for the mass inside the region.
    #[arg(long, default_value_t = 16)]
    pub mass_studies: usize,
    /// --dataset: studies whose first clip is used for the sanity checks (0: no checks).
    #[arg(long, default_value_t = 4)]
    pub sanity_studies: usize,
    /// --dataset: a method passes a sanity check when the mean Spearman correlation and SSIM
    /// with the randomised model are both below this.
    #[arg(long, default_value_t = 0.5)]
    pub sanity_threshold: f64,
    /// --dataset: a bundle of the same architecture trained on permuted labels (data
    /// randomisation test).
    #[arg(long)]
    pub random_label_bundle: Option<PathBuf>,
    /// --dataset: bootstrap replicates (patients resampled).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Backend (flex, or tch when compiled in).
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Output folder.
    #[arg(long, short = 'o')]
    pub out: PathBuf,
}

fn explain_error(e: ExplainError) -> anyhow::Error {
    match e {
        ExplainError::Invalid { .. } => Exit::invalid(e.to_string()).into(),
        ExplainError::Load(e) => super::train::train_error(e),
        other => other.into(),
    }
}

fn options(args: &Args) -> Result<RunOptions, ExplainError> {
    let mut methods = args
        .method
        .iter()
        .filter(|m| !m.trim().is_empty())
        .map(|m| Method::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
    if methods.is_empty() {
        methods = if args.dataset {
            vec![
                Method::Saliency,
                Method::InputXGradient,
                Method::IntegratedGradients,
                Method::SmoothGrad,
                Method::GradCam,
            ]
        } else {
            vec![
                Method::IntegratedGradients,
                Method::GradCam,
                Method::FrameAblation,
            ]
        };
    }
    let baseline = match args.ig_baseline.as_str() {
        "zeros" | "zero" => Baseline::Zeros,
        "mean" => Baseline::Mean,
        "blurred" | "blur" => Baseline::Blurred {
            sigma: args.blur_sigma,
        },
        other => {
            return Err(ExplainError::Invalid {
                message: format!("unknown baseline `{other}` (zeros, blurred, mean)"),
            });
        }
    };
    let frame_fill = match args.frame_fill.as_str() {
        "zeros" | "zero" => FrameFill::Zeros,
        "mean" | "mean_frame" => FrameFill::MeanFrame,
        other => {
            return Err(ExplainError::Invalid {
                message: format!("unknown frame fill `{other}` (zeros, mean)"),
            });
        }
    };
    let occlusion = match (&args.occlusion_window, &args.occlusion_stride) {
        (Some(w), s) => {
            let s = s
                .clone()
                .unwrap_or_else(|| w.iter().map(|v| (v / 2).max(1)).collect());
            if w.len() != 3 || s.len() != 3 {
                return Err(ExplainError::Invalid {
                    message: "--occlusion-window and --occlusion-stride take frames,rows,columns"
                        .into(),
                });
            }
            Some(OcclusionOptions {
                window: [3, w[0], w[1], w[2]],
                strides: [3, s[0], s[1], s[2]],
                baseline: 0.0,
                batch_size: args.internal_batch_size,
            })
        }
        (None, Some(_)) => {
            return Err(ExplainError::Invalid {
                message: "--occlusion-stride needs --occlusion-window".into(),
            });
        }
        (None, None) => None,
    };
    Ok(RunOptions {
        // Filled in from the bundle when not given (`with_bundle_study_column`).
        study_column: args.study_column.clone().unwrap_or_default(),
        array_column: args.array.clone(),
        labels: args.labels.clone(),
        join_key: args.join_key.clone(),
        studies: args.study.clone(),
        split: args.split.clone().map(|s| (args.split_column.clone(), s)),
        max_studies: Some(args.max_studies.unwrap_or(8)),
        methods,
        method_options: MethodOptions {
            ig: IgOptions {
                steps: args.ig_steps,
                quadrature: Quadrature::parse(&args.ig_rule)?,
                baseline,
                internal_batch_size: args.internal_batch_size,
            },
            smoothgrad: SmoothGradOptions {
                samples: args.smoothgrad_samples,
                noise_level: args.smoothgrad_noise,
                seed: args.seed,
                internal_batch_size: args.internal_batch_size,
            },
            gradcam: GradCamOptions {
                stage: Stage::parse(&args.gradcam_layer)?,
                relu: !args.gradcam_signed,
            },
            occlusion,
            frame_window: Some(args.frame_window),
            frame_fill,
        },
        class: args.class,
        probability: args.probability,
        max_clips: (args.max_clips > 0).then_some(args.max_clips),
        fps: args.fps,
    })
}

fn dataset_options(args: &Args, run: RunOptions) -> DatasetOptions {
    let mask = match &args.mask_file {
        Some(path) => MaskSource::File {
            path: path.clone(),
            member: args.mask_member.clone(),
        },
        None => MaskSource::Column {
            column: args.mask_column.clone(),
            root: args.mask_root.clone(),
            member: args.mask_member.clone(),
        },
    };
    DatasetOptions {
        study_column: run.study_column,
        array_column: run.array_column,
        labels: run.labels,
        join_key: run.join_key,
        split: run.split,
        max_studies: args.max_studies,
        patient_column: args.patient.clone(),
        label_column: args.label.clone(),
        time_column: args.time.clone(),
        event_column: args.event.clone(),
        class: args.class,
        mask,
        dilate: args.mask_dilate,
        placements: PlacementOptions {
            count: args.random_masks,
            ..PlacementOptions::default()
        },
        fill: RegionFill::TrainingMean,
        seed: args.seed,
        max_clips: run.max_clips,
        batch_size: args.internal_batch_size,
        methods: run.methods,
        method_options: run.method_options,
        mass_studies: args.mass_studies,
        sanity: (args.sanity_studies > 0).then_some(SanityOptions {
            studies: args.sanity_studies,
            threshold: args.sanity_threshold,
            seed: args.seed.wrapping_add(7),
        }),
        bootstrap: BootstrapOptions {
            replicates: args.bootstrap,
            seed: args.seed,
            confidence: 0.95,
        },
    }
}

/// The study column the bundle was trained with, where `--study-column` was not given (as
/// `bedside predict` does).
fn with_bundle_study_column(
    mut options: RunOptions,
    bundle: &bedside_ml::bundle::Bundle,
) -> RunOptions {
    if options.study_column.is_empty() {
        options.study_column = bundle
            .manifest
            .training_data
            .study_column
            .clone()
            .unwrap_or_else(|| "study_id".into());
    }
    options
}

fn run_dataset(args: &Args, options: RunOptions, ctx: &Ctx) -> anyhow::Result<()> {
    let start = Instant::now();
    let device = BackendKind::parse(&args.backend)
        .and_then(|b| b.device())
        .map_err(|e| Exit::invalid(e.to_string()))?;
    let bundle =
        bedside_ml::bundle::load(&args.bundle, &device).map_err(super::train::train_error)?;
    let random = args
        .random_label_bundle
        .as_ref()
        .map(|p| bedside_ml::bundle::load(p, &device))
        .transpose()
        .map_err(super::train::train_error)?;
    let options = dataset_options(args, with_bundle_study_column(options, &bundle));
    ctx.say(format!(
        "Occlusion test, attribution mass and sanity checks of {} over {}",
        bundle.manifest.name,
        args.manifest.display()
    ));
    let bar = ctx.progress(0, "studies");
    let section = explain_dataset(
        &bundle,
        random.as_ref(),
        &args.manifest,
        &options,
        &args.out,
        &device,
        &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
    )
    .map_err(explain_error)?;
    bar.finish_and_clear();
    ctx.say(format!(
        "{} studies of {} patients in {:.1} s -> {}",
        section.studies,
        section.patients,
        start.elapsed().as_secs_f64(),
        args.out.display()
    ));
    for line in headline(&section) {
        ctx.say(format!("  {line}"));
    }
    for note in &section.notes {
        ctx.say(format!("  note: {note}"));
    }
    ctx.say(format!(
        "  tables: occlusion_test.csv, occlusion_studies.csv, attribution_mass.csv, sanity.csv, sanity_verdicts.csv; section: {} (bedside evaluate --explanations)",
        args.out.join("explanations.json").display()
    ));
    Ok(())
}

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let start = Instant::now();
    let options = options(&args).map_err(explain_error)?;
    if args.dataset {
        return run_dataset(&args, options, ctx);
    }
    let device = BackendKind::parse(&args.backend)
        .and_then(|b| b.device())
        .map_err(|e| Exit::invalid(e.to_string()))?;
    let bundle =
        bedside_ml::bundle::load(&args.bundle, &device).map_err(super::train::train_error)?;
    let options = with_bundle_study_column(options, &bundle);
    let target = Target::for_task(&bundle.manifest.model.task, args.class)
        .map_err(explain_error)?
        .describe();
    ctx.say(format!(
        "Explaining {} ({}) with {}",
        bundle.manifest.name,
        target,
        options
            .methods
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let bar = ctx.progress(0, "explain");
    let summary = explain_manifest(
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
    .map_err(explain_error)?;
    bar.finish_and_clear();
    let clips: usize = summary.studies.iter().map(|s| s.clip_starts.len()).sum();
    ctx.say(format!(
        "Explained {} studies ({clips} clips) in {:.1} s -> {}",
        summary.studies.len(),
        start.elapsed().as_secs_f64(),
        args.out.display()
    ));
    for study in &summary.studies {
        let mean = study.scores.iter().sum::<f32>() / study.scores.len().max(1) as f32;
        let peaks: Vec<String> = study
            .methods
            .iter()
            .filter_map(|(m, s)| s.peak_frame.map(|f| format!("{m} {f}")))
            .collect();
        ctx.say(format!(
            "  {}: {} = {mean:.3}; peak frame: {}",
            study.folder,
            summary.target,
            peaks.join(", ")
        ));
    }
    ctx.say(format!(
        "  per study: <method>.png, <method>.npy, temporal.svg, explanation.json; all: {}",
        args.out.join("summary.json").display()
    ));
    Ok(())
}
