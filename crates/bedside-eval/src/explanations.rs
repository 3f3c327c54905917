//! The "Explanations" section of the evaluation report: the serial occlusion test (the task
//! metric with a clinical region masked against masks of equal area placed at random), the
//! share of attribution mass inside the region for each method, and the sanity checks of the
//! methods (cascading model-parameter randomisation and data randomisation).
//!
//! `bedside explain --dataset` computes the numbers and writes them as `explanations.json`
//! (with `explanations.html` beside it); `bedside evaluate --explanations explanations.json`
//! adds the same section to `evaluation.json` and `evaluation.html`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bootstrap::Estimate;
use crate::error::{EvalError, Result};
use crate::report::{esc, table};

/// A value with its confidence interval (`None`: undefined or no interval).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Interval {
    /// Point estimate.
    pub value: Option<f64>,
    /// Lower limit.
    pub lower: Option<f64>,
    /// Upper limit.
    pub upper: Option<f64>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl From<Estimate> for Interval {
    fn from(e: Estimate) -> Self {
        Self {
            value: finite(e.value),
            lower: finite(e.lower),
            upper: finite(e.upper),
        }
    }
}

impl Interval {
    /// A value without an interval.
    pub fn point(value: f64) -> Self {
        Self {
            value: finite(value),
            lower: None,
            upper: None,
        }
    }
}

/// One condition of the occlusion test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcclusionRow {
    /// `intact`, `region`, `random (mean of K)` or `random k`.
    pub condition: String,
    /// The task metric with the condition's mask.
    pub metric: Interval,
    /// Loss of performance against the intact input (positive = worse: intact − masked for
    /// AUROC and C-index, masked − intact for MAE).
    pub degradation: Interval,
}

/// The serial occlusion test over a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OcclusionTest {
    /// Metric name (`auroc`, `mae`, `c_index`).
    pub metric: String,
    /// Whether a larger metric is better.
    pub higher_is_better: bool,
    /// Random masks per study.
    pub random_masks: usize,
    /// Intact, region, random mean, then each random mask.
    pub rows: Vec<OcclusionRow>,
    /// Degradation with the region minus the mean degradation with random masks.
    pub region_minus_random: Interval,
    /// 2.5th and 97.5th percentiles of the degradation over the random masks.
    pub random_degradation_range: (Option<f64>, Option<f64>),
    /// Share of random masks that degrade at least as much as the region.
    pub random_at_least_region: Option<f64>,
    /// Mean share of the frame inside the region.
    pub region_area_share: f64,
    /// Mean share of a random mask that overlaps the region.
    pub random_overlap: f64,
    /// Mean share of a random mask on signal (the scan sector).
    pub random_on_signal: f64,
}

/// Attribution mass inside the region for one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MassRow {
    /// Method name.
    pub method: String,
    /// Studies averaged.
    pub studies: usize,
    /// Mean share of `Σ|attribution|` inside the region (patient-bootstrap interval).
    pub mass_inside: Interval,
    /// Mean share of the frame inside the region (what a map spread evenly would give).
    pub area_share: f64,
    /// `mass_inside / area_share` (1: no concentration on the region).
    pub concentration: Option<f64>,
}

/// Similarity of one method's maps before and after one randomisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityRow {
    /// Method name.
    pub method: String,
    /// `model: fc`, `model: fc+layer4`, …, or `data: permuted labels`.
    pub test: String,
    /// Mean Spearman rank correlation of `|map|`.
    pub spearman: Option<f64>,
    /// Mean SSIM of the scaled `|map|`.
    pub ssim: Option<f64>,
    /// Clips compared.
    pub clips: usize,
}

/// Which tests a method passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityVerdict {
    /// Method name.
    pub method: String,
    /// Passes the cascading randomisation (judged with every layer randomised).
    pub model_randomisation: Option<bool>,
    /// Passes the data randomisation test (`None`: not run).
    pub data_randomisation: Option<bool>,
}

/// The sanity checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityChecks {
    /// A method passes a test when both mean similarities are below this.
    pub threshold: f64,
    /// Every comparison.
    pub rows: Vec<SanityRow>,
    /// Per method.
    pub verdicts: Vec<SanityVerdict>,
}

/// The whole section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationsSection {
    /// Model name.
    pub model: String,
    /// What the maps explain.
    pub target: String,
    /// The region masked and measured.
    pub region: String,
    /// Studies in the occlusion test.
    pub studies: usize,
    /// Patients (bootstrap units).
    pub patients: usize,
    /// Settings (free form, shown as JSON).
    pub settings: serde_json::Value,
    /// The occlusion test.
    pub occlusion: Option<OcclusionTest>,
    /// Attribution mass per method.
    pub attribution_mass: Vec<MassRow>,
    /// Sanity checks.
    pub sanity: Option<SanityChecks>,
    /// Notes.
    pub notes: Vec<String>,
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.3}"))
}

fn interval(i: &Interval) -> String {
    match (i.lower, i.upper) {
        (Some(l), Some(u)) => format!("{} ({l:.3} to {u:.3})", num(i.value)),
        _ => num(i.value),
    }
}

fn verdict(v: Option<bool>) -> String {
    match v {
        Some(true) => "pass".into(),
        Some(false) => "FAIL".into(),
        None => "not run".into(),
    }
}

/// Renders the section (an HTML `<section>`).
pub fn render_section(s: &ExplanationsSection) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<section id=\"explanations\"><h2>Explanations</h2><p>Model {}; maps explain the {}; region: {}. {} studies of {} patients; intervals are percentile bootstrap intervals resampling patients.</p>",
        esc(&s.model),
        esc(&s.target),
        esc(&s.region),
        s.studies,
        s.patients
    );
    if let Some(o) = &s.occlusion {
        let _ = write!(
            out,
            "<h3>Serial occlusion test ({})</h3><p class=\"note\">The metric with the region filled in every frame, against {} masks of the same shape and area per study placed at random (mean overlap with the region {:.1}%, {:.0}% on the scan sector). Degradation is the loss of performance against the intact input ({}). The region covers {:.1}% of the frame on average.</p>",
            esc(&o.metric),
            o.random_masks,
            o.random_overlap * 100.0,
            o.random_on_signal * 100.0,
            if o.higher_is_better {
                "intact − masked"
            } else {
                "masked − intact"
            },
            o.region_area_share * 100.0
        );
        let rows: Vec<Vec<String>> = o
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.condition.clone(),
                    interval(&r.metric),
                    interval(&r.degradation),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "condition",
                &format!("{} (95% CI)", o.metric),
                "degradation",
            ],
            &rows,
        );
        let _ = write!(
            out,
            "<p>Region minus random degradation: <b>{}</b>. Random masks' degradation, 2.5–97.5th percentile: {} to {}; share of random masks that degrade at least as much as the region: {}.</p>",
            interval(&o.region_minus_random),
            num(o.random_degradation_range.0),
            num(o.random_degradation_range.1),
            num(o.random_at_least_region)
        );
    }
    if !s.attribution_mass.is_empty() {
        out.push_str("<h3>Attribution mass inside the region</h3>");
        let rows: Vec<Vec<String>> = s
            .attribution_mass
            .iter()
            .map(|r| {
                vec![
                    r.method.clone(),
                    r.studies.to_string(),
                    interval(&r.mass_inside),
                    format!("{:.3}", r.area_share),
                    num(r.concentration),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "method",
                "studies",
                "share of |attribution| inside (95% CI)",
                "area share",
                "concentration",
            ],
            &rows,
        );
    }
    if let Some(c) = &s.sanity {
        let _ = write!(
            out,
            "<h3>Sanity checks</h3><p class=\"note\">Similarity between the maps of the model and those of a randomised model (Spearman rank correlation of |map|, SSIM of |map| scaled to [0, 1]). A method passes when both are below {} (model randomisation: with every layer randomised).</p>",
            c.threshold
        );
        let rows: Vec<Vec<String>> = c
            .verdicts
            .iter()
            .map(|v| {
                vec![
                    v.method.clone(),
                    verdict(v.model_randomisation),
                    verdict(v.data_randomisation),
                ]
            })
            .collect();
        table(
            &mut out,
            &["method", "model randomisation", "data randomisation"],
            &rows,
        );
        let rows: Vec<Vec<String>> = c
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.method.clone(),
                    r.test.clone(),
                    num(r.spearman),
                    num(r.ssim),
                    r.clips.to_string(),
                ]
            })
            .collect();
        table(
            &mut out,
            &["method", "randomised", "Spearman", "SSIM", "clips"],
            &rows,
        );
    }
    if !s.notes.is_empty() {
        out.push_str("<ul class=\"note\">");
        for n in &s.notes {
            let _ = write!(out, "<li>{}</li>", esc(n));
        }
        out.push_str("</ul>");
    }
    out.push_str("<details><summary>Settings</summary><pre>");
    out.push_str(&esc(
        &serde_json::to_string_pretty(&s.settings).unwrap_or_default()
    ));
    out.push_str("</pre></details></section>");
    out
}

/// Writes `<stem>.json` (the section) and `<stem>.html` (a page holding it) into `dir`;
/// returns the two paths (JSON first).
pub fn write_section(
    section: &ExplanationsSection,
    dir: &Path,
    stem: &str,
    title: &str,
) -> Result<(PathBuf, PathBuf)> {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{}</style></head><body><h1>{}</h1>{}</body></html>\n",
        esc(title),
        crate::report::STYLE,
        esc(title),
        render_section(section)
    );
    crate::report::write_json_and_html(section, &html, dir, stem)
}

/// Reads a section written by [`write_section`].
pub fn read_section(path: &Path) -> Result<ExplanationsSection> {
    let bytes = std::fs::read(path).map_err(|source| EvalError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_renders() {
        let s = ExplanationsSection {
            model: "m".into(),
            target: "logit".into(),
            region: "left ventricle".into(),
            studies: 3,
            patients: 2,
            settings: serde_json::json!({"random_masks": 4}),
            occlusion: Some(OcclusionTest {
                metric: "auroc".into(),
                higher_is_better: true,
                random_masks: 4,
                rows: vec![OcclusionRow {
                    condition: "intact".into(),
                    metric: Interval::from(Estimate {
                        value: 0.9,
                        lower: 0.8,
                        upper: 1.0,
                        replicates_used: 10,
                    }),
                    degradation: Interval::point(0.0),
                }],
                region_minus_random: Interval::point(0.3),
                random_degradation_range: (Some(0.0), None),
                random_at_least_region: Some(0.0),
                region_area_share: 0.1,
                random_overlap: 0.0,
                random_on_signal: 1.0,
            }),
            attribution_mass: vec![MassRow {
                method: "ig".into(),
                studies: 3,
                mass_inside: Interval::point(f64::NAN),
                area_share: 0.1,
                concentration: None,
            }],
            sanity: Some(SanityChecks {
                threshold: 0.5,
                rows: Vec::new(),
                verdicts: vec![SanityVerdict {
                    method: "ig".into(),
                    model_randomisation: Some(true),
                    data_randomisation: None,
                }],
            }),
            notes: vec!["a < b".into()],
        };
        let dir = tempfile::tempdir().unwrap();
        let (json, html) = write_section(&s, dir.path(), "explanations", "T").unwrap();
        assert_eq!(read_section(&json).unwrap(), s);
        let page = std::fs::read_to_string(html).unwrap();
        assert!(page.contains("0.900 (0.800 to 1.000)"));
        assert!(page.contains("a &lt; b"));
        assert!(page.contains("<td>pass</td><td>not run</td>"));
    }
}
