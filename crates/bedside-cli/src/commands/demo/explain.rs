//! The demo's explanation stage: per-study attributions of a few test studies, and over the
//! test split the serial occlusion test with the phantom's left-ventricle masks, the attribution
//! mass inside the ventricle and the sanity checks, sized for the demo's time budget.
//!
//! It reads what the earlier stages left in the demo folder (`curated/metadata.csv`,
//! `labels.csv` with the cohort's `mask_file` column, the cohort's `truth/masks/*.npz`) and
//! writes `explanations/studies/` and `explanations/dataset/` (whose `explanations.json` is the
//! section `bedside evaluate --explanations` adds to the report).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bedside_eval::bootstrap::BootstrapOptions;
use bedside_explain::dataset::{
    DatasetOptions, MaskSource, SanityOptions, explain_dataset, headline,
};
use bedside_explain::gradient::IgOptions;
use bedside_explain::region::PlacementOptions;
use bedside_explain::run::{RunOptions, explain_manifest};
use bedside_explain::study::{Method, MethodOptions};
use bedside_ml::train::config::TaskKind;

/// What the stage made.
#[derive(Debug, Clone)]
pub struct ExplainStage {
    /// Per-study outputs (`summary.json`, one folder per study).
    pub studies: PathBuf,
    /// The report section (`explanations.json`, with `explanations.html` and the CSV tables).
    pub section: PathBuf,
    /// Headline lines to print.
    pub lines: Vec<String>,
}

/// Explain `bundle` (one of the demo's bundles, e.g. `bundles/reduced-ef`) on the demo in `dir`:
/// two test studies explained per study, then the dataset tests on the test split with the
/// task's true outcome (`reduced_ef` AUROC, `ef` MAE, or `time_days`/`event` C-index).
/// `random_label`, the same model trained on permuted labels, adds the data-randomisation test.
pub fn explain_stage(
    dir: &Path,
    bundle: &Path,
    random_label: Option<&Path>,
    say: &mut dyn FnMut(String),
) -> anyhow::Result<ExplainStage> {
    let device = bedside_ml::backend::BackendKind::parse("flex")
        .and_then(|b| b.device())
        .context("opening the flex backend")?;
    let loaded = bedside_ml::bundle::load(bundle, &device)
        .with_context(|| format!("loading {}", bundle.display()))?;
    let random_label = random_label
        .map(|path| {
            bedside_ml::bundle::load(path, &device)
                .with_context(|| format!("loading {}", path.display()))
        })
        .transpose()?;
    let manifest = dir.join("curated").join("metadata.csv");
    let labels = dir.join("labels.csv");
    let out = dir.join("explanations");
    let ig = IgOptions {
        steps: 16,
        internal_batch_size: 8,
        ..IgOptions::default()
    };
    let method_options = MethodOptions {
        ig,
        ..MethodOptions::default()
    };

    let per_study = RunOptions {
        study_column: "study_key".into(),
        labels: Some(labels.clone()),
        join_key: Some("input_sha256".into()),
        split: Some(("split".into(), "test".into())),
        max_studies: Some(2),
        methods: vec![
            Method::IntegratedGradients,
            Method::GradCam,
            Method::FrameAblation,
        ],
        method_options: method_options.clone(),
        max_clips: Some(1),
        ..RunOptions::default()
    };
    let studies = out.join("studies");
    let summary = explain_manifest(
        &loaded,
        &manifest,
        &per_study,
        &studies,
        &device,
        &mut |_, _| {},
    )
    .with_context(|| "explaining test studies".to_string())?;
    say(format!(
        "  {} studies explained (IG, Grad-CAM, frame ablation) -> {}",
        summary.studies.len(),
        studies.display()
    ));

    // The true outcomes (not the recorded ones with injected noise): in the phantom EF, and so
    // reduced EF, depends on the ventricle alone; survival depends on EF and covariates.
    let (label_column, time_column, event_column) = match loaded.manifest.model.task.kind {
        TaskKind::Classification | TaskKind::Evidential => (Some("reduced_ef".into()), None, None),
        TaskKind::Regression => (Some("ef".into()), None, None),
        TaskKind::Survival => (None, Some("time_days".into()), Some("event".into())),
    };
    let dataset = DatasetOptions {
        study_column: "study_key".into(),
        labels: Some(labels),
        join_key: Some("input_sha256".into()),
        split: Some(("split".into(), "test".into())),
        patient_column: Some("patient_key".into()),
        label_column,
        time_column,
        event_column,
        mask: MaskSource::Column {
            column: "mask_file".into(),
            root: Some(dir.join("cohort")),
            member: Some("lv".into()),
        },
        placements: PlacementOptions {
            count: 5,
            ..PlacementOptions::default()
        },
        max_clips: Some(2),
        methods: vec![
            Method::Saliency,
            Method::IntegratedGradients,
            Method::GradCam,
        ],
        // Eight steps keep the maps of the mass and the sanity checks within the demo's budget.
        method_options: MethodOptions {
            ig: IgOptions {
                steps: 8,
                ..method_options.ig
            },
            ..method_options
        },
        mass_studies: 6,
        sanity: Some(SanityOptions {
            studies: 2,
            ..SanityOptions::default()
        }),
        bootstrap: BootstrapOptions {
            replicates: 500,
            ..BootstrapOptions::default()
        },
        ..DatasetOptions::default()
    };
    let dataset_dir = out.join("dataset");
    let section = explain_dataset(
        &loaded,
        random_label.as_ref(),
        &manifest,
        &dataset,
        &dataset_dir,
        &device,
        &mut |_, _| {},
    )
    .with_context(|| "occlusion test over the test split".to_string())?;
    let lines = headline(&section);
    for line in &lines {
        say(format!("    {line}"));
    }
    Ok(ExplainStage {
        studies,
        section: dataset_dir.join("explanations.json"),
        lines,
    })
}
