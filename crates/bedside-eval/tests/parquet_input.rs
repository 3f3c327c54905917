//! Parquet tables written by pandas/pyarrow read the same as the CSV they came from.
//!
//! Needs the project's Python environment with pandas and pyarrow (`.venv` at the repository root,
//! or `BEDSIDE_PYTHON`). Skips with a message when missing, unless `BEDSIDE_REQUIRE_PEERS=1`.
#![cfg(feature = "parquet")]

mod common;

use std::path::PathBuf;
use std::process::Command;

use bedside_eval::input::{ColumnMap, load};

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("BEDSIDE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    let ok = Command::new(&candidate)
        .args(["-c", "import pandas, pyarrow"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some(candidate);
    }
    if std::env::var("BEDSIDE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!(
            "BEDSIDE_REQUIRE_PEERS=1 but {} with pandas and pyarrow is not available",
            candidate.display()
        );
    }
    eprintln!(
        "skipping: {} with pandas and pyarrow not found",
        candidate.display()
    );
    None
}

const WRITE: &str = r#"
import sys
import pandas as pd
src, out = sys.argv[1], sys.argv[2]
d = pd.read_csv(src)
d.insert(0, "case", [f"c{i}" for i in range(len(d))])
d["y_true"] = d["y_true"].astype(bool)          # booleans
d["site_code"] = d["site"].map({"A": 1, "B": 2, "C": 3}).astype("int32")
d[["case", "score"]].to_parquet(f"{out}/pred.parquet", compression="snappy")
d[["case", "y_true", "sex", "site", "site_code"]].to_parquet(f"{out}/manifest.parquet", compression="gzip")
d[["case", "y_true", "sex", "site", "site_code"]].to_csv(f"{out}/manifest.csv", index=False)
d[["case", "score"]].to_csv(f"{out}/pred.csv", index=False)
bad = d[["case", "score"]].copy(); bad.loc[3, "score"] = None
bad.to_parquet(f"{out}/bad.parquet")
"#;

#[test]
fn parquet_reads_like_csv() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = common::golden_dir().join("fairlearn_data.csv");
    let out = Command::new(&py)
        .arg("-c")
        .arg(WRITE)
        .arg(&src)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map = ColumnMap {
        id: Some("case".into()),
        score: Some("score".into()),
        label: Some("y_true".into()),
        groups: vec!["sex".into(), "site_code".into()],
        ..Default::default()
    };
    let d = dir.path();
    let from_parquet = load(
        &d.join("pred.parquet"),
        Some(&d.join("manifest.parquet")),
        &map,
    )
    .unwrap();
    let from_csv = load(&d.join("pred.csv"), Some(&d.join("manifest.csv")), &map).unwrap();
    assert_eq!(from_parquet.n, 400);
    assert_eq!(from_parquet.score, from_csv.score);
    assert_eq!(from_parquet.label, from_csv.label);
    assert_eq!(from_parquet.groups, from_csv.groups);
    let err = load(
        &d.join("bad.parquet"),
        Some(&d.join("manifest.parquet")),
        &map,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("score") && err.contains("row 4"), "{err}");
}
