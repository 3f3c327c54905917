//! Exports of a project's annotations: JSON (one object per annotation) and CSV (one row per
//! label or measured quantity, with units and frame numbers).

use serde_json::{Value, json};

use crate::db::{Annotation, Project};

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
