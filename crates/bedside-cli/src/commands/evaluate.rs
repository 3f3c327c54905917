//! `bedside evaluate`: metrics with confidence intervals, survival metrics, calibration,
//! uncertainty referral, subgroup and fairness audit, written as one HTML report and a JSON file.

use std::path::PathBuf;

use anyhow::Context as _;
use bedside_eval::bootstrap::BootstrapOptions;
use bedside_eval::evaluate::{EvalReport, EvalSettings, evaluate};
use bedside_eval::input::{ColumnMap, load, load_censoring_data};
use bedside_eval::report::write_report;
use bedside_eval::survival::{
    BrierNormalisation, BrierOptions, CensoringAt, ConcordanceOptions, Integration,
};

use crate::ui::{Ctx, Exit};

/// Evaluate a prediction table: metrics with bootstrap CIs, subgroups, fairness, referral.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  # binary classifier: predictions joined to a manifest of labels and groups
  bedside evaluate preds.csv --manifest manifest.csv --id study --patient patient \\
      --score prob --label outcome --group sex --group site -o eval/

  # survival model (higher risk = earlier event), C-index with tau and AUC at 1 and 2 years;
  # columns surv@<t> hold predicted survival; censoring weights fitted on the training table
  bedside evaluate preds.csv --time days --event died --risk risk --tau 1825 --times 365,730 \\
      --survival-prefix surv@ --censoring-from train.csv

  # regression: MAE, RMSE, R², Bland–Altman, audited by scanner
  bedside evaluate preds.csv --target lvef --predicted lvef_pred --group scanner

Writes <out>/evaluation.html (self-contained: inline SVG, no network) and <out>/evaluation.json.")]
pub struct Args {
    /// Prediction table (CSV with a header row, or Parquet by its .parquet extension).
    pub predictions: PathBuf,
    /// Manifest with labels and group columns (CSV or Parquet), joined to the predictions by --id.
    #[arg(long, short = 'm')]
    pub manifest: Option<PathBuf>,
    /// Column that identifies a row in both tables.
    #[arg(long)]
    pub id: Option<String>,
    /// Column with the patient identifier; the bootstrap resamples patients.
    #[arg(long)]
    pub patient: Option<String>,
    /// Column with the predicted probability (or score) of the positive class.
    #[arg(long)]
    pub score: Option<String>,
    /// Column with the binary label (0/1).
    #[arg(long)]
    pub label: Option<String>,
    /// Column with the follow-up time (survival).
    #[arg(long)]
    pub time: Option<String>,
    /// Column with the event indicator (1 = event, 0 = censored).
    #[arg(long)]
    pub event: Option<String>,
    /// Column with the survival risk score (higher = earlier event); defaults to --score.
    #[arg(long)]
    pub risk: Option<String>,
    /// Column with the true value of a continuous target (regression).
    #[arg(long)]
    pub target: Option<String>,
    /// Column with the predicted value of a continuous target (regression).
    #[arg(long)]
    pub predicted: Option<String>,
    /// Column with a per-case uncertainty (higher = less certain) for the referral curve.
    #[arg(long)]
    pub uncertainty: Option<String>,
    /// Prefix of predicted-survival columns (`<prefix><t>`, e.g. `surv@365`): enables the Brier
    /// score, integrated Brier score and Antolini's concordance.
    #[arg(long)]
    pub survival_prefix: Option<String>,
    /// Training table (CSV/Parquet with the same --time/--event columns) to fit the censoring
    /// distribution on, as scikit-survival does; default: the evaluated data.
    #[arg(long)]
    pub censoring_from: Option<PathBuf>,
    /// Group column for the subgroup and fairness audit (repeat for several; their
    /// intersection is audited too).
    #[arg(long = "group", short = 'g')]
    pub groups: Vec<String>,
    /// Predict positive when score >= threshold.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f64,
    /// Also report threshold metrics at the threshold reaching this sensitivity.
    #[arg(long, default_value_t = 0.9)]
    pub target_sensitivity: f64,
    /// Target accuracy for the referral threshold.
    #[arg(long, default_value_t = 0.95)]
    pub target_accuracy: f64,
    /// Times for the time-dependent AUC, comma separated (default: quartiles of event times).
    #[arg(long, value_delimiter = ',')]
    pub times: Vec<f64>,
    /// Truncation time for Uno's C.
    #[arg(long)]
    pub tau: Option<f64>,
    /// Risk scores closer than this count as tied in the C-index (scikit-survival: 1e-8;
    /// lifelines: 0).
    #[arg(long, default_value_t = 1e-8)]
    pub tie_tolerance: f64,
    /// Brier averaging: `mean` divides by n (scikit-survival), `self` by the sum of the weights
    /// (pycox).
    #[arg(long, default_value = "mean", value_parser = ["mean", "self"])]
    pub brier_normalisation: String,
    /// Where the censoring survival G is read for events: `event-time` G(T) (scikit-survival)
    /// or `just-before` G(T−) (pycox).
    #[arg(long, default_value = "event-time", value_parser = ["event-time", "just-before"])]
    pub brier_censoring_at: String,
    /// Integration rule of the integrated Brier score: `trapezoid` (scikit-survival) or
    /// `simpson` (pycox).
    #[arg(long, default_value = "trapezoid", value_parser = ["trapezoid", "simpson"])]
    pub integration: String,
    /// Bootstrap replicates (0 disables confidence intervals).
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 20240601)]
    pub seed: u64,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Groups with fewer patients are flagged as small.
    #[arg(long, default_value_t = 30)]
    pub min_group_patients: usize,
    /// Bins of the reliability curve and ECE.
    #[arg(long, default_value_t = 10)]
    pub bins: usize,
    /// Output folder.
    #[arg(long, short = 'o', default_value = "evaluation")]
    pub out: PathBuf,
    /// Report title.
    #[arg(long, default_value = "Bedside evaluation")]
    pub title: String,
    /// Add the "Explanations" section written by `bedside explain --dataset`
    /// (its explanations.json).
    #[arg(long)]
    pub explanations: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<()> {
    for (name, v) in [
        ("--confidence", args.confidence),
        ("--target-sensitivity", args.target_sensitivity),
        ("--target-accuracy", args.target_accuracy),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(Exit::invalid(format!("{name} must be between 0 and 1, got {v}")).into());
        }
    }
    if args.bins == 0 {
        return Err(Exit::invalid("--bins must be at least 1").into());
    }
    let map = ColumnMap {
        id: args.id.clone(),
        patient: args.patient.clone(),
        score: args.score.clone(),
        label: args.label.clone(),
        time: args.time.clone(),
        event: args.event.clone(),
        risk: args.risk.clone(),
        target: args.target.clone(),
        predicted: args.predicted.clone(),
        uncertainty: args.uncertainty.clone(),
        survival_prefix: args.survival_prefix.clone(),
        groups: args.groups.clone(),
    };
    let mut table = load(&args.predictions, args.manifest.as_deref(), &map)
        .map_err(|e| Exit::invalid(error_chain(&e)))?;
    if let Some(path) = &args.censoring_from {
        let (Some(time), Some(event)) = (&args.time, &args.event) else {
            return Err(Exit::invalid("--censoring-from needs --time and --event").into());
        };
        table.censoring_data = Some(
            load_censoring_data(path, time, event).map_err(|e| Exit::invalid(error_chain(&e)))?,
        );
    }
    let settings = EvalSettings {
        threshold: args.threshold,
        target_sensitivity: args.target_sensitivity,
        calibration_bins: args.bins,
        times: args.times.clone(),
        bootstrap: BootstrapOptions {
            replicates: args.bootstrap,
            seed: args.seed,
            confidence: args.confidence,
        },
        min_group_patients: args.min_group_patients,
        target_accuracy: args.target_accuracy,
        concordance: ConcordanceOptions {
            tie_tolerance: args.tie_tolerance,
            tau: args.tau,
            ..Default::default()
        },
        brier: BrierOptions {
            normalisation: if args.brier_normalisation == "self" {
                BrierNormalisation::SelfNormalised
            } else {
                BrierNormalisation::Mean
            },
            censoring_at: if args.brier_censoring_at == "just-before" {
                CensoringAt::JustBefore
            } else {
                CensoringAt::EventTime
            },
            integration: if args.integration == "simpson" {
                Integration::Simpson
            } else {
                Integration::Trapezoid
            },
        },
        ..Default::default()
    };
    let bar = ctx.progress(1, "evaluate");
    bar.set_message(format!(
        "{} rows, {} bootstrap replicates",
        table.n, args.bootstrap
    ));
    let mut report = evaluate(&table, &settings).map_err(|e| Exit::invalid(error_chain(&e)))?;
    if let Some(path) = &args.explanations {
        report.explanations = Some(
            bedside_eval::explanations::read_section(path)
                .map_err(|e| Exit::invalid(error_chain(&e)))?,
        );
    }
    bar.inc(1);
    bar.finish_and_clear();
    let (html, json) = write_report(&report, &args.out, "evaluation", &args.title)
        .with_context(|| format!("writing the report to {}", args.out.display()))?;
    summarise(&report, ctx);
    ctx.say(format!("report: {}", html.display()));
    ctx.say(format!("numbers: {}", json.display()));
    Ok(())
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn fmt(e: &bedside_eval::bootstrap::Estimate) -> String {
    if e.lower.is_nan() {
        format!("{:.3}", e.value)
    } else {
        format!("{:.3} ({:.3} to {:.3})", e.value, e.lower, e.upper)
    }
}

/// The one-screen summary.
fn summarise(report: &EvalReport, ctx: &Ctx) {
    ctx.say(format!(
        "evaluated {} rows from {} patients ({} bootstrap replicates)",
        report.n_rows, report.n_patients, report.settings.bootstrap.replicates
    ));
    if let Some(c) = &report.classification {
        ctx.say(format!(
            "classification: {} cases, {} positive",
            c.n, c.positives
        ));
        for (k, e) in &c.metrics {
            ctx.say(format!("  {k:<26} {}", fmt(e)));
        }
        let p = &c.at_threshold;
        ctx.say(format!(
            "  at threshold {:<13} sens {:.3}  spec {:.3}  ppv {:.3}  npv {:.3}",
            p.threshold, p.rates.sensitivity, p.rates.specificity, p.rates.ppv, p.rates.npv
        ));
    }
    if let Some(r) = &report.regression {
        ctx.say("regression:");
        for (k, e) in &r.metrics {
            ctx.say(format!("  {k:<26} {}", fmt(e)));
        }
        let ba = &r.bland_altman;
        ctx.say(format!(
            "  Bland–Altman bias {:.3}, limits {:.3} to {:.3}",
            ba.bias, ba.lower_limit, ba.upper_limit
        ));
    }
    if let Some(s) = &report.survival {
        ctx.say(format!("survival: {} cases, {} events", s.n, s.events));
        for (k, e) in &s.metrics {
            ctx.say(format!("  {k:<26} {}", fmt(e)));
        }
        if let Some(a) = &s.time_dependent_auc {
            ctx.say(format!("  mean time-dependent AUC    {:.3}", a.mean_auc));
        }
    }
    for audit in &report.subgroups {
        let small = audit.rows.iter().filter(|r| r.small).count();
        let mut line = format!(
            "subgroups by {}: {} groups",
            audit.grouping,
            audit.rows.len()
        );
        if small > 0 {
            line.push_str(&format!(" ({small} small)"));
        }
        if let Some(f) = &audit.fairness {
            line.push_str(&format!(
                "; demographic parity diff {:.3}, equalized odds diff {:.3}",
                f.demographic_parity_difference, f.equalized_odds_difference
            ));
        }
        ctx.say(line);
    }
    if let Some(u) = &report.uncertainty {
        let mut line = format!("referral: AURC {:.4}", u.aurc.value);
        if let Some(p) = &u.at_target_accuracy {
            line.push_str(&format!(
                "; accuracy {:.3} keeping {:.1}% of cases",
                p.accuracy,
                p.kept_fraction * 100.0
            ));
        }
        ctx.say(line);
    }
    for w in &report.warnings {
        ctx.say(format!("note: {w}"));
    }
}
