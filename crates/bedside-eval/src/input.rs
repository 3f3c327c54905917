//! Reading a prediction table (CSV), joining it to a manifest by an id column, and picking the
//! columns named on the command line.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{EvalError, Result};

/// Which columns hold what. Every field is a column name; `None` means "not used".
#[derive(Debug, Clone, Default)]
pub struct ColumnMap {
    /// Row identifier used to join predictions to the manifest.
    pub id: Option<String>,
    /// Patient identifier: bootstrap resamples patients.
    pub patient: Option<String>,
    /// Predicted probability or score of the positive class.
    pub score: Option<String>,
    /// Binary label (0/1, true/false).
    pub label: Option<String>,
    /// Follow-up time.
    pub time: Option<String>,
    /// Event indicator (1 = event, 0 = censored).
    pub event: Option<String>,
    /// Risk score for survival (higher = earlier event); defaults to `score`.
    pub risk: Option<String>,
    /// True value of a continuous target.
    pub target: Option<String>,
    /// Predicted value of a continuous target.
    pub predicted: Option<String>,
    /// Per-case uncertainty (higher = less certain).
    pub uncertainty: Option<String>,
    /// Prefix of predicted-survival columns: a column named `<prefix><t>` holds each case's
    /// predicted probability of being event free at time `t` (for example `surv@365`).
    pub survival_prefix: Option<String>,
    /// Group columns for the subgroup and fairness audit.
    pub groups: Vec<String>,
}

/// A CSV file read as text.
#[derive(Debug, Clone)]
pub struct TextTable {
    /// Display name (file name) used in error messages.
    pub name: String,
    /// Column names.
    pub headers: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

impl TextTable {
    /// Reads a CSV file with a header row.
    pub fn read_csv(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| EvalError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(file);
        let parse = |source| EvalError::ParseCsv {
            path: path.to_path_buf(),
            source,
        };
        let headers = reader
            .headers()
            .map_err(parse)?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(parse)?;
            rows.push(record.iter().map(|c| c.trim().to_string()).collect());
        }
        Ok(TextTable {
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            headers,
            rows,
        })
    }

    /// Reads a table by extension: `.parquet`/`.pq` as Parquet, anything else as CSV.
    pub fn read(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if ext == "parquet" || ext == "pq" {
            Self::read_parquet(path)
        } else {
            Self::read_csv(path)
        }
    }

    /// Reads a flat Parquet file (pandas/pyarrow/polars output; uncompressed, Snappy or gzip
    /// pages). Numbers and booleans become text as they would in a CSV; nulls become empty cells.
    #[cfg(feature = "parquet")]
    pub fn read_parquet(path: &Path) -> Result<Self> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::Field;
        let fail = |e: parquet::errors::ParquetError| EvalError::ParseParquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let file = std::fs::File::open(path).map_err(|source| EvalError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = SerializedFileReader::new(file).map_err(fail)?;
        let headers: Vec<String> = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let mut rows = Vec::new();
        for row in reader {
            let row = row.map_err(fail)?;
            let mut cells = vec![String::new(); headers.len()];
            for (name, field) in row.get_column_iter() {
                let Some(k) = headers.iter().position(|h| h == name) else {
                    continue;
                };
                cells[k] = match field {
                    Field::Null => String::new(),
                    Field::Bool(b) => if *b { "1" } else { "0" }.to_string(),
                    Field::Byte(v) => v.to_string(),
                    Field::Short(v) => v.to_string(),
                    Field::Int(v) => v.to_string(),
                    Field::Long(v) => v.to_string(),
                    Field::UByte(v) => v.to_string(),
                    Field::UShort(v) => v.to_string(),
                    Field::UInt(v) => v.to_string(),
                    Field::ULong(v) => v.to_string(),
                    Field::Float(v) => v.to_string(),
                    Field::Double(v) => v.to_string(),
                    Field::Str(v) => v.clone(),
                    other => other.to_string(),
                };
            }
            rows.push(cells);
        }
        Ok(TextTable {
            name: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            headers,
            rows,
        })
    }

    /// Parquet support was not compiled in (feature `parquet`).
    #[cfg(not(feature = "parquet"))]
    pub fn read_parquet(path: &Path) -> Result<Self> {
        Err(EvalError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: "this build has no Parquet support (feature `parquet`)".into(),
        })
    }

    fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }
}

/// The evaluation input: one entry per case, columns already parsed.
#[derive(Debug, Clone, Default)]
pub struct EvalTable {
    /// Number of cases.
    pub n: usize,
    /// Patient of each case (`None`: every row is its own patient).
    pub patients: Option<Vec<String>>,
    /// Scores.
    pub score: Option<Vec<f64>>,
    /// Binary labels.
    pub label: Option<Vec<bool>>,
    /// Follow-up times.
    pub time: Option<Vec<f64>>,
    /// Event indicators.
    pub event: Option<Vec<bool>>,
    /// Survival risk scores.
    pub risk: Option<Vec<f64>>,
    /// Continuous targets.
    pub target: Option<Vec<f64>>,
    /// Continuous predictions.
    pub predicted: Option<Vec<f64>>,
    /// Uncertainties.
    pub uncertainty: Option<Vec<f64>>,
    /// Group columns: (name, value per case).
    pub groups: Vec<(String, Vec<String>)>,
    /// Times of the predicted-survival columns, increasing.
    pub survival_grid: Vec<f64>,
    /// Predicted survival, row-major `n × survival_grid.len()` (empty when not given).
    pub survival: Vec<f64>,
    /// Training data for the censoring distribution: (time, event). `None`: fit it on the
    /// evaluated data.
    pub censoring_data: Option<(Vec<f64>, Vec<bool>)>,
}

/// Where a named column lives after the join.
struct Joined<'a> {
    tables: Vec<&'a TextTable>,
    /// For each prediction row, the matching manifest row (if there is a manifest).
    manifest_row: Option<Vec<usize>>,
}

impl Joined<'_> {
    fn cells(&self, column: &str) -> Result<Vec<&str>> {
        let pred = self.tables[0];
        if let Some(k) = pred.column(column) {
            return Ok(pred.rows.iter().map(|r| r[k].as_str()).collect());
        }
        if let (Some(man), Some(map)) = (self.tables.get(1), &self.manifest_row)
            && let Some(k) = man.column(column)
        {
            return Ok(map.iter().map(|&m| man.rows[m][k].as_str()).collect());
        }
        Err(EvalError::MissingColumn {
            column: column.to_string(),
            table: self
                .tables
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
            available: self
                .tables
                .iter()
                .flat_map(|t| t.headers.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

fn is_missing(cell: &str) -> bool {
    matches!(
        cell.to_ascii_lowercase().as_str(),
        "" | "nan" | "na" | "n/a" | "null" | "none"
    )
}

fn numbers(column: &str, cells: &[&str]) -> Result<Vec<f64>> {
    cells
        .iter()
        .enumerate()
        .map(|(row, cell)| {
            if is_missing(cell) {
                return Err(EvalError::MissingValue {
                    column: column.to_string(),
                    row: row + 1,
                });
            }
            let v: f64 = cell.parse().map_err(|_| EvalError::BadNumber {
                column: column.to_string(),
                row: row + 1,
                value: cell.to_string(),
            })?;
            if !v.is_finite() {
                return Err(EvalError::MissingValue {
                    column: column.to_string(),
                    row: row + 1,
                });
            }
            Ok(v)
        })
        .collect()
}

fn binary(column: &str, cells: &[&str]) -> Result<Vec<bool>> {
    cells
        .iter()
        .enumerate()
        .map(|(row, cell)| match cell.to_ascii_lowercase().as_str() {
            "1" | "1.0" | "true" | "yes" => Ok(true),
            "0" | "0.0" | "false" | "no" => Ok(false),
            c if is_missing(c) => Err(EvalError::MissingValue {
                column: column.to_string(),
                row: row + 1,
            }),
            _ => Err(EvalError::BadNumber {
                column: format!("{column} (expected 0/1)"),
                row: row + 1,
                value: cell.to_string(),
            }),
        })
        .collect()
}

fn texts(column: &str, cells: &[&str]) -> Result<Vec<String>> {
    cells
        .iter()
        .enumerate()
        .map(|(row, cell)| {
            if cell.is_empty() {
                Err(EvalError::MissingValue {
                    column: column.to_string(),
                    row: row + 1,
                })
            } else {
                Ok(cell.to_string())
            }
        })
        .collect()
}

/// Joins `predictions` to `manifest` (inner join on `map.id`; every prediction row must have
/// exactly one manifest row) and parses the mapped columns.
pub fn load_tables(
    predictions: &TextTable,
    manifest: Option<&TextTable>,
    map: &ColumnMap,
) -> Result<EvalTable> {
    if predictions.rows.is_empty() {
        return Err(EvalError::Empty {
            context: format!(" in {}", predictions.name),
        });
    }
    let mut joined = Joined {
        tables: vec![predictions],
        manifest_row: None,
    };
    if let Some(man) = manifest {
        let id = map.id.as_deref().ok_or(EvalError::InvalidOption {
            option: "id",
            reason: "an id column is needed to join predictions to the manifest".into(),
        })?;
        let missing = |table: &TextTable| EvalError::MissingColumn {
            column: id.to_string(),
            table: table.name.clone(),
            available: table.headers.join(", "),
        };
        let pk = predictions.column(id).ok_or_else(|| missing(predictions))?;
        let mk = man.column(id).ok_or_else(|| missing(man))?;
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(man.rows.len());
        for (r, row) in man.rows.iter().enumerate() {
            if index.insert(row[mk].as_str(), r).is_some() {
                return Err(EvalError::Join {
                    column: id.to_string(),
                    reason: format!("{} has a duplicate id at data row {}", man.name, r + 1),
                });
            }
        }
        let mut rows = Vec::with_capacity(predictions.rows.len());
        let mut unmatched = Vec::new();
        for (r, row) in predictions.rows.iter().enumerate() {
            match index.get(row[pk].as_str()) {
                Some(&m) => rows.push(m),
                None => unmatched.push(r + 1),
            }
        }
        if !unmatched.is_empty() {
            return Err(EvalError::Join {
                column: id.to_string(),
                reason: format!(
                    "{} of {} prediction rows have no manifest row (first at data row {})",
                    unmatched.len(),
                    predictions.rows.len(),
                    unmatched[0]
                ),
            });
        }
        joined.tables.push(man);
        joined.manifest_row = Some(rows);
    }
    let num = |c: &Option<String>| -> Result<Option<Vec<f64>>> {
        c.as_deref()
            .map(|c| numbers(c, &joined.cells(c)?))
            .transpose()
    };
    let bin = |c: &Option<String>| -> Result<Option<Vec<bool>>> {
        c.as_deref()
            .map(|c| binary(c, &joined.cells(c)?))
            .transpose()
    };
    let txt = |c: &str| -> Result<Vec<String>> { texts(c, &joined.cells(c)?) };
    let score = num(&map.score)?;
    let risk = match &map.risk {
        Some(_) => num(&map.risk)?,
        None if map.time.is_some() => score.clone(),
        None => None,
    };
    let table = EvalTable {
        n: predictions.rows.len(),
        patients: map.patient.as_deref().map(txt).transpose()?,
        score,
        label: bin(&map.label)?,
        time: num(&map.time)?,
        event: bin(&map.event)?,
        risk,
        target: num(&map.target)?,
        predicted: num(&map.predicted)?,
        uncertainty: num(&map.uncertainty)?,
        groups: map
            .groups
            .iter()
            .map(|g| Ok((g.clone(), txt(g)?)))
            .collect::<Result<_>>()?,
        ..Default::default()
    };
    let mut table = table;
    if let Some(prefix) = &map.survival_prefix {
        let mut cols: Vec<(f64, &str)> = predictions
            .headers
            .iter()
            .filter_map(|h| {
                h.strip_prefix(prefix.as_str())
                    .and_then(|t| t.trim().parse::<f64>().ok())
                    .filter(|t| t.is_finite())
                    .map(|t| (t, h.as_str()))
            })
            .collect();
        cols.sort_by(|a, b| a.0.total_cmp(&b.0));
        if cols.is_empty() {
            return Err(EvalError::MissingColumn {
                column: format!("{prefix}<time>"),
                table: predictions.name.clone(),
                available: predictions.headers.join(", "),
            });
        }
        let g = cols.len();
        let mut matrix = vec![0.0; table.n * g];
        for (k, (_, name)) in cols.iter().enumerate() {
            let values = numbers(name, &joined.cells(name)?)?;
            for (i, v) in values.into_iter().enumerate() {
                matrix[i * g + k] = v;
            }
        }
        table.survival_grid = cols.iter().map(|c| c.0).collect();
        table.survival = matrix;
    }
    if let Some(t) = &table.time
        && let Some(row) = t.iter().position(|&v| v < 0.0)
    {
        return Err(EvalError::InvalidOption {
            option: "time",
            reason: format!("negative time at data row {}", row + 1),
        });
    }
    if table.time.is_some() != table.event.is_some() {
        return Err(EvalError::InvalidOption {
            option: "time/event",
            reason: "survival evaluation needs both --time and --event".into(),
        });
    }
    if table.target.is_some() != table.predicted.is_some() {
        return Err(EvalError::InvalidOption {
            option: "target/predicted",
            reason: "regression evaluation needs both --target and --predicted".into(),
        });
    }
    Ok(table)
}

/// Reads the (time, event) columns of a training table, for fitting the censoring distribution
/// on training data as scikit-survival does.
pub fn load_censoring_data(path: &Path, time: &str, event: &str) -> Result<(Vec<f64>, Vec<bool>)> {
    let t = TextTable::read(path)?;
    if t.rows.is_empty() {
        return Err(EvalError::Empty {
            context: format!(" in {}", t.name),
        });
    }
    let joined = Joined {
        tables: vec![&t],
        manifest_row: None,
    };
    Ok((
        numbers(time, &joined.cells(time)?)?,
        binary(event, &joined.cells(event)?)?,
    ))
}

/// Reads the prediction table and optional manifest from disk (CSV, or Parquet by extension)
/// and joins them.
pub fn load(predictions: &Path, manifest: Option<&Path>, map: &ColumnMap) -> Result<EvalTable> {
    let pred = TextTable::read(predictions)?;
    let man = manifest.map(TextTable::read).transpose()?;
    load_tables(&pred, man.as_ref(), map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, text: &str) -> TextTable {
        let mut lines = text.lines();
        let headers = lines
            .next()
            .unwrap_or("")
            .split(',')
            .map(String::from)
            .collect();
        TextTable {
            name: name.into(),
            headers,
            rows: lines
                .map(|l| l.split(',').map(String::from).collect())
                .collect(),
        }
    }

    #[test]
    fn joins_and_reports_problems() {
        let pred = table("pred.csv", "id,p\na,0.9\nb,0.2\nc,0.4");
        let man = table("manifest.csv", "id,y,sex\nc,1,F\nb,0,M\na,1,F");
        let map = ColumnMap {
            id: Some("id".into()),
            score: Some("p".into()),
            label: Some("y".into()),
            groups: vec!["sex".into()],
            ..Default::default()
        };
        let t = load_tables(&pred, Some(&man), &map).unwrap();
        assert_eq!(t.label, Some(vec![true, false, true]));
        assert_eq!(t.groups[0].1, vec!["F", "M", "F"]);

        let bad = ColumnMap {
            label: Some("outcome".into()),
            ..map.clone()
        };
        let err = load_tables(&pred, Some(&man), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("outcome") && err.contains("available"),
            "{err}"
        );

        let nan = table("pred.csv", "id,p\na,NaN\nb,0.2\nc,0.4");
        let err = load_tables(&nan, Some(&man), &map).unwrap_err().to_string();
        assert!(
            err.contains("missing or NaN") && err.contains("row 1"),
            "{err}"
        );

        let orphan = table("pred.csv", "id,p\na,0.1\nz,0.2");
        let err = load_tables(&orphan, Some(&man), &map)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no manifest row"), "{err}");

        let empty_group = table("manifest.csv", "id,y,sex\nc,1,F\nb,0,\na,1,F");
        let err = load_tables(&pred, Some(&empty_group), &map)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sex"), "{err}");
    }
}
