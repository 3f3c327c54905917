//! Agreement statistics against scikit-learn, statsmodels and pingouin
//! (goldens from tools/python/gen_agreement_goldens.py).

use bedside_eval::agreement::{
    EmptyFrames, KappaWeights, ReaderMetric, bland_altman, cohen_kappa, compare_ai_with_readers,
    fleiss_kappa, icc, mask_agreement,
};
use bedside_eval::bootstrap::BootstrapOptions;
use serde_json::Value;

fn golden() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join("agreement_goldens.json");
    serde_json::from_slice(&std::fs::read(&path).expect("read goldens")).expect("parse goldens")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as usize)
        .collect()
}

/// Checks `got` against `want` (absolute tolerance) and returns |diff|.
fn close(what: &str, got: f64, want: f64, tol: f64) -> f64 {
    let d = (got - want).abs();
    assert!(d <= tol, "{what}: got {got}, want {want} (|diff| {d:e})");
    d
}

#[test]
fn cohen_kappa_matches_sklearn_and_statsmodels() {
    let g = golden();
    let mut worst = 0.0f64;
    for c in g["cohen"].as_array().expect("cases") {
        let name = c["name"].as_str().expect("name");
        let weights: KappaWeights = c["weights"].as_str().expect("weights").parse().expect("w");
        let k = cohen_kappa(
            &usizes(&c["a"]),
            &usizes(&c["b"]),
            c["categories"].as_u64().expect("k") as usize,
            weights,
            0.95,
        )
        .expect("kappa");
        worst = worst.max(close(name, k.kappa, f(&c["sklearn_kappa"]), 1e-12));
        worst = worst.max(close(name, k.kappa, f(&c["statsmodels_kappa"]), 1e-12));
        worst = worst.max(close(&format!("{name} se"), k.se, f(&c["se"]), 1e-12));
        worst = worst.max(close(
            &format!("{name} se0"),
            k.se_null,
            f(&c["se_null"]),
            1e-12,
        ));
        worst = worst.max(close(
            &format!("{name} lower"),
            k.lower,
            f(&c["lower"]),
            1e-12,
        ));
        worst = worst.max(close(
            &format!("{name} upper"),
            k.upper,
            f(&c["upper"]),
            1e-12,
        ));
    }
    eprintln!("Cohen's kappa: max |diff| {worst:e}");
}

#[test]
fn fleiss_kappa_matches_statsmodels() {
    let g = golden();
    let mut worst = 0.0f64;
    for c in g["fleiss"].as_array().expect("cases") {
        let name = c["name"].as_str().expect("name");
        let counts: Vec<Vec<u32>> = c["counts"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| usizes(r).into_iter().map(|x| x as u32).collect())
            .collect();
        let k = fleiss_kappa(&counts).expect("fleiss");
        worst = worst.max(close(name, k.kappa, f(&c["kappa"]), 1e-12));
        worst = worst.max(close(
            &format!("{name} se0"),
            k.se_null,
            f(&c["se_null"]),
            1e-12,
        ));
    }
    eprintln!("Fleiss' kappa: max |diff| {worst:e}");
}

#[test]
fn icc_matches_pingouin() {
    let g = golden();
    let mut worst_point = 0.0f64;
    let mut worst_ci = 0.0f64;
    for c in g["icc"].as_array().expect("cases") {
        let name = c["name"].as_str().expect("name");
        let ratings: Vec<Vec<f64>> = c["ratings"]
            .as_array()
            .expect("rows")
            .iter()
            .map(floats)
            .collect();
        let res = icc(&ratings, 0.95).expect("icc");
        for row in &res.rows {
            let want = &c["rows"][&row.mcgraw_wong];
            let what = format!("{name} {}", row.form);
            worst_point = worst_point.max(close(&what, row.icc, f(&want["icc"]), 1e-12));
            close(
                &format!("{what} F"),
                row.f,
                f(&want["f"]),
                1e-9 * row.f.abs(),
            );
            close(&format!("{what} df2"), row.df2, f(&want["df2"]), 0.0);
            let p = f(&want["p_value"]);
            close(&format!("{what} p"), row.p_value, p, 1e-9 * p + 1e-15);
            worst_ci = worst_ci.max(close(
                &format!("{what} lower"),
                row.lower,
                f(&want["lower"]),
                1e-9,
            ));
            worst_ci = worst_ci.max(close(
                &format!("{what} upper"),
                row.upper,
                f(&want["upper"]),
                1e-9,
            ));
        }
    }
    eprintln!("ICC: max |diff| {worst_point:e} (values), {worst_ci:e} (intervals)");
}

#[test]
fn bland_altman_matches_the_published_formulas() {
    let g = golden();
    let mut worst = 0.0f64;
    for c in g["bland_altman"].as_array().expect("cases") {
        let name = c["name"].as_str().expect("name");
        let ba = bland_altman(&floats(&c["a"]), &floats(&c["b"]), f(&c["confidence"])).expect("ba");
        let pairs = [
            (ba.bias, &c["bias"]),
            (ba.sd, &c["sd"]),
            (ba.t, &c["t"]),
            (ba.bias_lower, &c["bias_ci"][0]),
            (ba.bias_upper, &c["bias_ci"][1]),
            (ba.lower_limit, &c["lower_limit"]),
            (ba.lower_limit_ci.0, &c["lower_limit_ci"][0]),
            (ba.lower_limit_ci.1, &c["lower_limit_ci"][1]),
            (ba.upper_limit, &c["upper_limit"]),
            (ba.upper_limit_ci.0, &c["upper_limit_ci"][0]),
            (ba.upper_limit_ci.1, &c["upper_limit_ci"][1]),
        ];
        for (k, (got, want)) in pairs.iter().enumerate() {
            worst = worst.max(close(&format!("{name} #{k}"), *got, f(want), 1e-9));
        }
    }
    eprintln!("Bland–Altman: max |diff| {worst:e}");
}

#[test]
fn dice_and_iou_match_sklearn() {
    let g = golden();
    for c in g["masks"].as_array().expect("cases") {
        let shape = usizes(&c["shape"]);
        let a: Vec<u8> = usizes(&c["a"]).into_iter().map(|x| x as u8).collect();
        let b: Vec<u8> = usizes(&c["b"]).into_iter().map(|x| x as u8).collect();
        let m = mask_agreement(&a, &b, shape[1] * shape[2], EmptyFrames::One).expect("masks");
        let per = c["per_frame"].as_array().expect("frames");
        assert_eq!(m.frames.len(), per.len());
        for (fr, want) in m.frames.iter().zip(per) {
            close("dice", fr.dice, f(&want["dice"]), 1e-15);
            close("iou", fr.iou, f(&want["iou"]), 1e-15);
        }
        close("pooled dice", m.pooled_dice, f(&c["pooled_dice"]), 1e-15);
        close("pooled iou", m.pooled_iou, f(&c["pooled_iou"]), 1e-15);
        let mean: f64 = per.iter().map(|p| f(&p["dice"])).sum::<f64>() / per.len() as f64;
        close("mean dice", m.mean_dice, mean, 1e-15);
        assert!(m.frames_both_empty >= 1);
    }
}

#[test]
fn ai_versus_readers_point_values_match_sklearn() {
    let g = golden();
    let r = &g["readers"];
    let reference = floats(&r["reference"]);
    let ai = floats(&r["ai"]);
    let names = ["r1", "r2", "r3"];
    let readers: Vec<(String, Vec<f64>)> = names
        .iter()
        .map(|n| (n.to_string(), floats(&r["readers"][n]["ratings"])))
        .collect();
    let opts = BootstrapOptions {
        replicates: 200,
        ..Default::default()
    };
    for (metric, key) in [
        (ReaderMetric::Accuracy, "accuracy"),
        (ReaderMetric::Kappa, "kappa"),
        (ReaderMetric::Sensitivity { positive: 1.0 }, "sensitivity"),
        (ReaderMetric::Specificity { positive: 1.0 }, "specificity"),
    ] {
        let c = compare_ai_with_readers(&reference, &ai, &readers, metric, None, &opts)
            .expect("compare");
        for (row, n) in c.readers.iter().zip(names) {
            let want = &r["readers"][n][key];
            close(
                &format!("{n} {key}"),
                row.reader_metric.value,
                f(&want[0]),
                1e-12,
            );
            close(
                &format!("{n} {key} AI"),
                row.ai_metric.value,
                f(&want[1]),
                1e-12,
            );
            assert!(row.reader_metric.lower <= row.reader_metric.value);
            assert!(row.reader_metric.value <= row.reader_metric.upper);
        }
        assert_eq!(c.readers[2].n, reference.len() - 5);
    }
    let m = &r["measurements"];
    let c = compare_ai_with_readers(
        &floats(&m["reference"]),
        &floats(&m["ai"]),
        &[("r".to_string(), floats(&m["reader"]))],
        ReaderMetric::Mae,
        None,
        &opts,
    )
    .expect("mae");
    close(
        "MAE reader",
        c.readers[0].reader_metric.value,
        f(&m["mae"][0]),
        1e-12,
    );
    close(
        "MAE AI",
        c.readers[0].ai_metric.value,
        f(&m["mae"][1]),
        1e-12,
    );
}
