//! Metrics without a stored golden value, compared live with scikit-learn and lifelines.
//!
//! Needs the project's Python environment (`.venv` at the repository root, or the interpreter
//! named by `BEDSIDE_PYTHON`) with the pinned peers installed. Skips with a message when it is
//! missing, unless `BEDSIDE_REQUIRE_PEERS=1`, in which case a missing peer fails the test.

use std::path::PathBuf;
use std::process::Command;

use bedside_core::rng::Rng;
use bedside_eval::classification::*;
use bedside_eval::regression::*;
use bedside_eval::survival::compute_log_rank;

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("BEDSIDE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    let ok = Command::new(&candidate)
        .args(["-c", "import sklearn, lifelines"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some(candidate);
    }
    if std::env::var("BEDSIDE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!(
            "BEDSIDE_REQUIRE_PEERS=1 but {} with scikit-learn and lifelines is not available",
            candidate.display()
        );
    }
    eprintln!(
        "skipping: {} with scikit-learn and lifelines not found (set BEDSIDE_PYTHON or run scripts/setup.sh)",
        candidate.display()
    );
    None
}

const SCRIPT: &str = r#"
import json, sys
import numpy as np, pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score, brier_score_loss, r2_score, mean_absolute_error
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from lifelines.statistics import multivariate_logrank_test
d = pd.read_csv(sys.argv[1])
y, p = d.y.values, d.p.values
prob_true, prob_pred = calibration_curve(y, p, n_bins=10)
logit = np.log(p / (1 - p)).reshape(-1, 1)
lr = LogisticRegression(penalty=None, tol=1e-12, max_iter=10000).fit(logit, y)
lr_test = multivariate_logrank_test(d.time, d.grp, d.event)
print(json.dumps(dict(
    ap=average_precision_score(y, p), auc=roc_auc_score(y, p), brier=brier_score_loss(y, p),
    cal_true=prob_true.tolist(), cal_pred=prob_pred.tolist(),
    slope=float(lr.coef_[0][0]), intercept=float(lr.intercept_[0]),
    r2=r2_score(d.truth, d.pred), mae=mean_absolute_error(d.truth, d.pred),
    logrank=float(lr_test.test_statistic), logrank_p=float(lr_test.p_value))))
"#;

#[test]
fn classification_regression_and_log_rank_match_python_peers() {
    let Some(py) = python() else { return };
    let mut rng = Rng::seed_from(5);
    let n = 600;
    let mut rows = String::from("y,p,truth,pred,time,event,grp\n");
    let (mut y, mut p, mut truth, mut pred, mut time, mut event, mut grp) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let z = rng.normal();
        let pi = 1.0 / (1.0 + (-(1.3 * z)).exp());
        // rounded so that ties occur and both sides read identical numbers
        let pi = (pi * 1000.0).round().clamp(1.0, 999.0) / 1000.0;
        let yi = rng.uniform() < 1.0 / (1.0 + (-(0.2 + z)).exp());
        let ti = rng.normal() * 3.0 + 50.0;
        let pr = ti + rng.normal();
        let g = ["a", "b", "c"][i % 3];
        let hazard = match g {
            "a" => 1.0,
            "b" => 1.4,
            _ => 0.8,
        };
        let tt = (-rng.uniform().ln() / hazard * 10.0).ceil();
        let cc = (-rng.uniform().ln() * 15.0).ceil();
        let (tm, ev) = (tt.min(cc), tt <= cc);
        rows.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            u8::from(yi),
            pi,
            ti,
            pr,
            tm,
            u8::from(ev),
            g
        ));
        y.push(yi);
        p.push(pi);
        truth.push(ti);
        pred.push(pr);
        time.push(tm);
        event.push(ev);
        grp.push(g);
    }
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("data.csv");
    std::fs::write(&csv, rows).unwrap();
    let out = Command::new(&py)
        .arg("-c")
        .arg(SCRIPT)
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let close = |got: f64, key: &str, tol: f64| {
        let w = want[key].as_f64().unwrap();
        assert!((got - w).abs() <= tol, "{key}: got {got}, want {w}");
    };
    close(compute_auprc(&y, &p).unwrap(), "ap", 1e-12);
    close(compute_auroc(&y, &p).unwrap(), "auc", 1e-12);
    close(compute_brier(&y, &p).unwrap(), "brier", 1e-12);
    let bins = compute_reliability_curve(&y, &p, 10).unwrap();
    let (t, q) = (
        want["cal_true"].as_array().unwrap(),
        want["cal_pred"].as_array().unwrap(),
    );
    assert_eq!(bins.len(), t.len());
    for (k, b) in bins.iter().enumerate() {
        assert!((b.observed - t[k].as_f64().unwrap()).abs() < 1e-12);
        assert!((b.mean_predicted - q[k].as_f64().unwrap()).abs() < 1e-12);
    }
    let fit = compute_calibration_fit(&y, &p).unwrap();
    close(fit.slope, "slope", 1e-6);
    close(fit.intercept, "intercept", 1e-6);
    close(compute_r2(&truth, &pred).unwrap(), "r2", 1e-12);
    close(compute_mae(&truth, &pred).unwrap(), "mae", 1e-12);
    let lr = compute_log_rank(&time, &event, &grp).unwrap();
    close(lr.statistic, "logrank", 1e-8);
    close(lr.p_value, "logrank_p", 1e-10);
}
