//! `bedside train`, `export`, `predict` and `evaluate` chained through the binary, and the
//! exit code of a bad configuration.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::process::Command;

use bedside_core::npy::{Dtype, write_npy};

fn bedside(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bedside"))
        .args(args)
        .output()
        .unwrap()
}

fn cohort(dir: &Path) {
    let mut csv = String::from("study_id,array,split,label\n");
    for i in 0..12usize {
        let label = i % 2;
        let data: Vec<u8> = (0..6 * 12 * 16)
            .map(|k| ((k * 7 + i * 13) % 50) as u8 + if label == 1 { 150 } else { 0 })
            .collect();
        let name = format!("v{i}.npy");
        let mut f = std::fs::File::create(dir.join(&name)).unwrap();
        write_npy(&mut f, Dtype::U8, &[6, 12, 16], &data).unwrap();
        let split = ["train", "train", "val", "test"][i % 4];
        csv.push_str(&format!("S{i},{name},{split},{label}\n"));
    }
    std::fs::write(dir.join("manifest.csv"), csv).unwrap();
    std::fs::write(
        dir.join("exp.toml"),
        "name = \"cli-test\"\n[data]\nmanifest = \"manifest.csv\"\nclip_length = 4\nperiod = 1\nsize = 16\n\
         [data.columns]\nclass = \"label\"\n[model]\nwidth = 0.0625\n[training]\nepochs = 2\nbatch_size = 4\n",
    )
    .unwrap();
}

#[test]
fn train_export_predict_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    cohort(dir.path());
    let p = |name: &str| dir.path().join(name).display().to_string();
    let out = bedside(&[
        "-q",
        "train",
        "--config",
        &p("exp.toml"),
        "--run",
        &p("run"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = std::fs::read_to_string(dir.path().join("run/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    // A second fresh start in the same folder is refused as invalid input.
    let again = bedside(&[
        "-q",
        "train",
        "--config",
        &p("exp.toml"),
        "--run",
        &p("run"),
    ]);
    assert_eq!(again.status.code(), Some(3));
    let resumed = bedside(&[
        "-q",
        "train",
        "--config",
        &p("exp.toml"),
        "--run",
        &p("run"),
        "--resume",
        "--epochs",
        "3",
    ]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let out = bedside(&["export", "--run", &p("run"), "--out", &p("bundle")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("prob_1"));
    let out = bedside(&[
        "-q",
        "predict",
        "--bundle",
        &p("bundle"),
        "--manifest",
        &p("manifest.csv"),
        "--split",
        "test",
        "--keep",
        "label",
        "--out",
        &p("preds.csv"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bedside(&[
        "-q",
        "evaluate",
        &p("preds.csv"),
        "--id",
        "study_id",
        "--score",
        "prob_1",
        "--label",
        "label",
        "--bootstrap",
        "0",
        "--out",
        &p("eval"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("eval/evaluation.json").is_file());
}

#[test]
fn a_bad_configuration_exits_with_code_3_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    cohort(dir.path());
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[data]\nmanifest = \"manifest.csv\"\nclip_lenght = 4\n",
    )
    .unwrap();
    let run = dir.path().join("run").display().to_string();
    let out = bedside(&[
        "train",
        "--config",
        &cfg.display().to_string(),
        "--run",
        &run,
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("clip_lenght"));
    // A missing array is named before anything is written.
    let text = std::fs::read_to_string(dir.path().join("manifest.csv")).unwrap();
    std::fs::write(
        dir.path().join("manifest.csv"),
        text.replace("v5.npy", "gone.npy"),
    )
    .unwrap();
    let cfg = dir.path().join("exp.toml").display().to_string();
    let out = bedside(&["train", "--config", &cfg, "--run", &run]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gone.npy"));
    assert!(!dir.path().join("run/checkpoint/state.json").exists());
}
