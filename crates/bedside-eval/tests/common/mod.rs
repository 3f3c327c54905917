//! Helpers shared by the golden-value tests: locate and read the shared reference files.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

/// The folder of golden reference files (`BEDSIDE_SHARED_DIR/testdata/golden`, by default the
/// `shared` folder beside the repository root).
pub fn golden_dir() -> PathBuf {
    let shared = std::env::var_os("BEDSIDE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    shared.join("testdata/golden")
}

/// Parsed JSON golden file.
pub fn golden_json(name: &str) -> serde_json::Value {
    let path = golden_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read golden file {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A CSV table: headers and rows of strings.
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn read(name: &str) -> Table {
        let path = golden_dir().join(name);
        let mut reader = csv::Reader::from_path(&path)
            .unwrap_or_else(|e| panic!("cannot read golden file {}: {e}", path.display()));
        let headers = reader.headers().unwrap().iter().map(String::from).collect();
        let rows = reader
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        Table { headers, rows }
    }

    pub fn index(&self, col: &str) -> usize {
        self.headers
            .iter()
            .position(|h| h == col)
            .unwrap_or_else(|| panic!("no column {col}"))
    }

    pub fn f64s(&self, col: &str) -> Vec<f64> {
        let k = self.index(col);
        self.rows
            .iter()
            .map(|r| r[k].parse::<f64>().unwrap())
            .collect()
    }

    pub fn bools(&self, col: &str) -> Vec<bool> {
        self.f64s(col).into_iter().map(|v| v != 0.0).collect()
    }

    pub fn strings(&self, col: &str) -> Vec<String> {
        let k = self.index(col);
        self.rows.iter().map(|r| r[k].clone()).collect()
    }

    /// Row-major matrix of the given columns.
    pub fn matrix(&self, cols: &[String]) -> Vec<f64> {
        let idx: Vec<usize> = cols.iter().map(|c| self.index(c)).collect();
        self.rows
            .iter()
            .flat_map(|r| idx.iter().map(move |&k| r[k].parse::<f64>().unwrap()))
            .collect()
    }
}

pub fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

pub fn fvec(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(f).collect()
}

pub fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[track_caller]
pub fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:.12}, want {want:.12} (|diff| {:.3e} > {tol:e})",
        (got - want).abs()
    );
}
