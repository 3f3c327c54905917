//! Pseudonymised label sheets: a research group's spreadsheet keyed by the original PatientID,
//! AccessionNumber and Study Instance UID, with dates, mapped with the same keyed pseudonyms,
//! `2.25.` UIDs and per-patient date shift that curation applies to the DICOM headers, so the
//! curated metadata table and the sheet join on pseudonymous keys without any crosswalk.
//!
//! Nothing is re-implemented: each row's identifiers are put into a small data set under their
//! DICOM attributes (`PatientID` from the patient column, and the attribute each other column
//! names) together with a probe `StudyDate`/`StudyTime`, and that data set goes through the very
//! [`Deidentifier`] (profile and site secret) that curation uses. The mapped identifiers are read
//! back, and the probe tells the row's day offset and time rotation, which are then applied to
//! the date columns. Profile overrides (for example an ID that is kept or removed rather than
//! pseudonymised) therefore apply to the sheet exactly as to the headers.
//!
//! Date cells may be `YYYYMMDD`, `YYYY-MM-DD`, `YYYY/MM/DD` or `YYYY.MM.DD`, optionally followed
//! by a time (`T` or a space, then `HH:MM`, `HH:MM:SS` or `HH:MM:SS.ffffff`); they are written
//! back in the same form. As in the headers, the date moves by whole days and the time of day is
//! rotated around the clock. A cell that is not a date is emptied and counted, never copied.
//! Other columns are copied unchanged (they are the labels): check them for free text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_core::dictionary::DataDictionary;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;
use serde::Serialize;

use bedside_deid::temporal;
use bedside_deid::{Deidentifier, ObjectContext, PatientKeySource};

/// A sheet column and the DICOM attribute its values belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMap {
    /// Column name in the sheet.
    pub column: String,
    /// DICOM keyword (e.g. `AccessionNumber`).
    pub keyword: String,
}

impl ColumnMap {
    /// Parses `NAME` (the column is named after its DICOM keyword) or `NAME=Keyword`.
    pub fn parse(spec: &str) -> Result<ColumnMap, String> {
        let (column, keyword) = match spec.split_once('=') {
            Some((c, k)) => (c.trim(), k.trim()),
            None => (spec.trim(), spec.trim()),
        };
        if column.is_empty() || keyword.is_empty() {
            return Err(format!(
                "`{spec}`: expected COLUMN or COLUMN=Keyword, e.g. mrn=PatientID"
            ));
        }
        Ok(ColumnMap {
            column: column.to_string(),
            keyword: keyword.to_string(),
        })
    }
}

/// Which columns hold what.
#[derive(Debug, Clone, Default)]
pub struct LabelSpec {
    /// The column holding the original PatientID (keys the pseudonym and the date shift).
    pub patient_column: Option<String>,
    /// Identifier columns (pseudonymised like their attribute, e.g. AccessionNumber).
    pub id_columns: Vec<ColumnMap>,
    /// UID columns (mapped to the same `2.25.` UIDs as in the headers).
    pub uid_columns: Vec<ColumnMap>,
    /// Date (or date-time) columns, shifted by the patient's offset.
    pub date_columns: Vec<String>,
    /// Columns left out of the output.
    pub drop_columns: Vec<String>,
}

/// Why a sheet could not be pseudonymised.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelError {
    /// The sheet could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The sheet.
        path: PathBuf,
        /// What failed (never a cell value).
        message: String,
    },
    /// The output could not be written.
    #[error("cannot write {path}: {message}")]
    Write {
        /// The output.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// A named column is not in the sheet.
    #[error("column `{column}` is not in the sheet (its columns: {available})")]
    MissingColumn {
        /// The column asked for.
        column: String,
        /// The sheet's columns.
        available: String,
    },
    /// A keyword is not a DICOM attribute of the right kind.
    #[error("column `{column}`: {message}")]
    Keyword {
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The profile does not keep dates, so date columns cannot be mapped consistently.
    #[error(
        "the profile removes dates (no Retain Longitudinal Temporal Information option), so date column `{0}` cannot be mapped; leave it out with --drop-columns"
    )]
    DatesRemoved(String),
    /// The output would overwrite the input.
    #[error("the output must not be the input sheet")]
    SameFile,
}

/// What was done to a sheet (counts only, no values).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LabelSummary {
    /// Data rows.
    pub rows: usize,
    /// Non-empty cells mapped, per column.
    pub mapped: BTreeMap<String, usize>,
    /// Cells emptied because the profile removes their attribute, per column.
    pub removed_by_profile: BTreeMap<String, usize>,
    /// Date cells that were not dates and were emptied, per column.
    pub not_dates: BTreeMap<String, usize>,
    /// Rows without a PatientID, keyed like headers without one (falling back to the other
    /// identifiers of the row).
    pub rows_without_patient_id: usize,
    /// Columns copied unchanged.
    pub copied_columns: Vec<String>,
    /// Columns left out.
    pub dropped_columns: Vec<String>,
}

/// Probe values whose shifted forms reveal a row's day offset and time rotation.
const PROBE_DATE: &str = "20000101";
const PROBE_TIME: &str = "000000";

fn dictionary_entry(map: &ColumnMap, uid: bool) -> Result<(Tag, VR), LabelError> {
    let bad = |message: String| LabelError::Keyword {
        column: map.column.clone(),
        message,
    };
    let entry = StandardDataDictionary
        .by_name(&map.keyword)
        .ok_or_else(|| {
            bad(format!(
                "`{}` is not a DICOM keyword; write COLUMN=Keyword, e.g. {}=AccessionNumber",
                map.keyword, map.column
            ))
        })?;
    let vr = entry.vr.relaxed();
    let tag = match entry.tag {
        dicom_core::dictionary::TagRange::Single(t) => t,
        _ => return Err(bad(format!("`{}` is a group of attributes", map.keyword))),
    };
    if uid && vr != VR::UI {
        return Err(bad(format!("`{}` is not a UID attribute", map.keyword)));
    }
    if !uid
        && !matches!(
            vr,
            VR::LO | VR::SH | VR::PN | VR::CS | VR::LT | VR::ST | VR::UT | VR::UC | VR::AE
        )
    {
        return Err(bad(format!(
            "`{}` ({vr:?}) is not an identifier attribute",
            map.keyword
        )));
    }
    if [tags::STUDY_DATE, tags::STUDY_TIME].contains(&tag) {
        return Err(bad("dates go in --date-columns".into()));
    }
    Ok((tag, vr))
}

/// A date cell split into the date, its separator and the time that follows.
struct DateCell {
    ymd: (i64, u32, u32),
    sep: Option<char>,
    time: Option<(String, bool)>,
    time_sep: String,
}

fn parse_cell(text: &str) -> Option<DateCell> {
    if !text.is_ascii() {
        return None;
    }
    let b = text.as_bytes();
    let (date, sep, rest) = if b.len() >= 10 && matches!(b[4], b'-' | b'/' | b'.') && b[7] == b[4] {
        let sep = b[4] as char;
        (text[..10].replace(sep, ""), Some(sep), &text[10..])
    } else if b.len() >= 8 && b[..8].iter().all(u8::is_ascii_digit) {
        (text[..8].to_string(), None, &text[8..])
    } else {
        return None;
    };
    let ymd = temporal::parse_date(&date)?;
    if rest.is_empty() {
        return Some(DateCell {
            ymd,
            sep,
            time: None,
            time_sep: String::new(),
        });
    }
    let time_sep = match rest.as_bytes()[0] {
        b'T' | b' ' => rest[..1].to_string(),
        _ => return None,
    };
    let t = &rest[1..];
    let colons = t.contains(':');
    // HH:MM, HH:MM:SS, HH:MM:SS.ffffff (or the same without colons).
    let compact: String = t.chars().filter(|c| *c != ':').collect();
    let whole = compact.split('.').next().unwrap_or("");
    if !(whole.len() == 4 || whole.len() == 6) || temporal::shift_tm(&compact, 0).is_none() {
        return None;
    }
    Some(DateCell {
        ymd,
        sep,
        time: Some((compact, colons)),
        time_sep,
    })
}

fn shift_cell(cell: &DateCell, days: i32, seconds: u32) -> Option<String> {
    let (y, m, d) = cell.ymd;
    let (y, m, d) = temporal::civil_from_days(temporal::days_from_civil(y, m, d) + i64::from(days));
    if !(0..=9999).contains(&y) {
        return None;
    }
    let mut out = match cell.sep {
        Some(s) => format!("{y:04}{s}{m:02}{s}{d:02}"),
        None => format!("{y:04}{m:02}{d:02}"),
    };
    if let Some((compact, colons)) = &cell.time {
        let t = temporal::shift_tm(compact, seconds)?;
        out.push_str(&cell.time_sep);
        if *colons {
            let (whole, frac) = match t.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (t.as_str(), None),
            };
            let parts: Vec<&str> = (0..whole.len() / 2)
                .map(|i| &whole[2 * i..2 * i + 2])
                .collect();
            out.push_str(&parts.join(":"));
            if let Some(f) = frac {
                out.push('.');
                out.push_str(f);
            }
        } else {
            out.push_str(&t);
        }
    }
    Some(out)
}

fn text_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element(tag).ok()?;
    let s = e.to_str().ok()?;
    Some(s.trim_matches([' ', '\0']).to_string())
}

/// Pseudonymises the sheet `input` into `output` (atomically) with `deid`.
pub fn pseudonymise(
    input: &Path,
    output: &Path,
    spec: &LabelSpec,
    deid: &Deidentifier,
) -> Result<LabelSummary, LabelError> {
    if let (Ok(a), Ok(b)) = (input.canonicalize(), output.canonicalize())
        && a == b
    {
        return Err(LabelError::SameFile);
    }
    let read_err = |message: String| LabelError::Read {
        path: input.to_path_buf(),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_path(input)
        .map_err(|e| read_err(e.to_string()))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| read_err(e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    let find = |column: &str| {
        headers
            .iter()
            .position(|h| h == column)
            .ok_or_else(|| LabelError::MissingColumn {
                column: column.to_string(),
                available: headers.join(", "),
            })
    };
    let patient = spec.patient_column.as_deref().map(find).transpose()?;
    // Columns to map: (index, name, tag, vr); the patient column is PatientID.
    let mut mapped: Vec<(usize, String, Tag, VR)> = Vec::new();
    if let (Some(i), Some(name)) = (patient, &spec.patient_column) {
        mapped.push((i, name.clone(), tags::PATIENT_ID, VR::LO));
    }
    for (maps, uid) in [(&spec.id_columns, false), (&spec.uid_columns, true)] {
        for m in maps {
            let i = find(&m.column)?;
            if mapped.iter().any(|(j, ..)| *j == i) {
                continue;
            }
            let (tag, vr) = dictionary_entry(m, uid)?;
            mapped.push((i, m.column.clone(), tag, vr));
        }
    }
    // Columns mapped to the same attribute go through separate data sets, one per pass.
    let mut passes: Vec<Vec<usize>> = Vec::new();
    for (k, (_, _, tag, _)) in mapped.iter().enumerate() {
        match passes
            .iter_mut()
            .find(|p| p.iter().all(|&j| mapped[j].2 != *tag))
        {
            Some(p) => p.push(k),
            None => passes.push(vec![k]),
        }
    }
    let dates: Vec<(usize, &String)> = spec
        .date_columns
        .iter()
        .map(|c| find(c).map(|i| (i, c)))
        .collect::<Result<_, _>>()?;
    let dropped: Vec<usize> = spec
        .drop_columns
        .iter()
        .map(|c| find(c))
        .collect::<Result<_, _>>()?;

    let mut summary = LabelSummary {
        copied_columns: headers
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                !mapped.iter().any(|m| m.0 == *i)
                    && !dates.iter().any(|d| d.0 == *i)
                    && !dropped.contains(i)
            })
            .map(|(_, h)| h.clone())
            .collect(),
        dropped_columns: dropped.iter().map(|&i| headers[i].clone()).collect(),
        ..Default::default()
    };
    let mut writer = csv::Writer::from_writer(Vec::new());
    let keep: Vec<usize> = (0..headers.len())
        .filter(|i| !dropped.contains(i))
        .collect();
    let write_err = |e: csv::Error| LabelError::Write {
        path: output.to_path_buf(),
        message: e.to_string(),
    };
    writer
        .write_record(keep.iter().map(|&i| &headers[i]))
        .map_err(write_err)?;
    for (row_index, record) in reader.records().enumerate() {
        // csv's errors quote no cell values, only positions.
        let record = record.map_err(|e| read_err(format!("row {}: {e}", row_index + 1)))?;
        let mut cells: Vec<String> = record.iter().map(str::to_string).collect();
        summary.rows += 1;
        let mut offsets: Option<(Option<String>, Option<String>)> = None;
        for (p, pass) in passes.iter().enumerate() {
            let mut obj = InMemDicomObject::new_empty();
            // Every pass carries the patient's identifiers so it is keyed the same way.
            for &(i, _, tag, vr) in mapped
                .iter()
                .filter(|m| m.2 == tags::PATIENT_ID || m.2 == tags::STUDY_INSTANCE_UID)
            {
                let v = record.get(i).unwrap_or("").trim();
                if !v.is_empty() {
                    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
                }
            }
            for &k in pass {
                let (i, _, tag, vr) = &mapped[k];
                let v = record.get(*i).unwrap_or("").trim();
                if !v.is_empty() {
                    obj.put(DataElement::new(*tag, *vr, PrimitiveValue::from(v)));
                }
            }
            if p == 0 {
                obj.put(DataElement::new(
                    tags::STUDY_DATE,
                    VR::DA,
                    PrimitiveValue::from(PROBE_DATE),
                ));
                obj.put(DataElement::new(
                    tags::STUDY_TIME,
                    VR::TM,
                    PrimitiveValue::from(PROBE_TIME),
                ));
            }
            let report = deid.deidentify_object(&mut obj, ObjectContext::default());
            if p == 0 {
                if report.patient_key_source != Some(PatientKeySource::PatientId) {
                    summary.rows_without_patient_id += 1;
                }
                offsets = Some((
                    text_of(&obj, tags::STUDY_DATE),
                    text_of(&obj, tags::STUDY_TIME),
                ));
            }
            for &k in pass {
                let (i, name, tag, _) = &mapped[k];
                if cells[*i].trim().is_empty() {
                    continue;
                }
                match text_of(&obj, *tag).filter(|s| !s.is_empty()) {
                    Some(v) => {
                        cells[*i] = v;
                        *summary.mapped.entry(name.clone()).or_default() += 1;
                    }
                    None => {
                        cells[*i] = String::new();
                        *summary.removed_by_profile.entry(name.clone()).or_default() += 1;
                    }
                }
            }
        }
        if !dates.is_empty() {
            let (date, time) = match offsets {
                Some(o) => o,
                None => {
                    // No identifier columns at all: the row is keyed by nothing, like a header
                    // without identifiers.
                    let mut obj = InMemDicomObject::new_empty();
                    obj.put(DataElement::new(
                        tags::STUDY_DATE,
                        VR::DA,
                        PrimitiveValue::from(PROBE_DATE),
                    ));
                    obj.put(DataElement::new(
                        tags::STUDY_TIME,
                        VR::TM,
                        PrimitiveValue::from(PROBE_TIME),
                    ));
                    deid.deidentify_object(&mut obj, ObjectContext::default());
                    summary.rows_without_patient_id += 1;
                    (
                        text_of(&obj, tags::STUDY_DATE),
                        text_of(&obj, tags::STUDY_TIME),
                    )
                }
            };
            let days = date
                .as_deref()
                .and_then(temporal::parse_date)
                .zip(temporal::parse_date(PROBE_DATE))
                .map(|((y, m, d), (py, pm, pd))| {
                    temporal::days_from_civil(y, m, d) - temporal::days_from_civil(py, pm, pd)
                })
                .and_then(|d| i32::try_from(d).ok());
            // Seconds the probe midnight was rotated to (0 when times are kept as they are).
            let seconds = time
                .as_deref()
                .filter(|t| t.len() >= 6 && t.bytes().take(6).all(|b| b.is_ascii_digit()))
                .map(|t| {
                    let n = |a: usize| t[a..a + 2].parse::<u32>().unwrap_or(0);
                    n(0) * 3600 + n(2) * 60 + n(4)
                });
            for &(i, name) in &dates {
                let text = cells[i].trim().to_string();
                if text.is_empty() {
                    continue;
                }
                let Some(days) = days else {
                    return Err(LabelError::DatesRemoved(name.clone()));
                };
                let shifted = parse_cell(&text).and_then(|c| {
                    if c.time.is_some() && seconds.is_none() {
                        return None;
                    }
                    shift_cell(&c, days, seconds.unwrap_or(0))
                });
                match shifted {
                    Some(s) => {
                        cells[i] = s;
                        *summary.mapped.entry(name.clone()).or_default() += 1;
                    }
                    None => {
                        cells[i] = String::new();
                        *summary.not_dates.entry(name.clone()).or_default() += 1;
                    }
                }
            }
        }
        writer
            .write_record(keep.iter().map(|&i| &cells[i]))
            .map_err(write_err)?;
    }
    let bytes = writer.into_inner().map_err(|e| LabelError::Write {
        path: output.to_path_buf(),
        message: e.to_string(),
    })?;
    bedside_core::fsio::write_atomic(output, &bytes).map_err(|e| LabelError::Write {
        path: output.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bedside_deid::{Profile, SiteSecret};

    fn deid() -> Deidentifier {
        Deidentifier::new(Profile::default(), SiteSecret::from_bytes([3; 32])).unwrap()
    }

    #[test]
    fn dates_keep_their_form() {
        for (text, days, secs, want) in [
            ("20240301", -1, 0, "20240229"),
            ("2024-03-01", -1, 0, "2024-02-29"),
            ("2024/03/01", 30, 0, "2024/03/31"),
            ("2024-03-01 23:30", 0, 3600, "2024-03-01 00:30"),
            ("2024-03-01T10:00:05.25", -1, 60, "2024-02-29T10:01:05.25"),
        ] {
            let c = parse_cell(text).unwrap();
            assert_eq!(shift_cell(&c, days, secs).unwrap(), want, "{text}");
        }
        for bad in [
            "01/03/2024",
            "2024-13-01",
            "yesterday",
            "2024-03-01 noon",
            "",
        ] {
            assert!(parse_cell(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn sheet_maps_like_a_header() {
        let d = deid();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("labels.csv");
        std::fs::write(
            &input,
            "PatientID,acc,StudyInstanceUID,scan_date,ef,name\n\
             P1,A9,1.2.3,2024-03-01,55.5,Jane\n\
             ,A8,1.2.4,junk,60,\n",
        )
        .unwrap();
        let spec = LabelSpec {
            patient_column: Some("PatientID".into()),
            id_columns: vec![ColumnMap::parse("acc=AccessionNumber").unwrap()],
            uid_columns: vec![ColumnMap::parse("StudyInstanceUID").unwrap()],
            date_columns: vec!["scan_date".into()],
            drop_columns: vec!["name".into()],
        };
        let output = dir.path().join("out.csv");
        let s = pseudonymise(&input, &output, &spec, &d).unwrap();
        assert_eq!(s.rows, 2);
        assert_eq!(s.rows_without_patient_id, 1);
        assert_eq!(s.not_dates.get("scan_date"), Some(&1));
        assert_eq!(s.copied_columns, vec!["ef".to_string()]);
        let text = std::fs::read_to_string(&output).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "PatientID,acc,StudyInstanceUID,scan_date,ef");

        // The same values through the header path.
        let mut obj = InMemDicomObject::from_element_iter([
            DataElement::new(tags::PATIENT_ID, VR::LO, PrimitiveValue::from("P1")),
            DataElement::new(tags::ACCESSION_NUMBER, VR::SH, PrimitiveValue::from("A9")),
            DataElement::new(
                tags::STUDY_INSTANCE_UID,
                VR::UI,
                PrimitiveValue::from("1.2.3"),
            ),
            DataElement::new(tags::STUDY_DATE, VR::DA, PrimitiveValue::from("20240301")),
        ]);
        d.deidentify_object(&mut obj, ObjectContext::default());
        let da = text_of(&obj, tags::STUDY_DATE).unwrap();
        let want = format!(
            "{},{},{},{}-{}-{},55.5",
            text_of(&obj, tags::PATIENT_ID).unwrap(),
            text_of(&obj, tags::ACCESSION_NUMBER).unwrap(),
            text_of(&obj, tags::STUDY_INSTANCE_UID).unwrap(),
            &da[..4],
            &da[4..6],
            &da[6..]
        );
        assert_eq!(lines[1], want);
        assert!(!text.contains("Jane") && !text.contains("junk"));
        assert!(lines[2].starts_with(",BS"), "{}", lines[2]);
    }

    #[test]
    fn unknown_columns_and_keywords_are_named() {
        let d = deid();
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("labels.csv");
        std::fs::write(&input, "mrn,x\n1,2\n").unwrap();
        let spec = LabelSpec {
            patient_column: Some("PatientID".into()),
            ..Default::default()
        };
        let e = pseudonymise(&input, &dir.path().join("o.csv"), &spec, &d).unwrap_err();
        assert!(e.to_string().contains("`PatientID`"), "{e}");
        let spec = LabelSpec {
            id_columns: vec![ColumnMap::parse("mrn").unwrap()],
            ..Default::default()
        };
        let e = pseudonymise(&input, &dir.path().join("o.csv"), &spec, &d).unwrap_err();
        assert!(e.to_string().contains("not a DICOM keyword"), "{e}");
    }
}
