//! The demo's learning stages: join the cohort's label sheet to the curated arrays, train one
//! compact R(2+1)D per clinical task, export bundles, predict the held-out patients and merge the
//! predictions into one table for `bedside evaluate`.
//!
//! Every step runs the same subcommand a user would (`train`, `export`, `predict`) with
//! configuration files written into the demo folder, so a user can rerun or edit any of them.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser as _;
use sha2::Digest as _;

use crate::ui::Ctx;

/// One model the demo trains.
#[derive(Debug, Clone, Copy)]
pub struct Task {
    /// Short name (config, run and bundle folder).
    pub name: &'static str,
    /// What it predicts, in words.
    pub what: &'static str,
    /// The `[task]` table and its label columns, as TOML.
    pub toml: &'static str,
    /// Metric that picks the best epoch.
    pub select_by: &'static str,
    /// Prediction columns renamed into the merged table (`from`, `to`).
    pub columns: &'static [(&'static str, &'static str)],
    /// Prediction columns whose name starts with this prefix are copied as they are.
    pub keep_prefix: Option<&'static str>,
    /// The task whose exported bundle starts this model's backbone (`model.init_from`), so
    /// the model fine-tunes features already learnt on the same images.
    pub starts_from: Option<&'static str>,
}

/// The three clinical tasks of the demo.
pub const TASKS: [Task; 3] = [
    Task {
        name: "ef",
        what: "ejection fraction (regression, Huber loss)",
        toml: r#"[data.columns]
study = "study_key"
value = "ef_observed"
groups = ["sex", "site"]

[task]
kind = "regression"
regression_loss = "huber"
huber_delta = 1.0
"#,
        select_by: "val_mae",
        columns: &[("value", "ef_pred"), ("value_std", "ef_pred_std")],
        keep_prefix: None,
        starts_from: None,
    },
    Task {
        name: "reduced-ef",
        what: "reduced EF < 40 % (evidential classification, Dirichlet uncertainty)",
        toml: r#"[data.columns]
study = "study_key"
class = "reduced_ef_observed"
groups = ["sex", "site"]

[task]
kind = "evidential"
classes = 2
evidence = "softplus"
evidential_term = "mse"
annealing_epochs = 4
"#,
        select_by: "val_auroc",
        columns: &[
            ("prob_1", "prob_reduced_ef"),
            ("prob_1_std", "prob_reduced_ef_std"),
            ("uncertainty", "uncertainty"),
        ],
        keep_prefix: None,
        starts_from: Some("ef"),
    },
    Task {
        name: "survival",
        what: "time to cardiac event (discrete-time logistic hazard, fused with age)",
        toml: r#"[data.columns]
study = "study_key"
time = "time_days"
event = "event"
groups = ["sex", "site"]

[task]
kind = "survival"
survival = "logistic_hazard"
time_bins = 8
tabular = ["age"]
"#,
        select_by: "val_cindex",
        columns: &[("risk", "risk"), ("risk_std", "risk_std")],
        keep_prefix: Some("surv@"),
        starts_from: Some("ef"),
    },
];

/// How the demo trains.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Epochs of a model trained from scratch.
    pub epochs: usize,
    /// Epochs of a model started from another task's backbone.
    pub fine_tune_epochs: usize,
    /// Side of the sector-cropped frames (`bedside curate --resize`).
    pub size: usize,
    /// Clips per study at prediction time (evenly spaced).
    pub max_clips: usize,
    /// Seed of every model.
    pub seed: u64,
}

/// Writes `labels.csv`: the cohort's `studies.csv` with the SHA-256 of each study's DICOM file
/// in front, the key that `bedside curate`'s `metadata.csv` also records (`input_sha256`), so
/// labels join the curated arrays without any identifier. Returns the row count.
pub fn label_sheet(cohort: &Path, out: &Path) -> anyhow::Result<usize> {
    let studies = cohort.join("studies.csv");
    let mut reader = csv::Reader::from_path(&studies)
        .with_context(|| format!("reading {}", studies.display()))?;
    let header = reader.headers()?.clone();
    let file_col = header
        .iter()
        .position(|h| h == "file")
        .with_context(|| format!("{} has no `file` column", studies.display()))?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(std::iter::once("input_sha256").chain(header.iter()))?;
    let mut rows = 0;
    for record in reader.records() {
        let record = record?;
        let file = cohort.join(record.get(file_col).unwrap_or_default());
        let digest = sha256_file(&file)?;
        w.write_record(std::iter::once(digest.as_str()).chain(record.iter()))?;
        rows += 1;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!(e.to_string()))?;
    bedside_core::fsio::write_atomic(out, &bytes)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(rows)
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Which labels a model learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// The cohort's recorded labels (`labels.csv`).
    Recorded,
    /// The same labels shuffled across studies (`labels-permuted.csv`): the model of the
    /// data-randomisation sanity check, whose names carry a `-permuted` suffix.
    Permuted,
}

impl Labels {
    fn suffix(self) -> &'static str {
        match self {
            Self::Recorded => "",
            Self::Permuted => "-permuted",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Self::Recorded => "labels.csv",
            Self::Permuted => "labels-permuted.csv",
        }
    }
}

/// The label columns the demo's models learn from, shuffled together by
/// [`permuted_label_sheet`] so that each row keeps a consistent set of labels.
pub const LEARNED_COLUMNS: [&str; 4] = ["ef_observed", "reduced_ef_observed", "time_days", "event"];

/// Writes `out`: the label sheet `labels` with the values of `columns` moved, row for row, to
/// a seeded random permutation of the rows (every other column, the join key included, stays).
/// The images no longer say anything about the labels, which is what the data-randomisation
/// test of Adebayo et al. (2018) trains on. Returns the row count.
pub fn permuted_label_sheet(
    labels: &Path,
    out: &Path,
    columns: &[&str],
    seed: u64,
) -> anyhow::Result<usize> {
    let mut reader =
        csv::Reader::from_path(labels).with_context(|| format!("reading {}", labels.display()))?;
    let header = reader.headers()?.clone();
    let picked: Vec<usize> = columns
        .iter()
        .map(|c| {
            header
                .iter()
                .position(|h| h == *c)
                .with_context(|| format!("{} has no `{c}` column", labels.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>()?;
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let mut rng = bedside_core::rng::Rng::seed_from(seed ^ 0x5045_524d_5554_4544);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for (row, &from) in rows.iter().zip(&order) {
        let fields: Vec<&str> = (0..row.len())
            .map(|i| {
                if picked.contains(&i) {
                    rows[from].get(i).unwrap_or_default()
                } else {
                    row.get(i).unwrap_or_default()
                }
            })
            .collect();
        w.write_record(&fields)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!(e.to_string()))?;
    bedside_core::fsio::write_atomic(out, &bytes)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(rows.len())
}

/// The experiment configuration of one task, with paths relative to the `configs/` folder.
pub fn config_toml(task: &Task, budget: &Budget, labels: Labels) -> String {
    let suffix = labels.suffix();
    let (init_from, epochs) = match task.starts_from {
        Some(from) => (
            format!("init_from = \"../bundles/{from}{suffix}\"\n"),
            budget.fine_tune_epochs,
        ),
        None => (String::new(), budget.epochs),
    };
    format!(
        r#"# Written by `bedside demo`: {what}{permuted}.
# Rerun with: bedside train --config configs/{name}{suffix}.toml --run runs/{name}{suffix}-again
name = "demo-{name}{suffix}"
intended_use = "Research demonstration on synthetic echocardiograms. Not validated on real patients; not for clinical decisions."
seed = {seed}

[data]
manifest = "../curated/metadata.csv"
labels = "../{labels_file}"
join_key = "input_sha256"
clip_length = 16
period = 2
size = {size}
resized_copy = {size}
workers = 1

[data.augment]
shift_pad = {pad}

[model]
backbone = "r2plus1d_18"
width = 0.25
layers = [1, 1, 1, 1]
{init_from}
{task}
[optimizer]
kind = "adamw"
lr = 0.001
weight_decay = 0.0001

[schedule]
kind = "cosine"
warmup_epochs = {warmup}

[training]
epochs = {epochs}
batch_size = 8
grad_clip_norm = 5.0

[training.early_stopping]
metric = "{select}"
"#,
        what = task.what,
        permuted = if labels == Labels::Permuted {
            ", learnt from permuted labels (data-randomisation check)"
        } else {
            ""
        },
        labels_file = labels.file(),
        name = task.name,
        seed = budget.seed,
        size = budget.size,
        pad = (budget.size / 16).max(1),
        task = task.toml,
        warmup = usize::from(epochs > 1 && task.starts_from.is_none()),
        select = task.select_by,
    )
}

#[derive(clap::Parser, Debug)]
struct TrainCommand {
    #[command(flatten)]
    args: super::super::train::Args,
}

#[derive(clap::Parser, Debug)]
struct ExportCommand {
    #[command(flatten)]
    args: super::super::export::Args,
}

#[derive(clap::Parser, Debug)]
struct PredictCommand {
    #[command(flatten)]
    args: super::super::predict::Args,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Trains and exports one task; returns the bundle's folder.
pub fn train_and_export(
    dir: &Path,
    task: &Task,
    budget: &Budget,
    labels: Labels,
    ctx: &Ctx,
) -> anyhow::Result<PathBuf> {
    let name = format!("{}{}", task.name, labels.suffix());
    let config = dir.join("configs").join(format!("{name}.toml"));
    bedside_core::fsio::write_atomic(&config, config_toml(task, budget, labels).as_bytes())
        .with_context(|| format!("writing {}", config.display()))?;
    let run = dir.join("runs").join(&name);
    let bundle = dir.join("bundles").join(&name);
    let (c, r, b) = (
        config.display().to_string(),
        run.display().to_string(),
        bundle.display().to_string(),
    );
    let train = TrainCommand::try_parse_from(strings(&["train", "--config", &c, "--run", &r]))
        .context("building the demo's train arguments")?;
    super::super::train::run(train.args, ctx)?;
    let export = ExportCommand::try_parse_from(strings(&["export", "--run", &r, "--out", &b]))
        .context("building the demo's export arguments")?;
    super::super::export::run(export.args, ctx)?;
    Ok(bundle)
}

/// Trains, exports and predicts one task; returns the predictions table of the test split.
pub fn train_task(dir: &Path, task: &Task, budget: &Budget, ctx: &Ctx) -> anyhow::Result<PathBuf> {
    let bundle = train_and_export(dir, task, budget, Labels::Recorded, ctx)?;
    let predictions = dir.join("predictions").join(format!("{}.csv", task.name));
    let (b, p) = (
        bundle.display().to_string(),
        predictions.display().to_string(),
    );
    let manifest = dir.join("curated").join("metadata.csv");
    let labels = dir.join("labels.csv");
    let (m, l, clips) = (
        manifest.display().to_string(),
        labels.display().to_string(),
        budget.max_clips.to_string(),
    );
    let predict = PredictCommand::try_parse_from(strings(&[
        "predict",
        "--bundle",
        &b,
        "--manifest",
        &m,
        "--labels",
        &l,
        "--join-key",
        "input_sha256",
        "--study",
        "study_key",
        "--split",
        "test",
        "--max-clips",
        &clips,
        "--out",
        &p,
    ]))
    .context("building the demo's predict arguments")?;
    super::super::predict::run(predict.args, ctx)?;
    Ok(predictions)
}

/// Joins the per-task prediction tables on `study_key` into one table with the column names
/// `bedside evaluate` is pointed at (`ef_pred`, `prob_reduced_ef`, `uncertainty`, `risk`,
/// `surv@…`). Returns the row count.
pub fn merge_predictions(parts: &[(Task, PathBuf)], out: &Path) -> anyhow::Result<usize> {
    let mut header: Vec<String> = vec!["study_key".into()];
    let mut rows: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (task, path) in parts {
        let mut reader =
            csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
        let names = reader.headers()?.clone();
        let key = names
            .iter()
            .position(|h| h == "study_key")
            .with_context(|| format!("{} has no study_key column", path.display()))?;
        let mut picks: Vec<(usize, String)> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let renamed = task
                .columns
                .iter()
                .find(|(from, _)| *from == name)
                .map(|(_, to)| to.to_string())
                .or_else(|| {
                    task.keep_prefix
                        .filter(|p| name.starts_with(p) && !name.ends_with("_std"))
                        .map(|_| name.to_string())
                });
            if let Some(to) = renamed {
                picks.push((i, to));
            }
        }
        for (_, to) in &picks {
            header.push(to.clone());
        }
        for record in reader.records() {
            let record = record?;
            let row = rows
                .entry(record.get(key).unwrap_or_default().to_string())
                .or_default();
            for (i, to) in &picks {
                row.insert(to.clone(), record.get(*i).unwrap_or_default().to_string());
            }
        }
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    let mut complete = 0;
    for (study, values) in &rows {
        // A study missing from one table would give a half-empty row: leave it out.
        if header[1..].iter().any(|h| !values.contains_key(h)) {
            continue;
        }
        w.write_record(
            std::iter::once(study.as_str()).chain(header[1..].iter().map(|h| values[h].as_str())),
        )?;
        complete += 1;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!(e.to_string()))?;
    bedside_core::fsio::write_atomic(out, &bytes)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Vec<Vec<String>> {
        let mut r = csv::Reader::from_path(path).expect("csv");
        let mut rows = vec![
            r.headers()
                .expect("header")
                .iter()
                .map(String::from)
                .collect(),
        ];
        rows.extend(
            r.records()
                .map(|x| x.expect("row").iter().map(String::from).collect()),
        );
        rows
    }

    #[test]
    fn permutation_moves_the_learned_columns_together_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let labels = dir.path().join("labels.csv");
        let mut text = String::from("input_sha256,study_key,ef_observed,reduced_ef_observed,sex\n");
        for i in 0..50 {
            text.push_str(&format!(
                "h{i},s{i},{},{},{}\n",
                20 + i,
                u8::from(i < 20),
                i % 2
            ));
        }
        std::fs::write(&labels, text).expect("write");
        let out = dir.path().join("labels-permuted.csv");
        let n = permuted_label_sheet(&labels, &out, &["ef_observed", "reduced_ef_observed"], 7)
            .expect("permute");
        assert_eq!(n, 50);
        let (before, after) = (read(&labels), read(&out));
        assert_eq!(before[0], after[0]);
        let mut moved = 0;
        for (b, a) in before[1..].iter().zip(&after[1..]) {
            // The key, the study and the group stay on their row.
            assert_eq!((&b[0], &b[1], &b[4]), (&a[0], &a[1], &a[4]));
            moved += usize::from(b[2] != a[2]);
            // The two labels travel as a pair: reduced EF is still EF < 40 on every row.
            let ef: u32 = a[2].parse().expect("ef");
            assert_eq!(a[3], u8::from(ef < 40).to_string());
        }
        assert!(
            moved > 40,
            "only {moved} of 50 rows got another study's labels"
        );
        let sorted = |rows: &[Vec<String>]| {
            let mut v: Vec<String> = rows[1..].iter().map(|r| r[2].clone()).collect();
            v.sort();
            v
        };
        assert_eq!(
            sorted(&before),
            sorted(&after),
            "a permutation, not a resampling"
        );
        let missing = permuted_label_sheet(&labels, &out, &["nope"], 7).expect_err("no column");
        assert!(missing.to_string().contains("`nope`"));
    }
}
