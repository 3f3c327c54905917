//! One self-contained HTML report (inline SVG plots, no scripts or network) and a JSON file of
//! every number.

use std::fmt::Write as _;
use std::path::Path;

use crate::bootstrap::Estimate;
use crate::error::{EvalError, Result};
use crate::evaluate::{EvalReport, OperatingPoint};

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

/// Escapes text for HTML.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

fn est(e: &Estimate) -> String {
    if e.lower.is_nan() {
        num(e.value)
    } else {
        format!("{} ({} to {})", num(e.value), num(e.lower), num(e.upper))
    }
}

/// One line series of a plot.
struct Series<'a> {
    name: String,
    x: &'a [f64],
    y: &'a [f64],
    step: bool,
    band: Option<(&'a [f64], &'a [f64])>,
}

struct Plot<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    x_range: (f64, f64),
    y_range: (f64, f64),
    diagonal: bool,
    series: Vec<Series<'a>>,
}

const W: f64 = 420.0;
const H: f64 = 320.0;
const L: f64 = 55.0;
const R: f64 = 15.0;
const T: f64 = 30.0;
const B: f64 = 45.0;

fn sx(x: f64, r: (f64, f64)) -> f64 {
    let span = if r.1 > r.0 { r.1 - r.0 } else { 1.0 };
    L + (x - r.0) / span * (W - L - R)
}

fn sy(y: f64, r: (f64, f64)) -> f64 {
    let span = if r.1 > r.0 { r.1 - r.0 } else { 1.0 };
    H - B - (y - r.0) / span * (H - T - B)
}

fn path(x: &[f64], y: &[f64], step: bool, xr: (f64, f64), yr: (f64, f64)) -> String {
    let mut d = String::new();
    for k in 0..x.len().min(y.len()) {
        let (px, py) = (sx(x[k], xr), sy(y[k], yr));
        if k == 0 {
            let _ = write!(d, "M{px:.1},{py:.1}");
        } else {
            if step {
                let _ = write!(d, " H{px:.1}");
            }
            let _ = write!(d, " L{px:.1},{py:.1}");
        }
    }
    d
}

fn axes(out: &mut String, p: &Plot<'_>) {
    let (xr, yr) = (p.x_range, p.y_range);
    let _ = write!(
        out,
        r##"<rect x="{L}" y="{T}" width="{}" height="{}" fill="#fff" stroke="#999"/>"##,
        W - L - R,
        H - T - B
    );
    for k in 0..=4 {
        let fx = xr.0 + (xr.1 - xr.0) * k as f64 / 4.0;
        let fy = yr.0 + (yr.1 - yr.0) * k as f64 / 4.0;
        let (px, py) = (sx(fx, xr), sy(fy, yr));
        let _ = write!(
            out,
            r##"<line x1="{px:.1}" y1="{}" x2="{px:.1}" y2="{}" stroke="#999"/><text x="{px:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##,
            H - B,
            H - B + 4.0,
            H - B + 16.0,
            short(fx)
        );
        let _ = write!(
            out,
            r##"<line x1="{}" y1="{py:.1}" x2="{L}" y2="{py:.1}" stroke="#999"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            L - 4.0,
            L - 6.0,
            py + 3.0,
            short(fy)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text><text x="14" y="{}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {})">{}</text><text x="{}" y="18" font-size="13" font-weight="bold" text-anchor="middle">{}</text>"##,
        (L + W - R) / 2.0,
        H - 8.0,
        esc(p.x_label),
        (T + H - B) / 2.0,
        (T + H - B) / 2.0,
        esc(p.y_label),
        W / 2.0,
        esc(p.title)
    );
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn svg(p: &Plot<'_>) -> String {
    let mut out = format!(
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" viewBox="0 0 {W} {}" role="img" aria-label="{}">"#,
        H + 16.0 * p.series.len().div_ceil(2) as f64,
        H + 16.0 * p.series.len().div_ceil(2) as f64,
        esc(p.title)
    );
    axes(&mut out, p);
    let (xr, yr) = (p.x_range, p.y_range);
    if p.diagonal {
        let _ = write!(
            out,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbb" stroke-dasharray="4 3"/>"##,
            sx(xr.0, xr),
            sy(yr.0, yr),
            sx(xr.1, xr),
            sy(yr.1, yr)
        );
    }
    for (k, s) in p.series.iter().enumerate() {
        let c = COLORS[k % COLORS.len()];
        if let Some((lo, hi)) = s.band {
            let _ = write!(
                out,
                r#"<path d="{}" fill="none" stroke="{c}" stroke-opacity="0.35" stroke-dasharray="3 2"/><path d="{}" fill="none" stroke="{c}" stroke-opacity="0.35" stroke-dasharray="3 2"/>"#,
                path(s.x, lo, s.step, xr, yr),
                path(s.x, hi, s.step, xr, yr)
            );
        }
        let _ = write!(
            out,
            r#"<path d="{}" fill="none" stroke="{c}" stroke-width="1.8"/>"#,
            path(s.x, s.y, s.step, xr, yr)
        );
        let (lx, ly) = (L + (k % 2) as f64 * 180.0, H + 4.0 + 16.0 * (k / 2) as f64);
        let _ = write!(
            out,
            r#"<rect x="{lx}" y="{ly}" width="12" height="4" fill="{c}"/><text x="{}" y="{}" font-size="11">{}</text>"#,
            lx + 16.0,
            ly + 6.0,
            esc(&s.name)
        );
    }
    out.push_str("</svg>");
    out
}

/// Forest plot of one metric across groups.
fn forest(title: &str, rows: &[(String, Estimate, bool)], overall: Option<f64>) -> String {
    let row_h = 20.0;
    let label_w = 190.0;
    let width = 560.0;
    let height = T + row_h * rows.len() as f64 + 30.0;
    let finite = rows
        .iter()
        .flat_map(|(_, e, _)| [e.value, e.lower, e.upper])
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        lo -= 0.05;
        hi += 0.05;
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let px = |v: f64| label_w + (v - lo) / (hi - lo) * (width - label_w - 20.0);
    let mut out = format!(
        r#"<svg class="plot forest" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}"><text x="{}" y="18" font-size="13" font-weight="bold" text-anchor="middle">{}</text>"#,
        esc(title),
        width / 2.0,
        esc(title)
    );
    if let Some(o) = overall.filter(|o| o.is_finite()) {
        let _ = write!(
            out,
            r##"<line x1="{:.1}" y1="{T}" x2="{:.1}" y2="{:.1}" stroke="#999" stroke-dasharray="4 3"/>"##,
            px(o),
            px(o),
            height - 25.0
        );
    }
    for (k, (name, e, small)) in rows.iter().enumerate() {
        let y = T + row_h * k as f64 + row_h / 2.0;
        let color = if *small { "#d62728" } else { "#1f77b4" };
        let _ = write!(
            out,
            r#"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}{}</text>"#,
            label_w - 8.0,
            y + 4.0,
            esc(name),
            if *small { " (small)" } else { "" }
        );
        if e.lower.is_finite() && e.upper.is_finite() {
            let _ = write!(
                out,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="1.5"/>"#,
                px(e.lower),
                px(e.upper)
            );
        }
        if e.value.is_finite() {
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="{color}"/>"#,
                px(e.value) - 4.0,
                y - 4.0
            );
        }
    }
    let yb = height - 18.0;
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{yb}" font-size="10" text-anchor="middle">{}</text>"#,
            px(v),
            short(v)
        );
    }
    out.push_str("</svg>");
    out
}

pub(crate) fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><thead><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn operating_table(out: &mut String, title: &str, p: &OperatingPoint) {
    let _ = write!(
        out,
        "<h3>{} (threshold {})</h3>",
        esc(title),
        num(p.threshold)
    );
    let rows: Vec<Vec<String>> = p
        .intervals
        .iter()
        .map(|(k, e)| vec![k.clone(), est(e)])
        .collect();
    table(out, &["metric", "estimate (95% CI)"], &rows);
    let c = &p.confusion;
    table(
        out,
        &["", "predicted positive", "predicted negative"],
        &[
            vec![
                "actual positive".into(),
                c.tp.to_string(),
                c.fn_.to_string(),
            ],
            vec!["actual negative".into(), c.fp.to_string(), c.tn.to_string()],
        ],
    );
}

pub(crate) const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}\
th{background:#f3f3f3}.plots{display:flex;flex-wrap:wrap;gap:12px}.warn{color:#a40}.note{color:#555;font-size:13px}";

/// Renders the report as one HTML page.
pub fn render_html(report: &EvalReport, title: &str) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body><h1>{}</h1>",
        esc(title),
        esc(title)
    );
    let _ = write!(
        out,
        "<section id=\"summary\"><h2>Summary</h2><p>{} rows from {} patients. Intervals are percentile bootstrap intervals ({} replicates resampling patients, seed {}, {:.0}% level).</p>",
        report.n_rows,
        report.n_patients,
        report.settings.bootstrap.replicates,
        report.settings.bootstrap.seed,
        report.settings.bootstrap.confidence * 100.0
    );
    if !report.warnings.is_empty() {
        out.push_str("<ul class=\"warn\">");
        for w in &report.warnings {
            let _ = write!(out, "<li>{}</li>", esc(w));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");

    if let Some(c) = &report.classification {
        let _ = write!(
            out,
            "<section id=\"classification\"><h2>Classification</h2><p>{} cases, {} positive.</p>",
            c.n, c.positives
        );
        let rows: Vec<Vec<String>> = c
            .metrics
            .iter()
            .map(|(k, e)| vec![k.clone(), est(e)])
            .collect();
        table(&mut out, &["metric", "estimate (95% CI)"], &rows);
        out.push_str("<div class=\"plots\">");
        if let Some(r) = &c.roc {
            let name = c
                .metrics
                .get("auroc")
                .map_or("ROC".to_string(), |e| format!("AUROC {}", num(e.value)));
            out.push_str(&svg(&Plot {
                title: "ROC curve",
                x_label: "1 − specificity",
                y_label: "sensitivity",
                x_range: (0.0, 1.0),
                y_range: (0.0, 1.0),
                diagonal: true,
                series: vec![Series {
                    name,
                    x: &r.fpr,
                    y: &r.tpr,
                    step: false,
                    band: None,
                }],
            }));
        }
        if let Some(p) = &c.pr {
            let name = c
                .metrics
                .get("auprc")
                .map_or("PR".to_string(), |e| format!("AUPRC {}", num(e.value)));
            out.push_str(&svg(&Plot {
                title: "Precision–recall curve",
                x_label: "recall",
                y_label: "precision",
                x_range: (0.0, 1.0),
                y_range: (0.0, 1.0),
                diagonal: false,
                series: vec![Series {
                    name,
                    x: &p.recall,
                    y: &p.precision,
                    step: true,
                    band: None,
                }],
            }));
        }
        if !c.reliability.is_empty() {
            let x: Vec<f64> = c.reliability.iter().map(|b| b.mean_predicted).collect();
            let y: Vec<f64> = c.reliability.iter().map(|b| b.observed).collect();
            out.push_str(&svg(&Plot {
                title: "Calibration (reliability curve)",
                x_label: "mean predicted probability",
                y_label: "observed fraction positive",
                x_range: (0.0, 1.0),
                y_range: (0.0, 1.0),
                diagonal: true,
                series: vec![Series {
                    name: "model".into(),
                    x: &x,
                    y: &y,
                    step: false,
                    band: None,
                }],
            }));
        }
        out.push_str("</div>");
        if let Some(fit) = &c.calibration {
            table(
                &mut out,
                &["calibration", "value"],
                &[
                    vec!["slope".into(), num(fit.slope)],
                    vec!["intercept".into(), num(fit.intercept)],
                    vec![
                        "calibration-in-the-large".into(),
                        num(fit.intercept_in_the_large),
                    ],
                ],
            );
        }
        let rows: Vec<Vec<String>> = c
            .reliability
            .iter()
            .map(|b| {
                vec![
                    format!("{}–{}", num(b.lower), num(b.upper)),
                    b.count.to_string(),
                    num(b.mean_predicted),
                    num(b.observed),
                ]
            })
            .collect();
        table(
            &mut out,
            &["bin", "cases", "mean predicted", "observed"],
            &rows,
        );
        operating_table(&mut out, "At the chosen threshold", &c.at_threshold);
        if let Some(p) = &c.at_target_sensitivity {
            operating_table(
                &mut out,
                &format!(
                    "At sensitivity ≥ {}",
                    num(report.settings.target_sensitivity)
                ),
                p,
            );
        }
        out.push_str("</section>");
    }

    if let Some(r) = &report.regression {
        out.push_str("<section id=\"regression\"><h2>Regression</h2>");
        let mut rows: Vec<Vec<String>> = r
            .metrics
            .iter()
            .map(|(k, e)| vec![k.clone(), est(e)])
            .collect();
        let ba = &r.bland_altman;
        rows.push(vec!["Bland–Altman bias".into(), num(ba.bias)]);
        rows.push(vec![
            "limits of agreement".into(),
            format!("{} to {}", num(ba.lower_limit), num(ba.upper_limit)),
        ]);
        table(&mut out, &["metric", "estimate (95% CI)"], &rows);
        out.push_str("</section>");
    }

    if let Some(s) = &report.survival {
        let _ = write!(
            out,
            "<section id=\"survival\"><h2>Survival</h2><p>{} cases, {} events. Censoring distribution fitted on {}.</p>",
            s.n,
            s.events,
            esc(&s.censoring_fitted_on)
        );
        let mut rows: Vec<Vec<String>> = s
            .metrics
            .iter()
            .map(|(k, e)| vec![k.clone(), est(e)])
            .collect();
        if let Some(a) = &s.time_dependent_auc {
            let ci = |k: usize, v: f64| s.time_dependent_auc_intervals.get(k).map_or(num(v), est);
            for (k, (t, v)) in a.times.iter().zip(&a.auc).enumerate() {
                rows.push(vec![format!("AUC(t = {})", num(*t)), ci(k, *v)]);
            }
            rows.push(vec![
                "mean time-dependent AUC".into(),
                ci(a.auc.len(), a.mean_auc),
            ]);
        }
        for (t, b) in s.brier_at_times.iter().flatten() {
            rows.push(vec![format!("Brier(t = {})", num(*t)), est(b)]);
        }
        table(&mut out, &["metric", "estimate (95% CI)"], &rows);
        let t_max = s.kaplan_meier.times.last().copied().unwrap_or(1.0);
        // every curve starts at (0, 1)
        let start = |km: &crate::survival::KaplanMeier| -> [Vec<f64>; 4] {
            let with =
                |v: &[f64], first: f64| std::iter::once(first).chain(v.iter().copied()).collect();
            [
                with(
                    &km.times,
                    0.0f64.min(km.times.first().copied().unwrap_or(0.0)),
                ),
                with(&km.survival, 1.0),
                with(&km.ci_lower, 1.0),
                with(&km.ci_upper, 1.0),
            ]
        };
        let mut curves = vec![("all".to_string(), start(&s.kaplan_meier))];
        for (name, km) in &s.kaplan_meier_by_group {
            curves.push((name.clone(), start(km)));
        }
        let series = curves
            .iter()
            .map(|(name, [x, y, lo, hi])| Series {
                name: name.clone(),
                x,
                y,
                step: true,
                band: Some((lo, hi)),
            })
            .collect();
        out.push_str("<div class=\"plots\">");
        out.push_str(&svg(&Plot {
            title: "Kaplan–Meier (95% band)",
            x_label: "time",
            y_label: "survival",
            x_range: (0.0, t_max),
            y_range: (0.0, 1.0),
            diagonal: false,
            series,
        }));
        out.push_str("</div>");
        let rows: Vec<Vec<String>> = s
            .log_rank
            .iter()
            .map(|(c, t)| {
                vec![
                    c.clone(),
                    num(t.statistic),
                    t.degrees_of_freedom.to_string(),
                    format!("{:.4e}", t.p_value),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push_str("<h3>Log-rank tests</h3>");
            table(
                &mut out,
                &["grouping", "chi-square", "df", "p-value"],
                &rows,
            );
        }
        out.push_str("</section>");
    }

    if !report.subgroups.is_empty() {
        out.push_str("<section id=\"subgroups\"><h2>Subgroups and fairness</h2>");
        let _ = write!(
            out,
            "<p class=\"note\">Groups with fewer than {} patients are marked small.</p>",
            report.settings.min_group_patients
        );
        for audit in &report.subgroups {
            let _ = write!(out, "<h3>By {}</h3>", esc(&audit.grouping));
            let names: Vec<String> = audit
                .rows
                .first()
                .map(|r| r.metrics.keys().cloned().collect())
                .unwrap_or_default();
            let mut header = vec!["group", "rows", "patients"];
            header.extend(names.iter().map(String::as_str));
            let rows: Vec<Vec<String>> = audit
                .rows
                .iter()
                .map(|r| {
                    let mut v = vec![
                        format!("{}{}", r.group, if r.small { " (small)" } else { "" }),
                        r.count.to_string(),
                        r.patients.to_string(),
                    ];
                    v.extend(
                        names
                            .iter()
                            .map(|n| r.metrics.get(n).map_or("–".into(), est)),
                    );
                    v
                })
                .collect();
            table(&mut out, &header, &rows);
            if let Some(primary) = names.first() {
                let overall = report
                    .classification
                    .as_ref()
                    .and_then(|c| c.metrics.get(primary))
                    .or_else(|| {
                        report
                            .survival
                            .as_ref()
                            .and_then(|s| s.metrics.get(primary))
                    })
                    .or_else(|| {
                        report
                            .regression
                            .as_ref()
                            .and_then(|s| s.metrics.get(primary))
                    })
                    .map(|e| e.value);
                let fr: Vec<(String, Estimate, bool)> = audit
                    .rows
                    .iter()
                    .filter_map(|r| {
                        r.metrics
                            .get(primary)
                            .map(|e| (r.group.clone(), *e, r.small))
                    })
                    .collect();
                out.push_str(&forest(
                    &format!("{primary} by {}", audit.grouping),
                    &fr,
                    overall,
                ));
            }
            if !audit.rates.is_empty() {
                let rows: Vec<Vec<String>> = audit
                    .rates
                    .iter()
                    .map(|(g, r)| {
                        let mut v = vec![g.clone()];
                        v.extend(r.named().iter().map(|(_, x)| num(*x)));
                        v
                    })
                    .collect();
                table(
                    &mut out,
                    &[
                        "group",
                        "count",
                        "accuracy",
                        "selection rate",
                        "TPR",
                        "FPR",
                        "FNR",
                        "TNR",
                        "precision",
                    ],
                    &rows,
                );
            }
            if let Some(f) = &audit.fairness {
                let labels = [
                    "demographic parity difference",
                    "demographic parity ratio",
                    "demographic parity difference to overall",
                    "equalized odds difference (worst case)",
                    "equalized odds difference (mean)",
                    "equalized odds ratio",
                    "equal opportunity difference",
                    "equal opportunity ratio",
                ];
                let rows: Vec<Vec<String>> = f
                    .named()
                    .iter()
                    .zip(labels)
                    .map(|((key, v), label)| {
                        let shown = audit.fairness_intervals.get(*key).map_or(num(*v), est);
                        vec![label.to_string(), shown]
                    })
                    .collect();
                table(
                    &mut out,
                    &["fairness metric (Fairlearn definitions)", "value (95% CI)"],
                    &rows,
                );
            }
        }
        out.push_str("</section>");
    }

    if let Some(u) = &report.uncertainty {
        let _ = write!(
            out,
            "<section id=\"uncertainty\"><h2>Uncertainty and referral</h2><p>Uncertainty: {}. Cases are kept from the most certain; the rest are referred.</p>",
            esc(&u.source)
        );
        out.push_str("<div class=\"plots\">");
        out.push_str(&svg(&Plot {
            title: "Referral curve",
            x_label: "fraction of cases kept",
            y_label: "accuracy of kept cases",
            x_range: (0.0, 1.0),
            y_range: (0.0, 1.0),
            diagonal: false,
            series: vec![Series {
                name: "model".into(),
                x: &u.referral.kept_fraction,
                y: &u.referral.accuracy,
                step: false,
                band: None,
            }],
        }));
        out.push_str("</div>");
        let mut rows = vec![vec!["AURC (lower is better)".to_string(), est(&u.aurc)]];
        match &u.at_target_accuracy {
            Some(p) => rows.push(vec![
                format!(
                    "threshold for accuracy ≥ {}",
                    num(report.settings.target_accuracy)
                ),
                format!(
                    "uncertainty ≤ {} keeps {:.1}% at accuracy {}",
                    num(p.threshold),
                    p.kept_fraction * 100.0,
                    num(p.accuracy)
                ),
            ]),
            None => rows.push(vec![
                format!(
                    "threshold for accuracy ≥ {}",
                    num(report.settings.target_accuracy)
                ),
                "not reachable".into(),
            ]),
        }
        table(&mut out, &["quantity", "value"], &rows);
        out.push_str("</section>");
    }

    if let Some(section) = &report.explanations {
        out.push_str(&crate::explanations::render_section(section));
    }
    out.push_str("<section id=\"settings\"><h2>Settings and conventions</h2><pre>");
    out.push_str(&esc(
        &serde_json::to_string_pretty(&report.settings).unwrap_or_default()
    ));
    out.push_str("</pre><p class=\"note\">Concordance: scikit-survival conventions (events tied in time are not comparable; an event tied with a censoring is; risk ties within the tolerance count one half). Uno's C weights pairs by 1/G(T)² with G the Kaplan–Meier estimate of censoring.</p></section></body></html>\n");
    out
}

/// Writes `<stem>.html` and `<stem>.json` into `dir`, each atomically.
pub fn write_report(
    report: &EvalReport,
    dir: &Path,
    stem: &str,
    title: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let html = render_html(report, title);
    let (json_path, html_path) = write_json_and_html(report, &html, dir, stem)?;
    Ok((html_path, json_path))
}

/// Write `<stem>.json` (the report, pretty-printed) and `<stem>.html` into `dir`, creating it,
/// each atomically; returns the two paths (JSON first).
pub(crate) fn write_json_and_html<T: serde::Serialize>(
    report: &T,
    html: &str,
    dir: &Path,
    stem: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::WriteFile {
        path: dir.to_path_buf(),
        source,
    })?;
    let json_path = dir.join(format!("{stem}.json"));
    let html_path = dir.join(format!("{stem}.html"));
    let json = serde_json::to_vec_pretty(report)?;
    bedside_core::fsio::write_atomic(&json_path, &json).map_err(|source| EvalError::WriteFile {
        path: json_path.clone(),
        source,
    })?;
    bedside_core::fsio::write_atomic(&html_path, html.as_bytes()).map_err(|source| {
        EvalError::WriteFile {
            path: html_path.clone(),
            source,
        }
    })?;
    Ok((json_path, html_path))
}
