//! `bedside agreement`: agreement between readers (Cohen's and Fleiss' kappa, ICC,
//! Bland–Altman, Dice) and the AI against each reader, from long tables.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bedside_eval::agreement::report::{
    AgreementReport, AgreementSettings, MaskRating, Ratings, ai_against_readers, label_agreement,
    mask_report, measurement_agreement, read_item_values, write_agreement,
};
use bedside_eval::agreement::{EmptyFrames, KappaWeights};
use bedside_eval::bootstrap::BootstrapOptions;
use bedside_eval::input::TextTable;

use crate::ui::{Ctx, Exit};

/// Agreement between readers, and the AI against readers, from tables of ratings.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # labels (one row per item and reader): pairwise Cohen's kappa and Fleiss' kappa
  bedside agreement --labels labels.csv --label-column view -o agreement/

  # ordinal grades with quadratic weights in a fixed order
  bedside agreement --labels grades.csv --weights quadratic --order normal,mild,moderate,severe

  # measurements: ICC (all six forms) and Bland-Altman for each pair of readers
  bedside agreement --measurements lvef.csv --value-column lvef

  # masks: a table item,reader,file of .npy/.npz arrays [frames, rows, columns] -> Dice, IoU
  bedside agreement --masks masks.csv --mask-array lv

  # the AI against each clinician, with paired bootstrap intervals of the difference
  bedside agreement --labels reads.csv --predictions ai.csv --prediction-column label \\
      --reference truth.csv --reference-column label --positive reduced

Tables are CSV (or Parquet by extension) with the columns --item-column and --reader-column
(default `item`, `reader`). Empty or NA cells are missing ratings. Writes <out>/agreement.json
and <out>/agreement.html and prints a summary.")]
pub struct Args {
    /// Categorical labels: one row per item and reader.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Column of the label in --labels.
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Measurements: one row per item and reader.
    #[arg(long)]
    pub measurements: Option<PathBuf>,
    /// Column of the value in --measurements.
    #[arg(long, default_value = "value")]
    pub value_column: String,
    /// Masks: a table with item, reader and file columns (paths relative to the table).
    #[arg(long)]
    pub masks: Option<PathBuf>,
    /// Column of the mask file in --masks.
    #[arg(long, default_value = "file")]
    pub file_column: String,
    /// Array inside .npz mask files.
    #[arg(long, default_value = "lv")]
    pub mask_array: String,
    /// AI predictions: one row per item.
    #[arg(long, requires = "reference")]
    pub predictions: Option<PathBuf>,
    /// Column of the prediction in --predictions.
    #[arg(long, default_value = "prediction")]
    pub prediction_column: String,
    /// Reference standard: one row per item.
    #[arg(long, requires = "predictions")]
    pub reference: Option<PathBuf>,
    /// Column of the reference in --reference.
    #[arg(long, default_value = "reference")]
    pub reference_column: String,
    /// Column naming the item in every table.
    #[arg(long, default_value = "item")]
    pub item_column: String,
    /// Column naming the reader in the label, measurement and mask tables.
    #[arg(long, default_value = "reader")]
    pub reader_column: String,
    /// Cohen's kappa weights: none, linear or quadratic.
    #[arg(long, default_value = "none")]
    pub weights: KappaWeights,
    /// Category order for weighted kappa, comma-separated [default: numeric, else text order].
    #[arg(long, value_delimiter = ',')]
    pub order: Option<Vec<String>>,
    /// Positive category: adds sensitivity and specificity to the AI comparison.
    #[arg(long)]
    pub positive: Option<String>,
    /// Frames empty in both masks: `one` (perfect agreement) or `skip`.
    #[arg(long, default_value = "one", value_parser = parse_empty)]
    pub empty_frames: EmptyFrames,
    /// Confidence level of every interval.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Bootstrap replicates (Fleiss' kappa and the AI comparison).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Bootstrap seed.
    #[arg(long, default_value_t = 20240601)]
    pub seed: u64,
    /// Output folder.
    #[arg(long, short = 'o', default_value = "agreement")]
    pub out: PathBuf,
}

fn parse_empty(s: &str) -> Result<EmptyFrames, String> {
    match s {
        "one" => Ok(EmptyFrames::One),
        "skip" => Ok(EmptyFrames::Skip),
        _ => Err(format!("`{s}`: expected one or skip")),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn invalid(e: bedside_eval::EvalError) -> anyhow::Error {
    Exit::invalid(error_chain(&e)).into()
}

fn read(path: &Path) -> anyhow::Result<TextTable> {
    TextTable::read(path).map_err(invalid)
}

/// Reads a binary mask stack from `.npy`, or one array of a `.npz`: (pixels per frame, data).
pub fn read_mask(path: &Path, member: &str) -> anyhow::Result<(usize, Vec<u8>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let is_npz = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
    let npy = if is_npz {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .with_context(|| format!("{} is not a .npz archive", path.display()))?;
        let mut entry = zip
            .by_name(&format!("{member}.npy"))
            .map_err(|_| Exit::invalid(format!("{} has no array {member:?}", path.display())))?;
        let mut buf = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        std::io::Read::read_to_end(&mut entry, &mut buf)
            .with_context(|| format!("cannot read {member} from {}", path.display()))?;
        buf
    } else {
        bytes
    };
    let array = bedside_ml::data::npy::parse_npy(&npy)
        .map_err(|m| Exit::invalid(format!("{}: {m}", path.display())))?;
    let frame_len = match array.shape.as_slice() {
        [_, rows, cols] | [rows, cols] => rows * cols,
        other => {
            return Err(Exit::invalid(format!(
                "{}: expected [frames, rows, columns] or [rows, columns], found shape {other:?}",
                path.display()
            ))
            .into());
        }
    };
    Ok((
        frame_len,
        array.data.iter().map(|&v| u8::from(v != 0.0)).collect(),
    ))
}

fn load_masks(args: &Args, path: &Path) -> anyhow::Result<Vec<MaskRating>> {
    let table = read(path)?;
    let col = |name: &str| {
        table.headers.iter().position(|h| h == name).ok_or_else(|| {
            Exit::invalid(format!(
                "column {name:?} not found in {}; available: {}",
                table.name,
                table.headers.join(", ")
            ))
        })
    };
    let (ci, cr, cf) = (
        col(&args.item_column)?,
        col(&args.reader_column)?,
        col(&args.file_column)?,
    );
    let base = path.parent().unwrap_or(Path::new("."));
    table
        .rows
        .iter()
        .map(|r| {
            let (frame_len, data) = read_mask(&base.join(&r[cf]), &args.mask_array)?;
            Ok(MaskRating {
                item: r[ci].clone(),
                reader: r[cr].clone(),
                frame_len,
                data,
            })
        })
        .collect()
}

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    if args.labels.is_none() && args.measurements.is_none() && args.masks.is_none() {
        return Err(Exit::invalid(
            "nothing to compare: give --labels, --measurements or --masks (see --help)",
        )
        .into());
    }
    if !(0.0 < args.confidence && args.confidence < 1.0) {
        return Err(Exit::invalid("--confidence must be between 0 and 1").into());
    }
    let settings = AgreementSettings {
        weights: args.weights,
        category_order: args.order.clone(),
        positive: args.positive.clone(),
        confidence: args.confidence,
        bootstrap: BootstrapOptions {
            replicates: args.bootstrap,
            seed: args.seed,
            confidence: args.confidence,
        },
        empty_frames: args.empty_frames,
    };
    let mut warnings = Vec::new();
    let (item, reader) = (args.item_column.as_str(), args.reader_column.as_str());
    let labels = match &args.labels {
        Some(p) => {
            Some(Ratings::from_long(&read(p)?, item, reader, &args.label_column).map_err(invalid)?)
        }
        None => None,
    };
    let measurements = match &args.measurements {
        Some(p) => {
            Some(Ratings::from_long(&read(p)?, item, reader, &args.value_column).map_err(invalid)?)
        }
        None => None,
    };
    let mut report = AgreementReport {
        settings: settings.clone(),
        labels: None,
        measurements: None,
        masks: Vec::new(),
        ai_vs_readers: Vec::new(),
        warnings: Vec::new(),
    };
    if let Some(r) = &labels {
        report.labels = Some(label_agreement(r, &settings, &mut warnings).map_err(invalid)?);
    }
    if let Some(r) = &measurements {
        report.measurements =
            Some(measurement_agreement(r, &settings, &mut warnings).map_err(invalid)?);
    }
    if let Some(p) = &args.masks {
        let masks = load_masks(&args, p)?;
        report.masks = mask_report(&masks, &settings, &mut warnings).map_err(invalid)?;
    }
    if let (Some(pred), Some(refp)) = (&args.predictions, &args.reference) {
        let predictions =
            read_item_values(&read(pred)?, item, &args.prediction_column).map_err(invalid)?;
        let reference =
            read_item_values(&read(refp)?, item, &args.reference_column).map_err(invalid)?;
        let (ratings, categorical) = match (&labels, &measurements) {
            (Some(l), _) => (l, true),
            (None, Some(m)) => (m, false),
            (None, None) => {
                return Err(Exit::invalid(
                    "--predictions needs reader ratings from --labels or --measurements",
                )
                .into());
            }
        };
        report.ai_vs_readers =
            ai_against_readers(ratings, &predictions, &reference, categorical, &settings)
                .map_err(invalid)?;
    }
    report.warnings = warnings;
    let (json, html) = write_agreement(&report, &args.out, "agreement", "Agreement report")
        .map_err(|e| anyhow::anyhow!(error_chain(&e)))?;
    summarise(&report, ctx);
    ctx.say(format!("  report    {}", html.display()));
    ctx.say(format!("  numbers   {}", json.display()));
    Ok(())
}

fn summarise(report: &AgreementReport, ctx: &Ctx) {
    let pct = format!("{:.0}%", report.settings.confidence * 100.0);
    ctx.say("Agreement");
    if let Some(l) = &report.labels {
        ctx.say(format!(
            "  labels    {} items, {} readers, {} categories",
            l.items,
            l.readers.len(),
            l.categories.len()
        ));
        for p in &l.pairwise {
            ctx.say(format!(
                "    Cohen's κ {} vs {}: {:.3} ({pct} CI {:.3} to {:.3}, n={})",
                p.a, p.b, p.kappa.kappa, p.kappa.lower, p.kappa.upper, p.kappa.n
            ));
        }
        if let (Some(f), Some(e)) = (&l.fleiss, &l.fleiss_interval) {
            ctx.say(format!(
                "    Fleiss' κ all readers: {:.3} ({pct} CI {:.3} to {:.3}, {} subjects)",
                f.kappa, e.lower, e.upper, f.subjects
            ));
        }
    }
    if let Some(m) = &report.measurements {
        ctx.say(format!(
            "  measurements {} items, {} readers",
            m.items,
            m.readers.len()
        ));
        if let Some(i) = &m.icc {
            for r in &i.rows {
                ctx.say(format!(
                    "    {} {:.3} ({pct} CI {:.3} to {:.3})",
                    r.form, r.icc, r.lower, r.upper
                ));
            }
        }
        for p in &m.pairwise {
            let b = &p.bland_altman;
            ctx.say(format!(
                "    Bland–Altman {} − {}: bias {:.3}, limits {:.3} to {:.3} (n={})",
                p.a, p.b, b.bias, b.lower_limit, b.upper_limit, b.n
            ));
        }
    }
    for p in &report.masks {
        ctx.say(format!(
            "  masks {} vs {}: mean Dice {:.3}, mean IoU {:.3}, pooled Dice {:.3} ({} items)",
            p.a,
            p.b,
            p.mean_dice,
            p.mean_iou,
            p.pooled_dice,
            p.items.len()
        ));
    }
    for c in &report.ai_vs_readers {
        ctx.say(format!(
            "  AI {} on {} items: {:.3} ({:.3} to {:.3})",
            c.metric.name(),
            c.n,
            c.ai_overall.value,
            c.ai_overall.lower,
            c.ai_overall.upper
        ));
        for r in &c.readers {
            ctx.say(format!(
                "    vs {}: reader {:.3}, AI {:.3}, AI − reader {:+.3} ({pct} CI {:+.3} to {:+.3}, n={})",
                r.reader,
                r.reader_metric.value,
                r.ai_metric.value,
                r.difference.value,
                r.difference.lower,
                r.difference.upper,
                r.n
            ));
        }
    }
    for w in &report.warnings {
        ctx.say(format!("  warning: {w}"));
    }
}
