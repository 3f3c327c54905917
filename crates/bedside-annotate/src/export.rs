//! Exports of a project's annotations: JSON (one object per annotation), CSV (one row per
//! label or measured quantity, with units and frame numbers), and through [`render`] the
//! DICOM and array exports of [`crate::export_dicom`]: SR (TID 1500), SEG and masks.
//!
//! | format  | response                                                                 |
//! |---------|--------------------------------------------------------------------------|
//! | `json`  | `application/json`                                                       |
//! | `csv`   | `text/csv; charset=utf-8`                                                |
//! | `sr`    | `application/zip`: `manifest.json`, `sr/{study}/{reader}.dcm`            |
//! | `seg`   | `application/zip`: `manifest.json`, `seg/{study}/{series}/{sop}/{reader}.dcm` |
//! | `masks` | `application/zip`: `manifest.json`, `masks/{study}/{series}/{sop}/{name}/{reader}/mask.npy` and `frame-NNNN.png` |
//!
//! SR and SEG come as `multipart/related; type="application/dicom"` instead (one part per
//! object, ready for a STOW-RS request) when that is what the client accepts.

use bedside_dicomweb::StudyStore;
use serde_json::{Value, json};

use crate::db::{AnnotateDb, Annotation, Principal, Project};
use crate::export_dicom::{ExportError, Sources};
use crate::model::Role;

/// What an export produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON document.
    Json,
    /// CSV table.
    Csv,
    /// DICOM SR (TID 1500), one per study and reader.
    Sr,
    /// DICOM SEG, one per instance and reader.
    Seg,
    /// Masks as NumPy arrays and PNG images.
    Masks,
}

impl Format {
    /// The accepted names, for messages.
    pub const NAMES: &'static str = "json, csv, sr, seg or masks";

    /// Parses a format name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "sr" => Some(Self::Sr),
            "seg" => Some(Self::Seg),
            "masks" => Some(Self::Masks),
            _ => None,
        }
    }
}

/// How several DICOM objects travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Packing {
    /// A zip archive with a manifest.
    #[default]
    Zip,
    /// `multipart/related; type="application/dicom"` (SR and SEG only).
    Multipart,
}

/// An export ready to send or write.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// Media type of `body`.
    pub content_type: String,
    /// The bytes.
    pub body: Vec<u8>,
    /// Files in the body (DICOM objects, arrays and images; 1 for JSON and CSV).
    pub files: usize,
    /// What was left out, and why.
    pub skipped: Vec<String>,
}

/// Renders the export of `project` (only `study` when given) as `format`. Masks are read as
/// `who` with `role` sees them (admins and reviewers see every annotation).
#[allow(clippy::too_many_arguments)]
pub fn render(
    db: &AnnotateDb,
    store: &dyn StudyStore,
    who: &Principal,
    role: Role,
    project: &Project,
    format: Format,
    study: Option<&str>,
    packing: Packing,
) -> Result<Rendered, ExportError> {
    let mut list = db.project_annotations(project.id)?;
    if let Some(s) = study {
        list.retain(|a| a.study_instance_uid == s);
    }
    if packing == Packing::Multipart && !matches!(format, Format::Sr | Format::Seg) {
        return Err(ExportError::Invalid(
            "only the sr and seg exports come as multipart/related".into(),
        ));
    }
    let mut sources = Sources::new(store);
    let mut mask_of = |a: &Annotation| -> Result<Vec<u8>, ExportError> {
        let (_, z) = db.annotation_mask(who, role, project, &a.id)?;
        crate::model::inflate(&z).map_err(|e| ExportError::Source {
            sop: a.location.sop_instance_uid.clone().unwrap_or_default(),
            why: format!("stored mask of {} is unreadable: {e}", a.id),
        })
    };
    let (files, skipped) = match format {
        Format::Json => {
            let body = serde_json::to_vec_pretty(&to_json(project, &list))
                .map_err(|e| ExportError::Pack(e.to_string()))?;
            return Ok(Rendered {
                content_type: "application/json".into(),
                body,
                files: 1,
                skipped: Vec::new(),
            });
        }
        Format::Csv => {
            let body = to_csv(project, &list)
                .map_err(|e| ExportError::Pack(e.to_string()))?
                .into_bytes();
            return Ok(Rendered {
                content_type: "text/csv; charset=utf-8".into(),
                body,
                files: 1,
                skipped: Vec::new(),
            });
        }
        Format::Sr => (
            crate::export_dicom::sr_files(project, &list, &mut sources)?,
            Vec::new(),
        ),
        Format::Seg => crate::export_dicom::seg_files(project, &list, &mut sources, &mut mask_of)?,
        Format::Masks => (
            crate::export_dicom::mask_files(&list, &mut sources, &mut mask_of)?,
            Vec::new(),
        ),
    };
    match packing {
        Packing::Zip => Ok(Rendered {
            content_type: "application/zip".into(),
            body: crate::export_dicom::zip(&files, &skipped)?,
            files: files.len(),
            skipped,
        }),
        Packing::Multipart => {
            let mut w = bedside_dicomweb::multipart::MultipartWriter::new();
            for f in &files {
                w.part("application/dicom", None, &f.bytes);
            }
            let (boundary, body) = w.finish();
            Ok(Rendered {
                content_type: format!(
                    "multipart/related; type=\"application/dicom\"; boundary={boundary}"
                ),
                body: body.to_vec(),
                files: files.len(),
                skipped,
            })
        }
    }
}

/// Renders an export straight from a data folder and its database (the
/// `bedside annotate export` command): `project` is a project's id or name; every annotation
/// is exported, as to an admin.
pub fn render_from_folder(
    data: &std::path::Path,
    database: &crate::sql::Database,
    project: &str,
    format: Format,
    study: Option<&str>,
) -> Result<Rendered, ExportError> {
    let store = crate::store::DiskStore::with_database(data, database)?;
    let db = AnnotateDb::with_database(database)?;
    let who = Principal {
        user_id: 0,
        username: String::new(),
        superuser: true,
        csrf: String::new(),
    };
    let found = db
        .projects(&who)?
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| p.name == project || p.id.to_string() == project)
        .ok_or_else(|| {
            ExportError::Invalid(format!("no project {project:?} in {}", data.display()))
        })?;
    render(
        &db,
        &store,
        &who,
        Role::Admin,
        &found,
        format,
        study,
        Packing::Zip,
    )
}

/// Milliseconds since the epoch as `YYYY-MM-DDThh:mm:ss.sssZ`.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The project and its annotations as one JSON document.
pub fn to_json(project: &Project, list: &[Annotation]) -> Value {
    json!({
        "project": {"id": project.id, "name": project.name, "blinded": project.blinded, "schema": project.schema},
        "annotations": list.iter().map(|a| {
            let mut v = json!(a);
            v["created"] = json!(iso8601(a.created_at));
            v["updated"] = json!(iso8601(a.updated_at));
            v
        }).collect::<Vec<_>>(),
    })
}

/// Columns of the CSV export.
pub const CSV_COLUMNS: &[&str] = &[
    "project",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "frame",
    "annotation_id",
    "kind",
    "name",
    "values",
    "quantity",
    "value",
    "unit",
    "calibration",
    "author",
    "version",
    "created",
    "updated",
];

/// The CSV export: labels give one row (values joined by `;`), measurements one row per
/// quantity (length; area and perimeter; mask area and pixels).
pub fn to_csv(project: &Project, list: &[Annotation]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    for a in list {
        let frame = a.location.frame.map(|f| f.to_string()).unwrap_or_default();
        let base = |values: &str, quantity: &str, value: &str, unit: &str, cal: &str| {
            vec![
                project.name.clone(),
                a.study_instance_uid.clone(),
                a.location.series_instance_uid.clone().unwrap_or_default(),
                a.location.sop_instance_uid.clone().unwrap_or_default(),
                frame.clone(),
                a.id.clone(),
                a.kind.clone(),
                a.name.clone(),
                values.to_string(),
                quantity.to_string(),
                value.to_string(),
                unit.to_string(),
                cal.to_string(),
                a.author.clone(),
                a.version.to_string(),
                iso8601(a.created_at),
                iso8601(a.updated_at),
            ]
        };
        match &a.measurement {
            None => {
                let values: Vec<&str> = a.payload["values"]
                    .as_array()
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                w.write_record(base(&values.join(";"), "", "", "", ""))?;
            }
            Some(m) => {
                let cal = m["calibration"].as_str().unwrap_or("");
                for q in m["values"].as_array().into_iter().flatten() {
                    w.write_record(base(
                        "",
                        q["quantity"].as_str().unwrap_or(""),
                        &q["value"]
                            .as_f64()
                            .map(|v| format!("{v}"))
                            .unwrap_or_default(),
                        q["unit"].as_str().unwrap_or(""),
                        cal,
                    ))?;
                }
            }
        }
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        // 2024-02-29T12:34:56.789Z (a leap day), from `date -u -d @1709210096`.
        assert_eq!(iso8601(1_709_210_096_789), "2024-02-29T12:34:56.789Z");
    }
}
