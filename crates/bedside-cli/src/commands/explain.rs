//! `bedside explain`: attributions of a bundle's predictions for studies of a manifest.

use std::path::PathBuf;
use std::time::Instant;

use bedside_explain::ExplainError;
use bedside_explain::gradcam::GradCamOptions;
use bedside_explain::gradient::{Baseline, IgOptions, Quadrature, SmoothGradOptions};
use bedside_explain::occlusion::{FrameFill, OcclusionOptions};
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
explanation.json; OUT/summary.json has every study. Clips are averaged in video frame numbers.")]
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
    /// Study identifier column.
    #[arg(long, default_value = "study_id")]
    pub study_column: String,
    /// Array path column.
    #[arg(long, default_value = "array")]
    pub array: String,
    /// At most this many studies (without --study).
    #[arg(long, default_value_t = 8)]
    pub max_studies: usize,
    /// Methods, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "ig,gradcam,frames")]
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
    let methods = args
        .method
        .iter()
        .filter(|m| !m.trim().is_empty())
        .map(|m| Method::parse(m))
        .collect::<Result<Vec<_>, _>>()?;
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
        study_column: args.study_column.clone(),
        array_column: args.array.clone(),
        labels: args.labels.clone(),
        join_key: args.join_key.clone(),
        studies: args.study.clone(),
        split: args.split.clone().map(|s| (args.split_column.clone(), s)),
        max_studies: Some(args.max_studies),
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

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let start = Instant::now();
    let options = options(&args).map_err(explain_error)?;
    let device = BackendKind::parse(&args.backend)
        .and_then(|b| b.device())
        .map_err(|e| Exit::invalid(e.to_string()))?;
    let bundle =
        bedside_ml::bundle::load(&args.bundle, &device).map_err(super::train::train_error)?;
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
