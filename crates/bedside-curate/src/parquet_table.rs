//! The metadata table as Parquet, beside the CSV: the same columns in the same order, typed.
//!
//! | CSV text | Parquet type |
//! |---|---|
//! | identifiers, UIDs, descriptions, paths, hashes | `binary (STRING)`, never null (empty stays `""`) |
//! | `rows`, `columns`, `samples_per_pixel`, `bits_*`, `us_physical_units` | `int32`, null when empty |
//! | `instance_number`, `frames`, `array_frames` | `int64`, null when empty |
//! | times, rates, spacings, deltas, TE/TR/TI | `double`, null when empty |
//! | `study_date` (DICOM `YYYYMMDD`, shifted) | `int32 (DATE)` (Arrow `date32`), null when empty |
//!
//! Every typed value is parsed from the very text written to the CSV (Rust prints floating-point
//! numbers in their shortest form that reads back to the same `f64`), so the two tables hold the
//! same values. Files are written atomically with Snappy-compressed pages, one row group per
//! 65,536 rows.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;

/// The type of a column of the metadata table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text, never null.
    Text,
    /// 32-bit integer, nullable.
    Int32,
    /// 64-bit integer, nullable.
    Int64,
    /// Double, nullable.
    Float64,
    /// Calendar date (days since 1970-01-01), nullable; `YYYYMMDD` in the CSV.
    Date,
}

/// The columns of the metadata table with their Parquet types, in table order (the same names
/// as [`crate::pipeline::TABLE_COLUMNS`]).
pub const COLUMNS: [(&str, ColumnType); 39] = {
    use ColumnType::{Date, Float64 as F, Int32 as I, Int64 as L, Text as T};
    [
        ("output", T),
        ("input_sha256", T),
        ("patient_id", T),
        ("study_instance_uid", T),
        ("series_instance_uid", T),
        ("sop_instance_uid", T),
        ("study_date", Date),
        ("modality", T),
        ("sop_class_uid", T),
        ("manufacturer", T),
        ("model", T),
        ("series_description", T),
        ("instance_number", L),
        ("rows", I),
        ("columns", I),
        ("frames", L),
        ("frame_time_ms", F),
        ("frame_rate", F),
        ("pixel_spacing_row_mm", F),
        ("pixel_spacing_column_mm", F),
        ("us_physical_delta_x", F),
        ("us_physical_delta_y", F),
        ("us_physical_units", I),
        ("slice_thickness_mm", F),
        ("photometric", T),
        ("samples_per_pixel", I),
        ("bits_allocated", I),
        ("bits_stored", I),
        ("transfer_syntax", T),
        ("scanning_sequence", T),
        ("sequence_variant", T),
        ("echo_time_ms", F),
        ("repetition_time_ms", F),
        ("inversion_time_ms", F),
        ("mr_kind", T),
        ("pixel_sha256", T),
        ("array", T),
        ("array_frames", L),
        ("curated_at_version", T),
    ]
};

/// One typed cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// Text.
    Text(String),
    /// An integer (either width).
    Int(i64),
    /// A double.
    Float(f64),
    /// Days since 1970-01-01.
    Date(i32),
}

/// Why a table could not be converted, written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParquetTableError {
    /// A CSV cell does not hold a value of its column's type.
    #[error("column {column}, row {row}: not a value of type {kind:?}")]
    BadValue {
        /// The column.
        column: &'static str,
        /// The row (0-based, without the header).
        row: usize,
        /// The expected type.
        kind: ColumnType,
    },
    /// A record has the wrong number of cells.
    #[error("row {row}: {found} cells, the table has {expected} columns")]
    Width {
        /// The row.
        row: usize,
        /// Cells found.
        found: usize,
        /// Columns expected.
        expected: usize,
    },
    /// The file's columns are not the metadata table's.
    #[error("not a metadata table: {0}")]
    Schema(String),
    /// The Parquet library failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

const ROW_GROUP: usize = 65_536;

/// Days since 1970-01-01 of a DICOM `YYYYMMDD` date.
fn epoch_days(text: &str) -> Option<i32> {
    let (y, m, d) = bedside_deid::temporal::parse_date(text)?;
    i32::try_from(bedside_deid::temporal::days_from_civil(y, m, d)).ok()
}

/// Converts the CSV text of one record into typed cells.
pub fn typed_record<S: AsRef<str>>(
    record: &[S],
    row: usize,
) -> Result<Vec<Cell>, ParquetTableError> {
    if record.len() != COLUMNS.len() {
        return Err(ParquetTableError::Width {
            row,
            found: record.len(),
            expected: COLUMNS.len(),
        });
    }
    record
        .iter()
        .zip(COLUMNS)
        .map(|(text, (column, kind))| {
            let text = text.as_ref();
            let bad = || ParquetTableError::BadValue { column, row, kind };
            if kind == ColumnType::Text {
                return Ok(Cell::Text(text.to_string()));
            }
            if text.is_empty() {
                return Ok(Cell::Null);
            }
            Ok(match kind {
                ColumnType::Int32 => {
                    let v: i32 = text.parse().map_err(|_| bad())?;
                    Cell::Int(i64::from(v))
                }
                ColumnType::Int64 => Cell::Int(text.parse().map_err(|_| bad())?),
                ColumnType::Float64 => Cell::Float(text.parse().map_err(|_| bad())?),
                ColumnType::Date => Cell::Date(epoch_days(text).ok_or_else(bad)?),
                ColumnType::Text => Cell::Text(text.to_string()),
            })
        })
        .collect()
}

fn message_type() -> String {
    let mut s = String::from("message bedside_metadata {\n");
    for (name, kind) in COLUMNS {
        s.push_str(match kind {
            ColumnType::Text => "  required binary ",
            ColumnType::Int32 => "  optional int32 ",
            ColumnType::Int64 => "  optional int64 ",
            ColumnType::Float64 => "  optional double ",
            ColumnType::Date => "  optional int32 ",
        });
        s.push_str(name);
        s.push_str(match kind {
            ColumnType::Text => " (STRING);\n",
            ColumnType::Date => " (DATE);\n",
            _ => ";\n",
        });
    }
    s.push('}');
    s
}

/// Encodes typed rows as a Parquet file in memory.
pub fn encode(rows: &[Vec<Cell>]) -> Result<Vec<u8>, ParquetTableError> {
    let schema = Arc::new(parquet::schema::parser::parse_message_type(&message_type())?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("bedside {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    for (row, cells) in rows.iter().enumerate() {
        if cells.len() != COLUMNS.len() {
            return Err(ParquetTableError::Width {
                row,
                found: cells.len(),
                expected: COLUMNS.len(),
            });
        }
    }
    let mut writer = SerializedFileWriter::new(Vec::new(), schema, props)?;
    for chunk in rows.chunks(ROW_GROUP) {
        let mut group = writer.next_row_group()?;
        let mut k = 0;
        while let Some(mut column) = group.next_column()? {
            let Some(&(name, kind)) = COLUMNS.get(k) else {
                return Err(ParquetTableError::Schema(
                    "more columns than expected".into(),
                ));
            };
            let cells = chunk.iter().map(|r| &r[k]);
            let levels: Vec<i16> = cells
                .clone()
                .map(|c| i16::from(!matches!(c, Cell::Null)))
                .collect();
            let mismatch = || ParquetTableError::Schema(format!("column {name}: mixed types"));
            match kind {
                ColumnType::Text => {
                    let values = cells
                        .map(|c| match c {
                            Cell::Text(s) => Ok(ByteArray::from(s.as_str())),
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, None, None)?;
                }
                ColumnType::Int32 | ColumnType::Date => {
                    let values = cells
                        .filter(|c| !matches!(c, Cell::Null))
                        .map(|c| match c {
                            Cell::Int(v) => i32::try_from(*v).map_err(|_| mismatch()),
                            Cell::Date(d) => Ok(*d),
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    column
                        .typed::<Int32Type>()
                        .write_batch(&values, Some(&levels), None)?;
                }
                ColumnType::Int64 => {
                    let values = cells
                        .filter(|c| !matches!(c, Cell::Null))
                        .map(|c| match c {
                            Cell::Int(v) => Ok(*v),
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    column
                        .typed::<Int64Type>()
                        .write_batch(&values, Some(&levels), None)?;
                }
                ColumnType::Float64 => {
                    let values = cells
                        .filter(|c| !matches!(c, Cell::Null))
                        .map(|c| match c {
                            Cell::Float(v) => Ok(*v),
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    column
                        .typed::<DoubleType>()
                        .write_batch(&values, Some(&levels), None)?;
                }
            }
            column.close()?;
            k += 1;
        }
        group.close()?;
    }
    Ok(writer.into_inner()?)
}

/// Writes typed rows to `path` atomically.
pub fn write(path: &Path, rows: &[Vec<Cell>]) -> Result<(), ParquetTableError> {
    let bytes = encode(rows)?;
    bedside_core::fsio::write_atomic(path, &bytes)?;
    Ok(())
}

/// Converts CSV records (without the header) and writes them to `path` atomically.
pub fn write_records<S: AsRef<str>>(
    path: &Path,
    records: &[Vec<S>],
) -> Result<(), ParquetTableError> {
    let rows = records
        .iter()
        .enumerate()
        .map(|(i, r)| typed_record(r, i))
        .collect::<Result<Vec<_>, _>>()?;
    write(path, &rows)
}

/// Reads a metadata table written by [`write`] (columns checked by name and order).
pub fn read(path: &Path) -> Result<Vec<Vec<Cell>>, ParquetTableError> {
    let reader = SerializedFileReader::new(std::fs::File::open(path)?)?;
    let names: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    if names.len() != COLUMNS.len() || names.iter().zip(COLUMNS).any(|(a, (b, _))| a != b) {
        return Err(ParquetTableError::Schema(format!(
            "{} columns, not those of this version's table",
            names.len()
        )));
    }
    let mut rows = Vec::new();
    for row in reader {
        let row = row?;
        let cells = row
            .get_column_iter()
            .zip(COLUMNS)
            .map(|((_, field), (name, _))| match field {
                Field::Null => Ok(Cell::Null),
                Field::Str(s) => Ok(Cell::Text(s.clone())),
                Field::Int(v) => Ok(Cell::Int(i64::from(*v))),
                Field::Long(v) => Ok(Cell::Int(*v)),
                Field::Double(v) => Ok(Cell::Float(*v)),
                Field::Date(d) => Ok(Cell::Date(*d)),
                _ => Err(ParquetTableError::Schema(format!(
                    "column {name}: unexpected value type"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(cells);
    }
    Ok(rows)
}

/// Joins shard tables (in the order given) into one file at `target`; returns the row count.
pub fn merge(parts: &[&Path], target: &Path) -> Result<usize, ParquetTableError> {
    let mut rows = Vec::new();
    for p in parts {
        rows.extend(read(p)?);
    }
    write(target, &rows)?;
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(output: &str, date: &str, rows: &str, time: &str) -> Vec<String> {
        let mut r = vec![String::new(); COLUMNS.len()];
        r[0] = output.into();
        r[6] = date.into();
        r[13] = rows.into();
        r[16] = time.into();
        r[35] = "ab".repeat(32);
        r
    }

    #[test]
    fn column_names_match_the_csv_table() {
        let names: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::pipeline::TABLE_COLUMNS);
    }

    #[test]
    fn dates_are_days_since_the_epoch() {
        assert_eq!(epoch_days("19700101"), Some(0));
        assert_eq!(epoch_days("19700102"), Some(1));
        assert_eq!(epoch_days("20000301"), Some(11_017));
        assert_eq!(epoch_days("2000"), None);
    }

    #[test]
    fn round_trips_through_the_parquet_reader() {
        let third = (1.0f64 / 3.0).to_string();
        let records = vec![
            record("dicom/a.dcm", "20240229", "480", &third),
            record("dicom/b.dcm", "", "", ""),
            record("dicom/ü ,\"q\".dcm", "19991231", "65535", "33.3"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.parquet");
        write_records(&path, &records).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0][0], Cell::Text("dicom/a.dcm".into()));
        assert_eq!(back[0][6], Cell::Date(19_782));
        assert_eq!(back[0][13], Cell::Int(480));
        assert_eq!(back[0][16], Cell::Float(1.0 / 3.0));
        assert_eq!(back[1][6], Cell::Null);
        assert_eq!(back[1][13], Cell::Null);
        assert_eq!(back[1][2], Cell::Text(String::new()));
        assert_eq!(back[2][0], Cell::Text("dicom/ü ,\"q\".dcm".into()));
        assert_eq!(back[2][16], Cell::Float(33.3));
        for (row, rec) in back.iter().zip(&records) {
            assert_eq!(row, &typed_record(rec, 0).unwrap());
        }

        let merged = dir.path().join("merged.parquet");
        assert_eq!(merge(&[&path, &path], &merged).unwrap(), 6);
        assert_eq!(read(&merged).unwrap()[3..], back[..]);
    }

    #[test]
    fn bad_cells_are_reported_by_column() {
        let r = record("x", "2024-02-29", "", "");
        let e = typed_record(&r, 4).unwrap_err();
        assert!(e.to_string().contains("study_date"), "{e}");
        let r = record("x", "", "many", "");
        assert!(
            typed_record(&r, 0)
                .unwrap_err()
                .to_string()
                .contains("rows")
        );
        assert!(matches!(
            typed_record(&["a"], 0),
            Err(ParquetTableError::Width { .. })
        ));
    }
}
