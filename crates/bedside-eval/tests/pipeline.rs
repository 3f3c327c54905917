//! End to end: CSV prediction table + manifest → evaluation → HTML and JSON, checked against the
//! golden values of the same data.

mod common;

use bedside_eval::bootstrap::BootstrapOptions;
use bedside_eval::evaluate::{EvalSettings, evaluate};
use bedside_eval::input::{ColumnMap, load};
use bedside_eval::report::{render_html, write_report};
use common::*;

fn settings(replicates: usize) -> EvalSettings {
    EvalSettings {
        threshold: 0.35,
        bootstrap: BootstrapOptions {
            replicates,
            seed: 7,
            confidence: 0.95,
        },
        ..Default::default()
    }
}

/// Splits the Fairlearn golden table into a prediction file and a manifest joined by `case`,
/// with rows of the prediction file in reverse order so that the join is exercised.
fn fairlearn_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let t = Table::read("fairlearn_data.csv");
    let mut pred = String::from("case,prob\n");
    let mut man = String::from("case,patient,outcome,sex,site\n");
    for (i, r) in t.rows.iter().enumerate() {
        // two cases per patient
        man.push_str(&format!(
            "c{i},p{},{},{},{}\n",
            i / 2,
            r[t.index("y_true")],
            r[t.index("sex")],
            r[t.index("site")]
        ));
    }
    for (i, r) in t.rows.iter().enumerate().rev() {
        pred.push_str(&format!("c{i},{}\n", r[t.index("score")]));
    }
    let (p, m) = (dir.join("pred.csv"), dir.join("manifest.csv"));
    std::fs::write(&p, pred).expect("write predictions");
    std::fs::write(&m, man).expect("write manifest");
    (p, m)
}

fn fairlearn_map() -> ColumnMap {
    ColumnMap {
        id: Some("case".into()),
        patient: Some("patient".into()),
        score: Some("prob".into()),
        label: Some("outcome".into()),
        groups: vec!["sex".into(), "site".into()],
        ..Default::default()
    }
}

#[test]
fn classification_and_fairness_through_the_pipeline() {
    let g = golden_json("golden_fairlearn.json");
    let dir = tempfile::tempdir().unwrap();
    let (p, m) = fairlearn_files(dir.path());
    let table = load(&p, Some(&m), &fairlearn_map()).unwrap();
    let report = evaluate(&table, &settings(200)).unwrap();
    assert_eq!(report.n_rows, 400);
    assert_eq!(report.n_patients, 200);
    let c = report.classification.as_ref().unwrap();
    let auroc = c.metrics["auroc"];
    close(auroc.value, f(&g["auc_by_site"]["overall"]), 1e-8, "AUROC");
    assert!(auroc.lower < auroc.value && auroc.value < auroc.upper);
    assert_eq!(auroc.replicates_used, 200);
    // the generating script predicted positive when score > 0.35; no score equals 0.35 exactly
    close(
        c.at_threshold.rates.accuracy,
        f(&g["metricframe_sex"]["overall"]["accuracy"]),
        1e-12,
        "accuracy",
    );
    assert_eq!(report.subgroups.len(), 3);
    for (audit, key) in report.subgroups.iter().zip(["sex", "site", "sex_x_site"]) {
        let fair = audit.fairness.unwrap();
        let gold = &g["aggregate_metrics"][key];
        let dp = audit.fairness_intervals["demographic_parity_difference"];
        assert_eq!(dp.value, fair.demographic_parity_difference);
        assert!(dp.lower < dp.value && dp.value < dp.upper, "{key}: {dp:?}");
        close(
            fair.demographic_parity_difference,
            f(&gold["demographic_parity_difference"]),
            1e-8,
            key,
        );
        close(
            fair.equalized_odds_difference,
            f(&gold["equalized_odds_difference"]),
            1e-8,
            key,
        );
        close(
            fair.equal_opportunity_ratio,
            f(&gold["equal_opportunity_ratio"]),
            1e-8,
            key,
        );
    }
    let by_site = &report.subgroups[1];
    for row in &by_site.rows {
        let site = row.group.trim_start_matches("site=");
        close(
            row.metrics["auroc"].value,
            f(&g["auc_by_site"]["by_group"][site]),
            1e-8,
            "AUROC by site",
        );
    }
    // Intersections smaller than the minimum are flagged.
    assert!(
        report.subgroups[2]
            .rows
            .iter()
            .all(|r| r.small == (r.patients < 30))
    );
    let aurc = report.uncertainty.as_ref().unwrap().aurc;
    assert!(aurc.lower <= aurc.value && aurc.value <= aurc.upper && aurc.replicates_used == 200);
}

#[test]
fn same_seed_gives_identical_reports_and_files_are_self_contained() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m) = fairlearn_files(dir.path());
    let table = load(&p, Some(&m), &fairlearn_map()).unwrap();
    let a = evaluate(&table, &settings(100)).unwrap();
    let b = evaluate(&table, &settings(100)).unwrap();
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    // No "Explanations" section unless one is added.
    assert!(
        !serde_json::to_string(&a)
            .unwrap()
            .contains("\"explanations\"")
    );
    let mut with = a.clone();
    with.explanations = Some(bedside_eval::explanations::ExplanationsSection {
        model: "m".into(),
        target: "output 1".into(),
        region: "left ventricle".into(),
        studies: 4,
        patients: 2,
        settings: serde_json::Value::Null,
        occlusion: None,
        attribution_mass: Vec::new(),
        sanity: None,
        notes: Vec::new(),
    });
    let (with_html, with_json) =
        write_report(&with, &dir.path().join("with"), "evaluation", "Test report").unwrap();
    let with_page = std::fs::read_to_string(with_html).unwrap();
    assert!(with_page.contains("<section id=\"explanations\"><h2>Explanations</h2>"));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(with_json).unwrap()).unwrap();
    assert_eq!(v["explanations"]["region"], "left ventricle");
    let (html, json) = write_report(&a, dir.path(), "evaluation", "Test report").unwrap();
    let page = std::fs::read_to_string(html).unwrap();
    for id in [
        "summary",
        "classification",
        "subgroups",
        "uncertainty",
        "settings",
    ] {
        assert!(
            page.contains(&format!("<section id=\"{id}\">")),
            "missing section {id}"
        );
    }
    assert!(
        page.matches("<svg").count() >= 6,
        "expected ROC, PR, calibration, forest and referral plots"
    );
    for forbidden in ["<script", " src=", " href=", "url("] {
        assert!(
            !page.contains(forbidden),
            "report must be self-contained: found {forbidden}"
        );
    }
    let parsed: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert!(
        parsed["classification"]["metrics"]["auroc"]["value"]
            .as_f64()
            .is_some()
    );
}

#[test]
fn survival_through_the_pipeline() {
    let gd = golden_json("golden_deep.json");
    let m = &gd["whas500_test_metric_crosscheck"];
    let dir = tempfile::tempdir().unwrap();
    // a small prediction table built from the golden survival matrix file, plus a group column
    let t = Table::read("whas500_test_surv.csv");
    let mut csv = String::from("id,time,event,risk,arm\n");
    for (i, r) in t.rows.iter().enumerate() {
        csv.push_str(&format!(
            "{i},{},{},{},{}\n",
            r[t.index("time")],
            r[t.index("event")],
            r[t.index("risk")],
            if i % 2 == 0 { "x" } else { "y" }
        ));
    }
    let p = dir.path().join("surv.csv");
    std::fs::write(&p, csv).unwrap();
    let map = ColumnMap {
        time: Some("time".into()),
        event: Some("event".into()),
        risk: Some("risk".into()),
        groups: vec!["arm".into()],
        ..Default::default()
    };
    let table = load(&p, None, &map).unwrap();
    let report = evaluate(
        &table,
        &EvalSettings {
            times: vec![180.0, 365.0, 730.0, 1095.0, 1460.0],
            ..settings(50)
        },
    )
    .unwrap();
    let s = report.survival.as_ref().unwrap();
    close(
        s.metrics["harrell_c"].value,
        f(&m["sksurv_harrell"]),
        1e-8,
        "Harrell",
    );
    close(
        s.metrics["uno_c"].value,
        f(&m["sksurv_uno_censKM_test"]),
        1e-8,
        "Uno, G on the evaluated data",
    );
    let auc = s.time_dependent_auc.as_ref().unwrap();
    for (k, v) in fvec(&m["sksurv_cumdyn_auc_censKM_test"]).iter().enumerate() {
        close(auc.auc[k], *v, 1e-8, "time-dependent AUC");
        let ci = s.time_dependent_auc_intervals[k];
        assert!(ci.value == auc.auc[k] && ci.lower < ci.value && ci.value < ci.upper);
    }
    assert_eq!(s.time_dependent_auc_intervals.len(), auc.auc.len() + 1);
    assert_eq!(s.log_rank.len(), 1);
    assert_eq!(s.kaplan_meier_by_group.len(), 2);
    let page = render_html(&report, "survival");
    assert!(page.contains("<section id=\"survival\">") && page.contains("Kaplan–Meier"));
}

#[test]
fn clear_errors_for_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m) = fairlearn_files(dir.path());
    let mut map = fairlearn_map();
    map.label = Some("diagnosis".into());
    let err = load(&p, Some(&m), &map).unwrap_err().to_string();
    assert!(
        err.contains("diagnosis") && err.contains("outcome"),
        "{err}"
    );
    let q = dir.path().join("nan.csv");
    std::fs::write(&q, "case,prob\nc0,nan\n").unwrap();
    let err = load(&q, Some(&m), &fairlearn_map())
        .unwrap_err()
        .to_string();
    assert!(err.contains("prob") && err.contains("NaN"), "{err}");
}

#[test]
fn survival_curves_and_training_censoring_through_the_pipeline() {
    let g = golden_json("golden_survival.json");
    let gold = &g["whas500_split_metrics_sksurv"];
    let gd = golden_json("golden_deep.json");
    let m = &gd["whas500_test_metric_crosscheck"];
    let dir = tempfile::tempdir().unwrap();
    // the golden test-set file already has predicted-survival columns named t=<time>
    let src = common::golden_dir().join("whas500_test_surv.csv");
    // training rows (split file) for the censoring distribution
    let all = Table::read("whas500_encoded.csv");
    let split = Table::read("whas500_split.csv").bools("is_test");
    let mut train = String::from("lenfol,fstat\n");
    for (r, test) in all.rows.iter().zip(&split) {
        if !test {
            train.push_str(&format!(
                "{},{}\n",
                r[all.index("lenfol")],
                r[all.index("fstat")]
            ));
        }
    }
    let train_path = dir.path().join("train.csv");
    std::fs::write(&train_path, train).unwrap();
    let map = ColumnMap {
        time: Some("time".into()),
        event: Some("event".into()),
        risk: Some("risk".into()),
        survival_prefix: Some("t=".into()),
        ..Default::default()
    };
    let mut table = load(&src, None, &map).unwrap();
    assert_eq!(table.survival_grid.len(), 396);
    table.censoring_data =
        Some(bedside_eval::input::load_censoring_data(&train_path, "lenfol", "fstat").unwrap());
    let times = fvec(&gold["brier_times"]);
    let report = evaluate(
        &table,
        &EvalSettings {
            times: times.clone(),
            ..settings(20)
        },
    )
    .unwrap();
    let s = report.survival.as_ref().unwrap();
    close(
        s.metrics["uno_c"].value,
        f(&gold["uno_c_no_tau"]),
        1e-8,
        "Uno, G on training data",
    );
    let auc = s.time_dependent_auc.as_ref().unwrap();
    for (k, v) in fvec(&gold["cumulative_dynamic_auc"]).iter().enumerate() {
        close(
            auc.auc[k],
            *v,
            1e-8,
            "time-dependent AUC, G on training data",
        );
    }
    let brier = s.brier_at_times.as_ref().unwrap();
    for (k, v) in fvec(&gold["brier"]).iter().enumerate() {
        assert_eq!(brier[k].0, times[k]);
        close(brier[k].1.value, *v, 1e-8, "Brier, G on training data");
        assert!(brier[k].1.lower <= brier[k].1.value && brier[k].1.value <= brier[k].1.upper);
    }
    close(
        s.metrics["antolini_c"].value,
        f(&m["pycox_concordance_td_antolini"]),
        1e-8,
        "Antolini",
    );
    let antolini = s.metrics["antolini_c"];
    assert!(
        antolini.replicates_used == 20
            && antolini.lower < antolini.value
            && antolini.value < antolini.upper,
        "Antolini's C has a bootstrap interval: {antolini:?}"
    );
    let ibs = s.metrics["integrated_brier"];
    assert!(
        ibs.value > 0.1 && ibs.value < 0.25 && ibs.lower <= ibs.value && ibs.value <= ibs.upper
    );
    assert!(s.censoring_fitted_on.contains("training"));
}

#[test]
fn bland_altman_limits_have_intervals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reg.csv");
    let mut csv = String::from("id,patient,truth,pred\n");
    let mut rng = bedside_core::rng::Rng::seed_from(3);
    let (mut truth, mut pred) = (Vec::new(), Vec::new());
    for i in 0..120 {
        let t = rng.range(20.0, 70.0);
        let p = t + rng.normal_with(1.5, 4.0);
        csv.push_str(&format!("{i},{},{t},{p}\n", i / 2));
        truth.push(t);
        pred.push(p);
    }
    std::fs::write(&path, csv).unwrap();
    let map = ColumnMap {
        id: Some("id".into()),
        patient: Some("patient".into()),
        target: Some("truth".into()),
        predicted: Some("pred".into()),
        ..Default::default()
    };
    let table = load(&path, None, &map).unwrap();
    let report = evaluate(&table, &settings(50)).unwrap();
    let r = report.regression.as_ref().unwrap();
    let direct = bedside_eval::regression::compute_bland_altman(&truth, &pred, 0.95).unwrap();
    // The table's difference convention may be predicted − target or the reverse; the point
    // values must equal the direct computation's up to that sign.
    for (name, expected) in [
        ("bland_altman_bias", direct.bias),
        ("bland_altman_lower_limit", direct.lower_limit),
        ("bland_altman_upper_limit", direct.upper_limit),
    ] {
        let e = r.metrics[name];
        close(e.value, expected, 1e-9, name);
        assert!(
            e.replicates_used == 50 && e.lower < e.value && e.value < e.upper,
            "{name}: {e:?}"
        );
    }
}
