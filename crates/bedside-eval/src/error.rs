//! Errors returned by the evaluation functions.

use std::path::PathBuf;

/// Everything that can go wrong while computing a metric or reading evaluation input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Two inputs that must have one entry per case have different lengths.
    #[error("length mismatch: {what} has {got} entries, expected {expected}")]
    LengthMismatch {
        /// Which input was the wrong length.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length it should have had.
        expected: usize,
    },
    /// There were no cases at all.
    #[error("no cases to evaluate{context}")]
    Empty {
        /// Extra context, such as the group name (may be empty).
        context: String,
    },
    /// A value was NaN or infinite where a finite number is required.
    #[error("{what} contains a non-finite value at row {row}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Zero-based row.
        row: usize,
    },
    /// A binary label was not 0 or 1.
    #[error("{what} must be 0 or 1, found {value} at row {row}")]
    NotBinary {
        /// Which input.
        what: &'static str,
        /// The offending value.
        value: f64,
        /// Zero-based row.
        row: usize,
    },
    /// The metric is undefined for these data (for example AUROC with one class only).
    #[error("{metric} is undefined: {reason}")]
    Undefined {
        /// The metric.
        metric: &'static str,
        /// Why.
        reason: String,
    },
    /// An option was out of range.
    #[error("invalid option {option}: {reason}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why.
        reason: String,
    },
    /// A time at which a metric is requested lies outside the range the data support.
    #[error("time {time} is outside the supported range [{low}, {high}) for {what}")]
    TimeOutOfRange {
        /// Which quantity.
        what: &'static str,
        /// The requested time.
        time: f64,
        /// Lower end of the range.
        low: f64,
        /// Upper end of the range.
        high: f64,
    },
    /// An iterative fit did not converge.
    #[error("{what} did not converge after {iterations} iterations")]
    NoConvergence {
        /// What was being fitted.
        what: &'static str,
        /// Iterations used.
        iterations: usize,
    },
    /// A matrix that must be invertible was singular.
    #[error("singular matrix while fitting {what}")]
    Singular {
        /// What was being fitted.
        what: &'static str,
    },
    /// A file could not be opened or read.
    #[error("cannot read {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A CSV file could not be parsed.
    #[error("cannot parse {path}")]
    ParseCsv {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: csv::Error,
    },
    /// A Parquet file could not be read.
    #[error("cannot read Parquet file {path}: {message}")]
    ParseParquet {
        /// The file.
        path: PathBuf,
        /// What the Parquet reader reported.
        message: String,
    },
    /// The file type is not supported (or support was not compiled in).
    #[error("unsupported table format for {path}: {reason}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A named column is missing from a table.
    #[error("column {column:?} not found in {table}; available columns: {available}")]
    MissingColumn {
        /// The column asked for.
        column: String,
        /// Which table.
        table: String,
        /// Comma-separated list of the columns present.
        available: String,
    },
    /// A cell could not be parsed as a number.
    #[error("column {column:?} row {row}: cannot parse {value:?} as a number")]
    BadNumber {
        /// Column.
        column: String,
        /// One-based data row.
        row: usize,
        /// The text found.
        value: String,
    },
    /// A cell that must be filled was missing or NaN.
    #[error("column {column:?} has a missing or NaN value at data row {row}")]
    MissingValue {
        /// Column.
        column: String,
        /// One-based data row.
        row: usize,
    },
    /// Joining predictions to the manifest failed.
    #[error("join on {column:?}: {reason}")]
    Join {
        /// Id column.
        column: String,
        /// What went wrong.
        reason: String,
    },
    /// Writing an output failed.
    #[error("cannot write {path}")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Serialising the JSON report failed.
    #[error("cannot serialise the report")]
    Serialize(#[from] serde_json::Error),
}

/// Shorthand for results of this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;

/// Checks that `len` equals `expected`.
pub(crate) fn check_len(what: &'static str, len: usize, expected: usize) -> Result<()> {
    if len != expected {
        return Err(EvalError::LengthMismatch {
            what,
            got: len,
            expected,
        });
    }
    Ok(())
}

/// Checks that no value is NaN or infinite.
pub(crate) fn check_finite(what: &'static str, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(row) => Err(EvalError::NonFinite { what, row }),
        None => Ok(()),
    }
}

/// Checks that a slice is non-empty.
pub(crate) fn check_nonempty(len: usize) -> Result<()> {
    if len == 0 {
        return Err(EvalError::Empty {
            context: String::new(),
        });
    }
    Ok(())
}
