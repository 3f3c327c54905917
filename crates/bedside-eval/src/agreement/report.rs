//! The agreement report over long tables (one row per item and reader): every pair of readers,
//! all readers together, and the AI against each reader; written as JSON and one HTML page.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    AiVsReaders, BlandAltmanCi, CohenKappa, EmptyFrames, FleissKappa, Icc, KappaWeights,
    ReaderMetric, bland_altman, cohen_kappa, compare_ai_with_readers, fleiss_kappa_ci, icc,
    mask_agreement,
};
use crate::bootstrap::{BootstrapOptions, Estimate};
use crate::error::{EvalError, Result};
use crate::input::TextTable;

fn is_missing(cell: &str) -> bool {
    matches!(
        cell.to_ascii_lowercase().as_str(),
        "" | "nan" | "na" | "n/a" | "null" | "none"
    )
}

fn column(table: &TextTable, name: &str) -> Result<usize> {
    table
        .headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| EvalError::MissingColumn {
            column: name.to_string(),
            table: table.name.clone(),
            available: table.headers.join(", "),
        })
}

/// Ratings in wide form: items × readers, `None` where a reader did not rate an item.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratings {
    /// Item identifiers, in order of first appearance.
    pub items: Vec<String>,
    /// Reader names, in order of first appearance.
    pub readers: Vec<String>,
    /// `values[item][reader]`.
    pub values: Vec<Vec<Option<String>>>,
}

impl Ratings {
    /// Reads a long table with one row per item and reader. A second rating of the same item
    /// by the same reader is an error; empty or `NA` cells are missing ratings.
    pub fn from_long(table: &TextTable, item: &str, reader: &str, value: &str) -> Result<Self> {
        let (ci, cr, cv) = (
            column(table, item)?,
            column(table, reader)?,
            column(table, value)?,
        );
        let mut items: Vec<String> = Vec::new();
        let mut readers: Vec<String> = Vec::new();
        let (mut item_ix, mut reader_ix) = (HashMap::new(), HashMap::new());
        let mut cells: Vec<(usize, usize, Option<String>)> = Vec::with_capacity(table.rows.len());
        for (row, r) in table.rows.iter().enumerate() {
            if r[ci].is_empty() || r[cr].is_empty() {
                return Err(EvalError::MissingValue {
                    column: if r[ci].is_empty() { item } else { reader }.to_string(),
                    row: row + 1,
                });
            }
            let i = *item_ix.entry(r[ci].clone()).or_insert_with(|| {
                items.push(r[ci].clone());
                items.len() - 1
            });
            let j = *reader_ix.entry(r[cr].clone()).or_insert_with(|| {
                readers.push(r[cr].clone());
                readers.len() - 1
            });
            let v = (!is_missing(&r[cv])).then(|| r[cv].clone());
            cells.push((i, j, v));
        }
        let mut values = vec![vec![None; readers.len()]; items.len()];
        let mut seen = vec![vec![false; readers.len()]; items.len()];
        for (row, (i, j, v)) in cells.into_iter().enumerate() {
            if seen[i][j] {
                return Err(EvalError::Join {
                    column: format!("{item}, {reader}"),
                    reason: format!(
                        "data row {} repeats a rating of the same item by the same reader",
                        row + 1
                    ),
                });
            }
            seen[i][j] = true;
            values[i][j] = v;
        }
        Ok(Ratings {
            items,
            readers,
            values,
        })
    }

    /// The distinct values in order: `order` if given (every value must be in it), numeric
    /// order if every value is a number, text order otherwise.
    pub fn categories(&self, order: Option<&[String]>) -> Result<Vec<String>> {
        let mut seen: Vec<&String> = self.values.iter().flatten().flatten().collect();
        seen.sort();
        seen.dedup();
        if let Some(order) = order {
            if let Some(v) = seen.iter().find(|v| !order.contains(v)) {
                return Err(EvalError::InvalidOption {
                    option: "category order",
                    reason: format!("the label {v:?} is not in the given order"),
                });
            }
            return Ok(order.to_vec());
        }
        let numeric: Option<Vec<f64>> = seen.iter().map(|v| v.parse::<f64>().ok()).collect();
        let mut out: Vec<String> = seen.into_iter().cloned().collect();
        if let Some(nums) = numeric {
            let mut pairs: Vec<(f64, String)> = nums.into_iter().zip(out).collect();
            pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
            out = pairs.into_iter().map(|p| p.1).collect();
        }
        Ok(out)
    }

    /// The values as numbers (NaN where missing).
    pub fn numbers(&self, what: &str) -> Result<Vec<Vec<f64>>> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, row)| {
                row.iter()
                    .map(|v| match v {
                        None => Ok(f64::NAN),
                        Some(s) => s.parse::<f64>().map_err(|_| EvalError::BadNumber {
                            column: what.to_string(),
                            row: i + 1,
                            value: s.clone(),
                        }),
                    })
                    .collect()
            })
            .collect()
    }
}

/// A single value per item (AI predictions or the reference), read from a two-column table.
pub fn read_item_values(
    table: &TextTable,
    item: &str,
    value: &str,
) -> Result<HashMap<String, String>> {
    let (ci, cv) = (column(table, item)?, column(table, value)?);
    let mut out = HashMap::with_capacity(table.rows.len());
    for (row, r) in table.rows.iter().enumerate() {
        if is_missing(&r[cv]) {
            continue;
        }
        if out.insert(r[ci].clone(), r[cv].clone()).is_some() {
            return Err(EvalError::Join {
                column: item.to_string(),
                reason: format!("{} repeats an item at data row {}", table.name, row + 1),
            });
        }
    }
    Ok(out)
}

/// One binary-mask rating: an item, a reader and the mask's frames.
#[derive(Debug, Clone)]
pub struct MaskRating {
    /// Item.
    pub item: String,
    /// Reader.
    pub reader: String,
    /// Pixels per frame.
    pub frame_len: usize,
    /// Frames concatenated (non-zero = foreground).
    pub data: Vec<u8>,
}

/// Settings of the agreement report.
#[derive(Debug, Clone, Serialize)]
pub struct AgreementSettings {
    /// Weighting of Cohen's kappa.
    pub weights: KappaWeights,
    /// Category order (for weighted kappa); `None`: numeric or text order.
    pub category_order: Option<Vec<String>>,
    /// Positive category for sensitivity/specificity of the AI comparison.
    pub positive: Option<String>,
    /// Confidence level.
    pub confidence: f64,
    /// Bootstrap of Fleiss' kappa and of the AI comparison.
    pub bootstrap: BootstrapOptions,
    /// What frames empty in both masks count as.
    pub empty_frames: EmptyFrames,
}

impl Default for AgreementSettings {
    fn default() -> Self {
        AgreementSettings {
            weights: KappaWeights::None,
            category_order: None,
            positive: None,
            confidence: 0.95,
            bootstrap: BootstrapOptions::default(),
            empty_frames: EmptyFrames::One,
        }
    }
}

/// Cohen's kappa of one pair of readers.
#[derive(Debug, Clone, Serialize)]
pub struct PairKappa {
    /// First reader.
    pub a: String,
    /// Second reader.
    pub b: String,
    /// Kappa on the items both rated.
    pub kappa: CohenKappa,
}

/// Agreement on labels.
#[derive(Debug, Clone, Serialize)]
pub struct LabelAgreement {
    /// Items.
    pub items: usize,
    /// Readers.
    pub readers: Vec<String>,
    /// Categories in the order used.
    pub categories: Vec<String>,
    /// Cohen's kappa of every pair of readers.
    pub pairwise: Vec<PairKappa>,
    /// Fleiss' kappa of all readers (when there are at least two).
    pub fleiss: Option<FleissKappa>,
    /// Its subject-level bootstrap interval.
    pub fleiss_interval: Option<Estimate>,
}

/// Bland–Altman of one pair of readers.
#[derive(Debug, Clone, Serialize)]
pub struct PairBlandAltman {
    /// First reader (differences are `a − b`).
    pub a: String,
    /// Second reader.
    pub b: String,
    /// Agreement on the items both measured.
    pub bland_altman: BlandAltmanCi,
}

/// Agreement on measurements.
#[derive(Debug, Clone, Serialize)]
pub struct MeasurementAgreement {
    /// Items.
    pub items: usize,
    /// Readers.
    pub readers: Vec<String>,
    /// ICC over the items every reader measured.
    pub icc: Option<Icc>,
    /// Bland–Altman of every pair of readers.
    pub pairwise: Vec<PairBlandAltman>,
}

/// Mask agreement of one item between two readers (frames omitted).
#[derive(Debug, Clone, Serialize)]
pub struct ItemMask {
    /// Item.
    pub item: String,
    /// Frames.
    pub frames: usize,
    /// Mean per-frame Dice.
    pub mean_dice: f64,
    /// Mean per-frame IoU.
    pub mean_iou: f64,
    /// Pooled Dice.
    pub pooled_dice: f64,
    /// Pooled IoU.
    pub pooled_iou: f64,
}

/// Mask agreement of one pair of readers.
#[derive(Debug, Clone, Serialize)]
pub struct PairMasks {
    /// First reader.
    pub a: String,
    /// Second reader.
    pub b: String,
    /// Per item.
    pub items: Vec<ItemMask>,
    /// Mean over items of the per-item mean Dice.
    pub mean_dice: f64,
    /// Mean over items of the per-item mean IoU.
    pub mean_iou: f64,
    /// Dice of all frames of all items pooled.
    pub pooled_dice: f64,
    /// Mean per-frame Dice over all frames of all items.
    pub frame_mean_dice: f64,
}

/// Everything the agreement command computed.
#[derive(Debug, Clone, Serialize)]
pub struct AgreementReport {
    /// Settings.
    pub settings: AgreementSettings,
    /// Labels.
    pub labels: Option<LabelAgreement>,
    /// Measurements.
    pub measurements: Option<MeasurementAgreement>,
    /// Masks.
    pub masks: Vec<PairMasks>,
    /// AI against each reader, one block per metric.
    pub ai_vs_readers: Vec<AiVsReaders>,
    /// What could not be computed.
    pub warnings: Vec<String>,
}

fn pairs(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).flat_map(move |a| (a + 1..n).map(move |b| (a, b)))
}

/// Label agreement: Cohen's kappa per pair, Fleiss' kappa for all.
pub fn label_agreement(
    ratings: &Ratings,
    settings: &AgreementSettings,
    warnings: &mut Vec<String>,
) -> Result<LabelAgreement> {
    let categories = ratings.categories(settings.category_order.as_deref())?;
    let code = |v: &Option<String>| {
        v.as_ref()
            .and_then(|s| categories.iter().position(|c| c == s))
    };
    let mut pairwise = Vec::new();
    for (a, b) in pairs(ratings.readers.len()) {
        let (mut xa, mut xb) = (Vec::new(), Vec::new());
        for row in &ratings.values {
            if let (Some(x), Some(y)) = (code(&row[a]), code(&row[b])) {
                xa.push(x);
                xb.push(y);
            }
        }
        let (ra, rb) = (&ratings.readers[a], &ratings.readers[b]);
        match cohen_kappa(
            &xa,
            &xb,
            categories.len(),
            settings.weights,
            settings.confidence,
        ) {
            Ok(kappa) => pairwise.push(PairKappa {
                a: ra.clone(),
                b: rb.clone(),
                kappa,
            }),
            Err(e) => warnings.push(format!("Cohen's kappa of {ra} and {rb}: {e}")),
        }
    }
    let (mut fleiss, mut fleiss_interval) = (None, None);
    if ratings.readers.len() >= 2 {
        let counts: Vec<Vec<u32>> = ratings
            .values
            .iter()
            .map(|row| {
                let mut c = vec![0u32; categories.len()];
                for k in row.iter().filter_map(code) {
                    c[k] += 1;
                }
                c
            })
            .collect();
        match fleiss_kappa_ci(&counts, &settings.bootstrap) {
            Ok((f, e)) => {
                fleiss = Some(f);
                fleiss_interval = Some(e);
            }
            Err(e) => warnings.push(format!("Fleiss' kappa: {e}")),
        }
    }
    Ok(LabelAgreement {
        items: ratings.items.len(),
        readers: ratings.readers.clone(),
        categories,
        pairwise,
        fleiss,
        fleiss_interval,
    })
}

/// Measurement agreement: ICC over all readers, Bland–Altman per pair.
pub fn measurement_agreement(
    ratings: &Ratings,
    settings: &AgreementSettings,
    warnings: &mut Vec<String>,
) -> Result<MeasurementAgreement> {
    let values = ratings.numbers("measurement")?;
    let icc = match icc(&values, settings.confidence) {
        Ok(i) => {
            if i.targets_dropped > 0 {
                warnings.push(format!(
                    "ICC: {} items without a measurement by every reader were left out",
                    i.targets_dropped
                ));
            }
            Some(i)
        }
        Err(e) => {
            warnings.push(format!("ICC: {e}"));
            None
        }
    };
    let mut pairwise = Vec::new();
    for (a, b) in pairs(ratings.readers.len()) {
        let (mut xa, mut xb) = (Vec::new(), Vec::new());
        for row in &values {
            if row[a].is_finite() && row[b].is_finite() {
                xa.push(row[a]);
                xb.push(row[b]);
            }
        }
        let (ra, rb) = (&ratings.readers[a], &ratings.readers[b]);
        match bland_altman(&xa, &xb, settings.confidence) {
            Ok(ba) => pairwise.push(PairBlandAltman {
                a: ra.clone(),
                b: rb.clone(),
                bland_altman: ba,
            }),
            Err(e) => warnings.push(format!("Bland–Altman of {ra} and {rb}: {e}")),
        }
    }
    Ok(MeasurementAgreement {
        items: ratings.items.len(),
        readers: ratings.readers.clone(),
        icc,
        pairwise,
    })
}

/// Mask agreement of every pair of readers over the items both segmented.
pub fn mask_report(
    masks: &[MaskRating],
    settings: &AgreementSettings,
    warnings: &mut Vec<String>,
) -> Result<Vec<PairMasks>> {
    let mut readers: Vec<&str> = Vec::new();
    let mut by_key: BTreeMap<(&str, &str), &MaskRating> = BTreeMap::new();
    for m in masks {
        if !readers.contains(&m.reader.as_str()) {
            readers.push(&m.reader);
        }
        if by_key.insert((&m.item, &m.reader), m).is_some() {
            return Err(EvalError::Join {
                column: "item, reader".into(),
                reason: "two masks for the same item and reader".into(),
            });
        }
    }
    let mut items: Vec<&str> = Vec::new();
    for m in masks {
        if !items.contains(&m.item.as_str()) {
            items.push(&m.item);
        }
    }
    let mut out = Vec::new();
    for (a, b) in pairs(readers.len()) {
        let (ra, rb) = (readers[a], readers[b]);
        let mut rows = Vec::new();
        let (mut sa, mut sb, mut si, mut dice_sum, mut frames_used) = (0u64, 0u64, 0u64, 0.0, 0);
        for &item in &items {
            let (Some(ma), Some(mb)) = (by_key.get(&(item, ra)), by_key.get(&(item, rb))) else {
                continue;
            };
            if ma.frame_len != mb.frame_len {
                warnings.push(format!(
                    "masks of item {item} by {ra} and {rb} have different frame sizes"
                ));
                continue;
            }
            let m = match mask_agreement(&ma.data, &mb.data, ma.frame_len, settings.empty_frames) {
                Ok(m) => m,
                Err(e) => {
                    warnings.push(format!("masks of item {item} by {ra} and {rb}: {e}"));
                    continue;
                }
            };
            for f in &m.frames {
                sa += f.a;
                sb += f.b;
                si += f.intersection;
                if f.dice.is_finite() {
                    dice_sum += f.dice;
                    frames_used += 1;
                }
            }
            rows.push(ItemMask {
                item: item.to_string(),
                frames: m.frames.len(),
                mean_dice: m.mean_dice,
                mean_iou: m.mean_iou,
                pooled_dice: m.pooled_dice,
                pooled_iou: m.pooled_iou,
            });
        }
        if rows.is_empty() {
            continue;
        }
        let finite_mean = |g: fn(&ItemMask) -> f64| {
            let v: Vec<f64> = rows.iter().map(g).filter(|v| v.is_finite()).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        out.push(PairMasks {
            a: ra.to_string(),
            b: rb.to_string(),
            mean_dice: finite_mean(|r| r.mean_dice),
            mean_iou: finite_mean(|r| r.mean_iou),
            pooled_dice: super::overlap(sa, sb, si, settings.empty_frames).0,
            frame_mean_dice: if frames_used > 0 {
                dice_sum / frames_used as f64
            } else {
                f64::NAN
            },
            items: rows,
        });
    }
    Ok(out)
}

/// The AI against every reader: labels give accuracy and kappa (plus sensitivity and
/// specificity with a positive category), measurements give MAE and RMSE.
pub fn ai_against_readers(
    ratings: &Ratings,
    predictions: &HashMap<String, String>,
    reference: &HashMap<String, String>,
    categorical: bool,
    settings: &AgreementSettings,
) -> Result<Vec<AiVsReaders>> {
    let n = ratings.items.len();
    let mut ref_v = vec![f64::NAN; n];
    let mut ai_v = vec![f64::NAN; n];
    let mut readers: Vec<(String, Vec<f64>)> = ratings
        .readers
        .iter()
        .map(|r| (r.clone(), vec![f64::NAN; n]))
        .collect();
    let metrics: Vec<ReaderMetric>;
    if categorical {
        let mut cats = ratings.categories(settings.category_order.as_deref())?;
        for v in predictions.values().chain(reference.values()) {
            if !cats.contains(v) {
                cats.push(v.clone());
            }
        }
        let code = |s: &str| {
            cats.iter()
                .position(|c| c == s)
                .map_or(f64::NAN, |k| k as f64)
        };
        for (i, item) in ratings.items.iter().enumerate() {
            ref_v[i] = reference.get(item).map_or(f64::NAN, |s| code(s));
            ai_v[i] = predictions.get(item).map_or(f64::NAN, |s| code(s));
            for (j, (_, col)) in readers.iter_mut().enumerate() {
                col[i] = ratings.values[i][j].as_deref().map_or(f64::NAN, code);
            }
        }
        let mut m = vec![ReaderMetric::Accuracy, ReaderMetric::Kappa];
        if let Some(p) = &settings.positive {
            let positive = code(p);
            if positive.is_nan() {
                return Err(EvalError::InvalidOption {
                    option: "positive",
                    reason: format!("{p:?} is not one of the categories"),
                });
            }
            m.push(ReaderMetric::Sensitivity { positive });
            m.push(ReaderMetric::Specificity { positive });
        }
        metrics = m;
    } else {
        let num = |s: &String, what: &str| {
            s.parse::<f64>().map_err(|_| EvalError::BadNumber {
                column: what.to_string(),
                row: 0,
                value: s.clone(),
            })
        };
        let values = ratings.numbers("measurement")?;
        for (i, item) in ratings.items.iter().enumerate() {
            if let Some(s) = reference.get(item) {
                ref_v[i] = num(s, "reference")?;
            }
            if let Some(s) = predictions.get(item) {
                ai_v[i] = num(s, "prediction")?;
            }
            for (j, (_, col)) in readers.iter_mut().enumerate() {
                col[i] = values[i][j];
            }
        }
        metrics = vec![ReaderMetric::Mae, ReaderMetric::Rmse];
    }
    metrics
        .into_iter()
        .map(|m| compare_ai_with_readers(&ref_v, &ai_v, &readers, m, None, &settings.bootstrap))
        .collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{v:.3}")
    }
}

fn ci(lo: f64, hi: f64) -> String {
    if lo.is_nan() {
        "–".into()
    } else {
        format!("{} to {}", num(lo), num(hi))
    }
}

fn est(e: &Estimate) -> String {
    format!("{} ({})", num(e.value), ci(e.lower, e.upper))
}

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}\
th{background:#f3f3f3}.warn{color:#a40}.note{color:#555;font-size:13px}";

/// The report's sections as HTML (no page wrapper), for embedding in another page.
pub fn render_sections(report: &AgreementReport) -> String {
    let mut out = String::new();
    let level = format!("{:.0}%", report.settings.confidence * 100.0);
    if let Some(l) = &report.labels {
        let _ = write!(
            out,
            "<section id=\"agreement-labels\"><h2>Labels</h2><p>{} items, {} readers, categories: {}. Cohen's kappa weights: {:?}.</p>",
            l.items,
            l.readers.len(),
            esc(&l.categories.join(", ")),
            report.settings.weights
        );
        let rows: Vec<Vec<String>> = l
            .pairwise
            .iter()
            .map(|p| {
                vec![
                    format!("{} – {}", p.a, p.b),
                    p.kappa.n.to_string(),
                    num(p.kappa.kappa),
                    ci(p.kappa.lower, p.kappa.upper),
                    num(p.kappa.observed_agreement),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "readers",
                "items",
                "Cohen's κ",
                &format!("{level} CI"),
                "observed agreement",
            ],
            &rows,
        );
        if let (Some(f), Some(e)) = (&l.fleiss, &l.fleiss_interval) {
            let _ = write!(
                out,
                "<p>Fleiss' κ over all readers: <b>{}</b> (bootstrap {level} CI {}), {} subjects, {}–{} ratings each.</p>",
                num(f.kappa),
                ci(e.lower, e.upper),
                f.subjects,
                f.min_raters,
                f.max_raters
            );
        }
        out.push_str("</section>");
    }
    if let Some(m) = &report.measurements {
        let _ = write!(
            out,
            "<section id=\"agreement-measurements\"><h2>Measurements</h2><p>{} items, {} readers.</p>",
            m.items,
            m.readers.len()
        );
        if let Some(i) = &m.icc {
            let rows: Vec<Vec<String>> = i
                .rows
                .iter()
                .map(|r| {
                    vec![
                        format!("{} / {}", r.form, r.mcgraw_wong),
                        r.description.clone(),
                        num(r.icc),
                        ci(r.lower, r.upper),
                        format!("F({}, {:.1}) = {:.2}", r.df1, r.df2, r.f),
                    ]
                })
                .collect();
            table(
                &mut out,
                &["ICC", "model", "value", &format!("{level} CI"), "F test"],
                &rows,
            );
        }
        let rows: Vec<Vec<String>> = m
            .pairwise
            .iter()
            .map(|p| {
                let b = &p.bland_altman;
                vec![
                    format!("{} − {}", p.a, p.b),
                    b.n.to_string(),
                    format!("{} ({})", num(b.bias), ci(b.bias_lower, b.bias_upper)),
                    format!(
                        "{} ({})",
                        num(b.lower_limit),
                        ci(b.lower_limit_ci.0, b.lower_limit_ci.1)
                    ),
                    format!(
                        "{} ({})",
                        num(b.upper_limit),
                        ci(b.upper_limit_ci.0, b.upper_limit_ci.1)
                    ),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "difference",
                "items",
                "bias (CI)",
                "lower limit (CI)",
                "upper limit (CI)",
            ],
            &rows,
        );
        out.push_str("</section>");
    }
    if !report.masks.is_empty() {
        out.push_str("<section id=\"agreement-masks\"><h2>Masks</h2>");
        let rows: Vec<Vec<String>> = report
            .masks
            .iter()
            .map(|p| {
                vec![
                    format!("{} – {}", p.a, p.b),
                    p.items.len().to_string(),
                    num(p.mean_dice),
                    num(p.mean_iou),
                    num(p.frame_mean_dice),
                    num(p.pooled_dice),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "readers",
                "items",
                "mean Dice",
                "mean IoU",
                "per-frame mean Dice",
                "pooled Dice",
            ],
            &rows,
        );
        out.push_str("</section>");
    }
    if !report.ai_vs_readers.is_empty() {
        out.push_str("<section id=\"agreement-ai\"><h2>AI versus readers</h2>");
        for c in &report.ai_vs_readers {
            let _ = write!(
                out,
                "<h3>{}</h3><p>AI on {} items: {}. {} is better.</p>",
                c.metric.name(),
                c.n,
                est(&c.ai_overall),
                if c.higher_is_better {
                    "Higher"
                } else {
                    "Lower"
                }
            );
            let rows: Vec<Vec<String>> = c
                .readers
                .iter()
                .map(|r| {
                    vec![
                        r.reader.clone(),
                        r.n.to_string(),
                        est(&r.reader_metric),
                        est(&r.ai_metric),
                        est(&r.difference),
                    ]
                })
                .collect();
            table(
                &mut out,
                &[
                    "reader",
                    "items",
                    "reader",
                    "AI (same items)",
                    "AI − reader",
                ],
                &rows,
            );
        }
        out.push_str("</section>");
    }
    out
}

/// The whole report as one HTML page.
pub fn render_html(report: &AgreementReport, title: &str) -> String {
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title><style>{STYLE}</style></head><body><h1>{0}</h1>",
        esc(title)
    );
    if !report.warnings.is_empty() {
        out.push_str("<ul class=\"warn\">");
        for w in &report.warnings {
            let _ = write!(out, "<li>{}</li>", esc(w));
        }
        out.push_str("</ul>");
    }
    out.push_str(&render_sections(report));
    out.push_str("<p class=\"note\">Cohen's kappa: Fleiss–Cohen–Everitt standard error, normal interval. Fleiss' kappa: subject bootstrap interval. ICC: Shrout–Fleiss forms with F-test intervals (McGraw–Wong). Bland–Altman: t intervals of bias and limits (Bland &amp; Altman 1999). AI comparison: percentile bootstrap, paired on the items both rated.</p></body></html>\n");
    out
}

/// Writes `<stem>.json` and `<stem>.html` into `dir`, each atomically.
pub fn write_agreement(
    report: &AgreementReport,
    dir: &Path,
    stem: &str,
    title: &str,
) -> Result<(PathBuf, PathBuf)> {
    let html = render_html(report, title);
    crate::report::write_json_and_html(report, &html, dir, stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(rows: &[[&str; 3]]) -> TextTable {
        TextTable {
            name: "t.csv".into(),
            headers: vec!["item".into(), "reader".into(), "value".into()],
            rows: rows
                .iter()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect(),
        }
    }

    #[test]
    fn long_tables_become_wide_and_repeats_are_refused() {
        let t = long(&[
            ["s1", "A", "2"],
            ["s1", "B", "10"],
            ["s2", "A", ""],
            ["s2", "B", "1"],
        ]);
        let r = Ratings::from_long(&t, "item", "reader", "value").unwrap();
        assert_eq!(r.items, ["s1", "s2"]);
        assert_eq!(r.values[1][0], None);
        // numeric order, not text order
        assert_eq!(r.categories(None).unwrap(), ["1", "2", "10"]);
        let dup = long(&[["s1", "A", "2"], ["s1", "A", "3"]]);
        assert!(Ratings::from_long(&dup, "item", "reader", "value").is_err());
        assert!(Ratings::from_long(&t, "item", "rater", "value").is_err());
    }
}
