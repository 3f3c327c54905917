//! Evaluation of clinical prediction models, for Bedside's runs and anyone else's.
//!
//! Every metric is a pure function over slices (`compute_*`), so it scores a plain prediction
//! table regardless of the model that produced it; streaming accumulators exist where they help
//! ([`classification::ConfusionMatrix`]). The crate has no deep-learning dependency.
//!
//! - [`classification`]: AUROC, AUPRC, threshold metrics, Brier score, calibration.
//! - [`regression`]: MAE, RMSE, R², Bland–Altman.
//! - [`survival`]: Kaplan–Meier, log-rank, Harrell's/Uno's/Antolini's concordance,
//!   time-dependent AUC, Brier and integrated Brier scores, Cox regression.
//! - [`agreement`]: Cohen's and Fleiss' kappa, ICC, Bland–Altman with intervals, Dice/IoU,
//!   the AI against readers, and the agreement report.
//! - [`bootstrap`]: seeded patient-level bootstrap confidence intervals.
//! - [`fairness`]: subgroups and their intersections, Fairlearn's fairness metrics.
//! - [`uncertainty`]: referral curves, AURC, thresholds for a target accuracy.
//! - [`input`], [`evaluate`], [`report`]: read a prediction table joined to a manifest, compute
//!   everything, write one self-contained HTML report and a JSON file of every number.
//! - [`explanations`]: the report's "Explanations" section (occlusion test, attribution mass,
//!   sanity checks of attribution methods), computed by `bedside explain --dataset`.
//!
//! Conventions that change numbers are explicit options whose defaults reproduce
//! scikit-survival (survival), scikit-learn (classification) and Fairlearn (fairness).
//!
//! ```
//! use bedside_eval::classification::compute_auroc;
//! use bedside_eval::survival::{compute_harrell_c, ConcordanceOptions};
//!
//! let auroc = compute_auroc(&[true, false, true, false], &[0.9, 0.3, 0.6, 0.6]).unwrap();
//! assert!((auroc - 0.875).abs() < 1e-12);
//!
//! let time = [1.0, 2.0, 3.0, 4.0];
//! let event = [true, true, false, true];
//! let risk = [4.0, 1.0, 3.0, 2.0];
//! let c = compute_harrell_c(&time, &event, &risk, &ConcordanceOptions::default()).unwrap();
//! assert!((c.c_index - 3.0 / 5.0).abs() < 1e-12);
//! ```

pub mod agreement;
pub mod bootstrap;
pub mod classification;
pub mod error;
pub mod evaluate;
pub mod explanations;
pub mod fairness;
pub mod input;
pub mod regression;
pub mod report;
pub mod stats;
pub mod survival;
pub mod uncertainty;

pub use error::{EvalError, Result};
