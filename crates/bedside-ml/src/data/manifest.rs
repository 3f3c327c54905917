//! The study manifest: one row per study naming its array, split, labels, tabular covariates
//! and group columns. Read from CSV or Parquet (see [`crate::data::loader::load_table`]) and
//! validated before any training starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors loading a manifest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The manifest could not be opened or parsed as CSV.
    #[error("cannot read manifest {path}: {message}")]
    Read {
        /// The manifest.
        path: PathBuf,
        /// The reader's message.
        message: String,
    },
    /// A configured column is absent from the header.
    #[error("manifest {path} has no column `{column}` (columns: {available})")]
    MissingColumn {
        /// The manifest.
        path: PathBuf,
        /// The configured column.
        column: String,
        /// The header's columns.
        available: String,
    },
    /// A cell is empty, not a number, NaN or otherwise invalid.
    #[error("manifest {path}, row {row}, column `{column}`: {message}")]
    BadValue {
        /// The manifest.
        path: PathBuf,
        /// 1-based data row (the header is row 0).
        row: usize,
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A study's array file does not exist.
    #[error("manifest {path}, row {row}: array file {array} does not exist")]
    MissingArray {
        /// The manifest.
        path: PathBuf,
        /// 1-based data row.
        row: usize,
        /// The resolved array path.
        array: PathBuf,
    },
    /// A study's resized copy (`bedside curate --resize S`) does not exist.
    #[error(
        "manifest {path}: array {array} has no {size}x{size} copy beside it \
         (make the copies with `bedside curate --resize {size}`, or unset `data.resized_copy`)"
    )]
    MissingResizedCopy {
        /// The manifest.
        path: PathBuf,
        /// The array whose copy is missing.
        array: PathBuf,
        /// The side of the copy.
        size: usize,
    },
}

/// The path of the `size × size` copy that `bedside curate --resize size` writes beside an
/// array: `<name>.npy` becomes `<name>.<size>x<size>.npy`.
pub fn resized_copy_path(array: &Path, size: usize) -> PathBuf {
    let stem = array
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    array.with_file_name(format!("{stem}.{size}x{size}.npy"))
}

/// Which manifest columns hold what. Only `study`, `array` and `split` are required; label,
/// covariate and group columns are read when named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestColumns {
    /// Study identifier column. Default `study_id`.
    pub study: String,
    /// Array path column (relative paths resolve against the manifest's folder). Default `array`.
    pub array: String,
    /// Split column (`train`, `val`, `test`, …). Default `split`.
    pub split: String,
    /// Class label column (integers `0..K`).
    pub class: Option<String>,
    /// Regression target column.
    pub value: Option<String>,
    /// Time-to-event column (non-negative).
    pub time: Option<String>,
    /// Event indicator column (`0`/`1`).
    pub event: Option<String>,
    /// Numeric covariate columns for late fusion.
    pub covariates: Vec<String>,
    /// Group columns (sex, ethnicity, site, …) for fairness audits and penalties.
    pub groups: Vec<String>,
}

impl Default for ManifestColumns {
    fn default() -> Self {
        Self {
            study: "study_id".into(),
            array: "array".into(),
            split: "split".into(),
            class: None,
            value: None,
            time: None,
            event: None,
            covariates: Vec::new(),
            groups: Vec::new(),
        }
    }
}

/// One study of the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRecord {
    /// Study identifier.
    pub study: String,
    /// Resolved array path.
    pub array: PathBuf,
    /// Split name.
    pub split: String,
    /// Class label.
    pub class: Option<usize>,
    /// Regression target.
    pub value: Option<f64>,
    /// Time to event or censoring.
    pub time: Option<f64>,
    /// Event indicator.
    pub event: Option<bool>,
    /// Covariates in [`ManifestColumns::covariates`] order.
    pub covariates: Vec<f64>,
    /// Group labels in [`ManifestColumns::groups`] order.
    pub groups: Vec<String>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The column mapping used.
    pub columns: ManifestColumns,
    /// Studies in file order.
    pub studies: Vec<StudyRecord>,
}

impl Manifest {
    /// Read and validate a CSV manifest: every configured column exists, every array file
    /// exists, labels parse and are finite (NaN is rejected), events are 0/1.
    pub fn from_csv(path: &Path, columns: ManifestColumns) -> Result<Self, ManifestError> {
        let read = |message: String| ManifestError::Read {
            path: path.to_path_buf(),
            message,
        };
        let mut reader = csv::Reader::from_path(path).map_err(|e| read(e.to_string()))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| read(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        let rows = reader
            .records()
            .map(|r| {
                r.map(|r| r.iter().map(str::to_string).collect::<Vec<_>>())
                    .map_err(|e| read(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_rows(path, base, &header, &rows, columns)
    }

    /// Validate a table already in memory (e.g. the join of an array index and a label
    /// sheet): `path` names it in messages, relative array paths resolve against `base`.
    pub fn from_rows(
        path: &Path,
        base: &Path,
        header: &[String],
        rows: &[Vec<String>],
        columns: ManifestColumns,
    ) -> Result<Self, ManifestError> {
        let index: BTreeMap<&str, usize> = header
            .iter()
            .enumerate()
            .map(|(i, h)| (h.as_str(), i))
            .collect();
        let find = |column: &str| {
            index
                .get(column)
                .copied()
                .ok_or_else(|| ManifestError::MissingColumn {
                    path: path.to_path_buf(),
                    column: column.to_string(),
                    available: header.join(", "),
                })
        };
        let optional = |column: &Option<String>| column.as_deref().map(find).transpose();
        let study_col = find(&columns.study)?;
        let array_col = find(&columns.array)?;
        let split_col = find(&columns.split)?;
        let class_col = optional(&columns.class)?;
        let value_col = optional(&columns.value)?;
        let time_col = optional(&columns.time)?;
        let event_col = optional(&columns.event)?;
        let covariate_cols = columns
            .covariates
            .iter()
            .map(|c| find(c))
            .collect::<Result<Vec<_>, _>>()?;
        let group_cols = columns
            .groups
            .iter()
            .map(|c| find(c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut studies = Vec::new();
        for (i, record) in rows.iter().enumerate() {
            let row = i + 1;
            let cell = |col: usize| record.get(col).map(|c| c.trim()).unwrap_or("");
            let bad = |col: usize, message: String| ManifestError::BadValue {
                path: path.to_path_buf(),
                row,
                column: header[col].clone(),
                message,
            };
            let number = |col: usize| -> Result<f64, ManifestError> {
                let text = cell(col);
                let value: f64 = text
                    .parse()
                    .map_err(|_| bad(col, format!("`{text}` is not a number")))?;
                if value.is_finite() {
                    Ok(value)
                } else {
                    Err(bad(col, format!("`{text}` is not finite")))
                }
            };
            let study = cell(study_col).to_string();
            if study.is_empty() {
                return Err(bad(study_col, "empty study identifier".into()));
            }
            let array_text = cell(array_col);
            if array_text.is_empty() {
                return Err(bad(array_col, "empty array path".into()));
            }
            let array = base.join(array_text);
            if !array.is_file() {
                return Err(ManifestError::MissingArray {
                    path: path.to_path_buf(),
                    row,
                    array,
                });
            }
            let class = class_col
                .map(|col| {
                    let text = cell(col);
                    text.parse::<usize>()
                        .map_err(|_| bad(col, format!("`{text}` is not a class index (0, 1, …)")))
                })
                .transpose()?;
            let value = value_col.map(number).transpose()?;
            let time = time_col.map(number).transpose()?;
            if let (Some(col), Some(t)) = (time_col, time)
                && t < 0.0
            {
                return Err(bad(col, format!("negative time {t}")));
            }
            let event = event_col
                .map(|col| match cell(col) {
                    "1" | "true" | "True" => Ok(true),
                    "0" | "false" | "False" => Ok(false),
                    other => Err(bad(
                        col,
                        format!("`{other}` is not an event indicator (0/1)"),
                    )),
                })
                .transpose()?;
            let covariates = covariate_cols
                .iter()
                .map(|&col| number(col))
                .collect::<Result<Vec<_>, _>>()?;
            let groups = group_cols
                .iter()
                .map(|&col| cell(col).to_string())
                .collect();
            studies.push(StudyRecord {
                study,
                array,
                split: cell(split_col).to_string(),
                class,
                value,
                time,
                event,
                covariates,
                groups,
            });
        }
        Ok(Self { columns, studies })
    }

    /// Point every study at its `size × size` resized copy (see [`resized_copy_path`]),
    /// checking that each exists. `origin` names the manifest in messages.
    pub fn use_resized_copies(&mut self, origin: &Path, size: usize) -> Result<(), ManifestError> {
        for study in &mut self.studies {
            let copy = resized_copy_path(&study.array, size);
            if !copy.is_file() {
                return Err(ManifestError::MissingResizedCopy {
                    path: origin.to_path_buf(),
                    array: study.array.clone(),
                    size,
                });
            }
            study.array = copy;
        }
        Ok(())
    }

    /// The studies of one split.
    pub fn split(&self, name: &str) -> Vec<&StudyRecord> {
        self.studies.iter().filter(|s| s.split == name).collect()
    }
}
