//! The `bedside` binary as a user runs it: help texts, exit codes, error messages.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::process::{Command, Output};

fn bedside(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bedside"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run bedside")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn help_lists_commands_with_examples() {
    let o = bedside(&["--help"]);
    assert!(o.status.success());
    let t = text(&o);
    for word in ["synth", "demo", "Examples:"] {
        assert!(t.contains(word), "--help lacks {word}: {t}");
    }
    for sub in [&["synth", "phantom", "--help"][..], &["demo", "--help"]] {
        let o = bedside(sub);
        assert!(o.status.success());
        assert!(
            text(&o).contains("Examples:"),
            "{sub:?} --help has no examples"
        );
    }
}

#[test]
fn unknown_config_key_is_named_and_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "patients = 3\n[survival]\nbeta_eff = 1.0\n").unwrap();
    let out = tmp.path().join("out");
    let o = bedside(&[
        "synth",
        "phantom",
        out.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("survival") && t.contains("beta_eff"), "{t}");
    assert!(!out.exists(), "nothing is written for a bad config");
}

#[test]
fn out_of_range_setting_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = bedside(&["synth", "phantom", out.to_str().unwrap(), "--rows", "10"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("rows"));
}

#[test]
fn bad_bias_is_a_usage_error() {
    let o = bedside(&["synth", "phantom", "x", "--bias", "height=2:0.1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("unknown column `height`"), "{}", text(&o));
}

#[test]
fn phantom_runs_and_summarises_then_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cohort");
    let args = [
        "synth",
        "phantom",
        out.to_str().unwrap(),
        "--patients",
        "3",
        "--rows",
        "96",
        "--columns",
        "128",
    ];
    let o = bedside(&args);
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("patients") && t.contains("studies") && t.contains("phi.json"),
        "{t}"
    );
    for f in ["patients.csv", "studies.csv", "phi.json", "cohort.json"] {
        assert!(Path::new(&out).join(f).exists(), "{f} missing");
    }
    let again = bedside(&args);
    assert_eq!(again.status.code(), Some(3));
    assert!(text(&again).contains("--force"));
}
