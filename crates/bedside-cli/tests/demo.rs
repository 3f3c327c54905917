//! `bedside demo` end to end at a tiny size: every stage runs (synth, curate, labels, three
//! trainings with export and prediction, both evaluations) and leaves the files the README
//! promises. The model quality of the full-size demo is reported in the README, not asserted
//! here: one epoch on a handful of patients shows the plumbing, not learning (that is
//! `bedside-ml`'s `a_small_model_learns_the_blob_task`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;

#[test]
fn a_tiny_demo_runs_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bedside"))
        .args([
            "demo",
            &dir.path().join("demo").display().to_string(),
            "--patients",
            "40",
            "--epochs",
            "1",
            "--fine-tune-epochs",
            "1",
            "--size",
            "16",
            "--max-clips",
            "1",
            "--bootstrap",
            "20",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("run bedside");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "demo failed:\n{text}");
    let demo = dir.path().join("demo");
    for path in [
        "cohort/studies.csv",
        "curated/metadata.csv",
        "labels.csv",
        "configs/ef.toml",
        "configs/reduced-ef.toml",
        "configs/survival.toml",
        "bundles/ef/bundle.json",
        "bundles/reduced-ef/bundle.json",
        "bundles/survival/bundle.json",
        "predictions/test.csv",
        "explanations/dataset/explanations.json",
        "explanations/dataset/occlusion_test.csv",
        "explanations/dataset/sanity_verdicts.csv",
        "evaluation-models/evaluation.html",
        "evaluation/evaluation.html",
    ] {
        assert!(demo.join(path).is_file(), "{path} is missing:\n{text}");
    }
    // The reduced-EF and survival models start from the EF model's backbone.
    for task in ["reduced-ef", "survival"] {
        let config = std::fs::read_to_string(demo.join(format!("configs/{task}.toml"))).unwrap();
        assert!(
            config.contains("init_from = \"../bundles/ef\""),
            "{task}: {config}"
        );
    }
    // The site secret stays outside the curated outputs.
    assert!(demo.join("secret/bedside-site-secret.key").is_file());
    let mut stack = vec![demo.join("curated")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert!(!path.ends_with("bedside-site-secret.key"), "{path:?}");
            if path.is_dir() {
                stack.push(path);
            }
        }
    }

    // Every test study of the label sheet has one row with every task's columns.
    let mut merged = csv::Reader::from_path(demo.join("predictions/test.csv")).unwrap();
    let header: Vec<String> = merged.headers().unwrap().iter().map(String::from).collect();
    for column in [
        "study_key",
        "ef_pred",
        "prob_reduced_ef",
        "uncertainty",
        "risk",
    ] {
        assert!(header.contains(&column.to_string()), "{header:?}");
    }
    assert!(header.iter().any(|h| h.starts_with("surv@")), "{header:?}");
    let rows = merged.records().count();
    let mut labels = csv::Reader::from_path(demo.join("labels.csv")).unwrap();
    let split = labels
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "split")
        .unwrap();
    let test = labels
        .records()
        .filter(|r| r.as_ref().unwrap().get(split) == Some("test"))
        .count();
    assert_eq!(rows, test, "merged predictions vs test studies");

    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(demo.join("evaluation-models/evaluation.json")).unwrap(),
    )
    .unwrap();
    for section in [
        "classification",
        "regression",
        "survival",
        "uncertainty",
        "explanations",
    ] {
        assert!(
            json.get(section).is_some(),
            "no {section} in the evaluation"
        );
    }
    assert!(text.contains("Demo finished"), "{text}");

    // A user explains one of the demo's bundles on the curated table; the study column defaults
    // to the one the bundle was trained with (`study_key`), as in `bedside predict`.
    let out = Command::new(env!("CARGO_BIN_EXE_bedside"))
        .current_dir(&demo)
        .args([
            "explain",
            "--bundle",
            "bundles/reduced-ef",
            "--manifest",
            "curated/metadata.csv",
            "--labels",
            "labels.csv",
            "--join-key",
            "input_sha256",
            "--split",
            "test",
            "--max-studies",
            "1",
            "--method",
            "saliency",
            "--out",
            "explained-by-hand",
        ])
        .output()
        .expect("run bedside explain");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "explain failed:\n{text}");
    assert!(
        demo.join("explained-by-hand/summary.json").is_file(),
        "{text}"
    );
}
