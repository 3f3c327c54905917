//! `bedside demo`: the whole pipeline on a fresh synthetic cohort.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser as _;

use bedside_core::rng::Rng;
use bedside_phantom::{BiasSpec, PhantomConfig};

use crate::ui::Ctx;

mod explain;
pub(crate) mod models;

/// Arguments of `bedside demo`.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  bedside demo                     # writes ./bedside-demo
  bedside demo /tmp/demo --force   # replace a previous demo there
  bedside demo --epochs 30 --fine-tune-epochs 10   # train longer (better models, slower)
  bedside demo --no-train          # cohort, curation and the reader audit only (about a minute)
  bedside demo --bias none         # no injected label noise
  bedside demo --data-randomisation   # add the permuted-label sanity check (two more trainings)

Stages: synth (phantom cohort with label noise injected into one subgroup); curate
(de-identification, burned-in text removal, metadata table, arrays and sector-cropped copies);
labels (the cohort's label sheet joined to the curated arrays by input SHA-256); train three
compact R(2+1)D models (ejection fraction from scratch; then reduced EF with evidential
uncertainty and time to event fused with age, both started from the EF model's backbone),
export them as bundles and predict the held-out test patients; explain the reduced-EF model
(attributions of a few studies, the serial occlusion test with the phantom's left-ventricle masks
against equal-area random masks, sanity checks); evaluate the models against the phantom's
ground truth, with the explanations as a report section; evaluate a reference reader against the recorded
labels, whose subgroup audit finds the injected noise. Every stage runs the subcommand a user
would, with the configuration files written into the demo folder.")]
pub struct Args {
    /// Working folder for everything the demo makes.
    #[arg(default_value = "bedside-demo")]
    pub dir: PathBuf,
    /// Patients in the phantom cohort (the demo keeps images at 240x320 to stay within minutes).
    #[arg(long, default_value_t = 240)]
    pub patients: usize,
    /// Seed of the phantom cohort, the models and the reference reader.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Label noise injected into a subgroup (COLUMN=VALUE:NOISE), or `none`.
    #[arg(long, default_value = "sex=F:0.25")]
    pub bias: String,
    /// Bootstrap replicates of the evaluations.
    #[arg(long, default_value_t = 500)]
    pub bootstrap: usize,
    /// Training epochs of the ejection-fraction model, trained from scratch (the defaults keep
    /// the demo within 10 minutes on 2 cores).
    #[arg(long, default_value_t = 12)]
    pub epochs: usize,
    /// Training epochs of the reduced-EF and survival models, which start from the EF model's
    /// backbone (`model.init_from`).
    #[arg(long, default_value_t = 4)]
    pub fine_tune_epochs: usize,
    /// Side of the sector-cropped frames the models see.
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u32).range(16..=256))]
    pub size: u32,
    /// Clips per test study at prediction time (evenly spaced; predictions are their mean).
    #[arg(long, default_value_t = 4)]
    pub max_clips: usize,
    /// Also run the data-randomisation sanity check (Adebayo et al. 2018): train the EF and
    /// reduced-EF models again, the same way, on labels permuted across studies, and compare
    /// each method's maps of the two reduced-EF models. Adds two trainings (about half the
    /// demo's time again), so it is off by default.
    #[arg(long)]
    pub data_randomisation: bool,
    /// Skip curation, training and prediction (cohort and reader audit only).
    #[arg(long)]
    pub no_train: bool,
    /// Replace a previous demo in the folder.
    #[arg(long)]
    pub force: bool,
}

/// Wraps `bedside evaluate`'s arguments so the demo can run it as a user would.
#[derive(clap::Parser, Debug)]
struct EvaluateCommand {
    #[command(flatten)]
    args: super::evaluate::Args,
}

/// Wraps `bedside curate`'s arguments.
#[derive(clap::Parser, Debug)]
struct CurateCommand {
    #[command(flatten)]
    args: super::curate::Args,
}

/// Curates a phantom cohort's DICOM folder as a user would (`bedside curate DICOM --out
/// CURATED --secret-dir SECRET --resize SIZE`).
pub(crate) fn curate_cohort(
    dicom: &Path,
    curated: &Path,
    secret: &Path,
    size: u32,
    ctx: &Ctx,
) -> anyhow::Result<()> {
    let size = size.to_string();
    let curate = CurateCommand::try_parse_from(strings(&[
        "curate",
        &dicom.display().to_string(),
        "--out",
        &curated.display().to_string(),
        "--secret-dir",
        &secret.display().to_string(),
        "--resize",
        &size,
    ]))
    .context("building the curate arguments")?;
    super::curate::run(curate.args, ctx)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Runs the demo.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    let start = Instant::now();
    let bias = match args.bias.as_str() {
        "none" | "" => Vec::new(),
        text => vec![BiasSpec::parse(text).map_err(crate::ui::Exit::invalid)?],
    };
    let stages = match (args.no_train, args.data_randomisation) {
        (true, _) => 2,
        (false, false) => 7,
        (false, true) => 8,
    };
    let mut stage = 0;
    let mut next = |what: &str| {
        stage += 1;
        ctx.say("");
        ctx.say(format!(
            "[{stage}/{stages}] {what}  ({:.0} s)",
            start.elapsed().as_secs_f64()
        ));
    };
    ctx.say(format!("Bedside demo in {}", args.dir.display()));
    next("synth: phantom echocardiography cohort");
    let config = PhantomConfig {
        seed: args.seed,
        patients: args.patients,
        rows: 240,
        columns: 320,
        bias: bias.clone(),
        ..PhantomConfig::default()
    };
    let cohort_dir = args.dir.join("cohort");
    let summary = super::synth::phantom(&config, &cohort_dir, args.force, ctx)?;
    super::synth::print_summary(&summary, ctx);

    let mut model_eval = None;
    let mut explained = None;
    if !args.no_train {
        next("curate: de-identify, remove burned-in text, tables, arrays and cropped copies");
        let curated = args.dir.join("curated");
        if args.force && curated.exists() {
            std::fs::remove_dir_all(&curated)
                .with_context(|| format!("removing {}", curated.display()))?;
        }
        curate_cohort(
            &cohort_dir.join("dicom"),
            &curated,
            &args.dir.join("secret"),
            args.size,
            ctx,
        )?;

        next("labels: join the label sheet to the curated arrays by input SHA-256");
        let labels = args.dir.join("labels.csv");
        let rows = models::label_sheet(&cohort_dir, &labels)?;
        ctx.say(format!("  {rows} studies -> {}", labels.display()));

        next("train: one compact R(2+1)D per task, exported as a bundle, then the test split");
        let budget = models::Budget {
            epochs: args.epochs,
            fine_tune_epochs: args.fine_tune_epochs,
            size: args.size as usize,
            max_clips: args.max_clips,
            seed: args.seed,
        };
        let mut parts = Vec::new();
        for task in models::TASKS {
            ctx.say(format!("  -- {}: {}", task.name, task.what));
            let predictions = models::train_task(&args.dir, &task, &budget, ctx)?;
            parts.push((task, predictions));
        }
        let merged = args.dir.join("predictions").join("test.csv");
        let rows = models::merge_predictions(&parts, &merged)?;
        ctx.say(format!("  {rows} test studies -> {}", merged.display()));

        let random_label = if args.data_randomisation {
            next("train on permuted labels: EF, then reduced EF, for the data-randomisation check");
            let permuted = args.dir.join("labels-permuted.csv");
            let rows = models::permuted_label_sheet(
                &labels,
                &permuted,
                &models::LEARNED_COLUMNS,
                args.seed,
            )?;
            ctx.say(format!(
                "  {rows} studies, labels shuffled across studies -> {}",
                permuted.display()
            ));
            let mut bundle = None;
            for task in models::TASKS.iter().filter(|t| t.name != "survival") {
                ctx.say(format!(
                    "  -- {} (permuted labels): {}",
                    task.name, task.what
                ));
                bundle = Some(models::train_and_export(
                    &args.dir,
                    task,
                    &budget,
                    models::Labels::Permuted,
                    ctx,
                )?);
            }
            bundle
        } else {
            None
        };

        next("explain: attributions, left-ventricle occlusion test, sanity checks (reduced EF)");
        let stage = explain::explain_stage(
            &args.dir,
            &args.dir.join("bundles").join("reduced-ef"),
            random_label.as_deref(),
            &mut |line| ctx.say(line),
        )?;
        let section = stage.section.clone();
        explained = Some(stage);

        next("evaluate: the models against the phantom's ground truth (test patients)");
        let eval_dir = args.dir.join("evaluation-models");
        evaluate(
            &Evaluation {
                predictions: &merged,
                manifest: &labels,
                label: "reduced_ef",
                target: "ef",
                survival_prefix: Some("surv@"),
                explanations: Some(&section),
                out: &eval_dir,
                title: "Bedside demo: R(2+1)D models on held-out phantom patients",
            },
            &args,
            ctx,
        )?;
        model_eval = Some(eval_dir);
    }

    next("evaluate: reference reader against the recorded labels (validation + test patients)");
    let reader_dir = args.dir.join("reference-reader");
    let predictions = reader_dir.join("predictions.csv");
    let rows = reference_reader(&cohort_dir.join("studies.csv"), &predictions, args.seed)?;
    let eval_dir = args.dir.join("evaluation");
    ctx.say(format!("  {rows} studies scored by the reference reader"));
    evaluate(
        &Evaluation {
            predictions: &predictions,
            manifest: &cohort_dir.join("studies.csv"),
            label: "reduced_ef_observed",
            target: "ef_observed",
            survival_prefix: None,
            explanations: None,
            out: &eval_dir,
            title: "Bedside demo: reference reader on the phantom cohort",
        },
        &args,
        ctx,
    )?;
    if let Some(b) = bias.first() {
        ctx.say(format!(
            "  label noise was injected into {} ({}% of its labels flipped at random); AUROC by group:",
            b.group,
            (b.noise * 100.0).round()
        ));
        let column = b.column_value().map(|(c, _)| c).unwrap_or_default();
        for line in group_auroc(&eval_dir.join("evaluation.json"), column)? {
            ctx.say(format!("    {line}"));
        }
    }

    ctx.say("");
    ctx.say(format!(
        "Demo finished in {:.1} s. What it made:",
        start.elapsed().as_secs_f64()
    ));
    ctx.say(format!(
        "  {}  synthetic cohort (DICOM + ground truth)",
        cohort_dir.display()
    ));
    if let Some(model_eval) = &model_eval {
        ctx.say(format!(
            "  {}  de-identified DICOM, metadata table, arrays",
            args.dir.join("curated").display()
        ));
        ctx.say(format!(
            "  {}  training configurations; {} runs; {} bundles",
            args.dir.join("configs").display(),
            args.dir.join("runs").display(),
            args.dir.join("bundles").display()
        ));
        for line in headline(&model_eval.join("evaluation.json"))? {
            ctx.say(format!("    {line}"));
        }
        ctx.say(format!(
            "  {}  model evaluation report (HTML) and numbers (JSON)",
            model_eval.join("evaluation.html").display()
        ));
    }
    if let Some(stage) = &explained {
        ctx.say(format!(
            "  {}  per-study attributions (APNG overlays, temporal curves, maps)",
            stage.studies.display()
        ));
        for line in &stage.lines {
            ctx.say(format!("    {line}"));
        }
        ctx.say(format!(
            "  {}  occlusion test, attribution mass and sanity checks",
            stage.section.display()
        ));
    }
    ctx.say(format!(
        "  {}  reference-reader predictions",
        predictions.display()
    ));
    ctx.say(format!(
        "  {}  reference-reader evaluation and subgroup audit",
        eval_dir.join("evaluation.html").display()
    ));
    Ok(())
}

/// One `bedside evaluate` run of the demo: what differs between the model and reader runs.
struct Evaluation<'a> {
    predictions: &'a Path,
    manifest: &'a Path,
    /// Binary label column (reduced EF).
    label: &'a str,
    /// Continuous target column (EF).
    target: &'a str,
    /// Prefix of survival-curve columns, when the predictions have them.
    survival_prefix: Option<&'a str>,
    /// The explanations section (`explanations.json`) to add to the report.
    explanations: Option<&'a Path>,
    out: &'a Path,
    title: &'a str,
}

/// Runs `bedside evaluate` as a user would, with the columns every demo table shares.
fn evaluate(e: &Evaluation<'_>, args: &Args, ctx: &Ctx) -> anyhow::Result<()> {
    let (predictions, manifest, out) = (
        e.predictions.display().to_string(),
        e.manifest.display().to_string(),
        e.out.display().to_string(),
    );
    let (bootstrap, seed) = (args.bootstrap.to_string(), args.seed.to_string());
    let mut argv = vec![
        "evaluate",
        &predictions,
        "--manifest",
        &manifest,
        "--id",
        "study_key",
        "--patient",
        "patient_key",
        "--score",
        "prob_reduced_ef",
        "--label",
        e.label,
        "--time",
        "time_days",
        "--event",
        "event",
        "--risk",
        "risk",
        "--target",
        e.target,
        "--predicted",
        "ef_pred",
        "--uncertainty",
        "uncertainty",
        "--group",
        "sex",
        "--group",
        "site",
        "--min-group-patients",
        "10",
        "--bootstrap",
        &bootstrap,
        "--seed",
        &seed,
        "--out",
        &out,
        "--title",
        e.title,
    ];
    if let Some(prefix) = e.survival_prefix {
        argv.extend(["--survival-prefix", prefix]);
    }
    let explanations = e.explanations.map(|p| p.display().to_string());
    if let Some(path) = &explanations {
        argv.extend(["--explanations", path.as_str()]);
    }
    let eval = EvaluateCommand::try_parse_from(strings(&argv))
        .context("building the demo's evaluate arguments")?;
    super::evaluate::run(eval.args, ctx)
}

/// The headline numbers of an evaluation JSON, each with its 95% CI: AUROC, EF MAE, C-index.
fn headline(json: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read(json).with_context(|| format!("reading {}", json.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&text)?;
    let mut out = Vec::new();
    for (section, metric, words) in [
        ("classification", "auroc", "reduced EF  AUROC"),
        ("regression", "mae", "EF          MAE  "),
        ("survival", "harrell_c", "survival    C-index"),
    ] {
        let m = &v[section]["metrics"][metric];
        if let Some(value) = m["value"].as_f64() {
            out.push(format!(
                "{words} {value:.3} ({:.3} to {:.3})",
                m["lower"].as_f64().unwrap_or(f64::NAN),
                m["upper"].as_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    Ok(out)
}

/// Per-group AUROC lines (with 95% CI) of one grouping in the evaluation JSON.
fn group_auroc(json: &Path, column: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read(json).with_context(|| format!("reading {}", json.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&text)?;
    let mut out = Vec::new();
    for grouping in v["subgroups"].as_array().into_iter().flatten() {
        if grouping["grouping"].as_str() != Some(column) {
            continue;
        }
        for row in grouping["rows"].as_array().into_iter().flatten() {
            let m = &row["metrics"]["auroc"];
            if let (Some(g), Some(value)) = (row["group"].as_str(), m["value"].as_f64()) {
                out.push(format!(
                    "{g:<12} AUROC {value:.3} ({:.3} to {:.3}), {} patients",
                    m["lower"].as_f64().unwrap_or(f64::NAN),
                    m["upper"].as_f64().unwrap_or(f64::NAN),
                    row["patients"].as_u64().unwrap_or(0)
                ));
            }
        }
    }
    Ok(out)
}

/// Writes predictions of a reference reader for every validation and test study: the EF traced
/// from the ground-truth ventricle (`clip_ef`) plus reader noise (SD 3 points), turned into a
/// probability of reduced EF, an EF estimate, a risk score and an uncertainty. Returns the row
/// count.
fn reference_reader(studies: &Path, out: &Path, seed: u64) -> anyhow::Result<usize> {
    let mut reader = csv::Reader::from_path(studies)
        .with_context(|| format!("reading {}", studies.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{} has no column {name}", studies.display()))
    };
    let (key, split, clip_ef) = (col("study_key")?, col("split")?, col("clip_ef")?);
    let mut rng = Rng::seed_from(seed).fork(0x00EE_DE40);
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "study_key",
        "prob_reduced_ef",
        "ef_pred",
        "risk",
        "uncertainty",
    ])?;
    let mut rows = 0;
    for record in reader.records() {
        let record = record?;
        if record.get(split) == Some("train") {
            continue;
        }
        let ef: f64 = record
            .get(clip_ef)
            .and_then(|v| v.parse().ok())
            .context("clip_ef is not a number")?;
        let measured = ef + rng.normal_with(0.0, 3.0);
        let prob = 1.0 / (1.0 + ((measured - 40.0) / 3.0).exp());
        w.write_record([
            record.get(key).unwrap_or_default().to_string(),
            format!("{prob:.6}"),
            format!("{measured:.3}"),
            format!("{:.6}", (55.0 - measured) / 10.0),
            format!("{:.6}", 4.0 * prob * (1.0 - prob)),
        ])?;
        rows += 1;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!(e.to_string()))?;
    bedside_core::fsio::write_atomic(out, &bytes)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(rows)
}
