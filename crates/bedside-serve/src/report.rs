//! The result as a Comprehensive SR: algorithm name and version, the quality-control outcome
//! with its reasons, each output with its unit and spread across clips, the evidential
//! uncertainty, and references to the source instance. Report UIDs are derived from the source
//! instance and the bundle, so processing the same instance again yields the same report.

use bedside_dicom::sr::{Code, ContentItem, InstanceRef, Relationship, SourceStudy, SrDocument};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde::Serialize;

use crate::pipeline::{Finding, Prediction};

/// Private coding scheme of the concepts the standard has no code for.
pub const SCHEME: &str = "99BEDSIDE";

/// What was concluded about one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A prediction within the model's competence.
    Result,
    /// Analysed, but the model does not know ("I don't know").
    Indeterminate,
    /// Not analysed: quality control refused the input.
    Rejected,
}

impl Status {
    /// Name used in results and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Result => "result",
            Self::Indeterminate => "indeterminate",
            Self::Rejected => "rejected",
        }
    }
}

/// The model that produced a result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Bundle name.
    pub name: String,
    /// Version: the Bedside version that wrote it and a digest of its `bundle.json`.
    pub version: String,
    /// Task in words.
    pub task: String,
    /// Intended use.
    pub intended_use: String,
}

/// The result of one instance, as JSON over REST and as the SR content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Source SOP Instance UID.
    pub sop_instance_uid: String,
    /// Source Study Instance UID.
    pub study_instance_uid: String,
    /// Status.
    pub status: Status,
    /// The routed model (absent when no route accepted the instance).
    pub model: Option<ModelInfo>,
    /// Quality-control findings (empty: passed).
    pub qc: Vec<Finding>,
    /// The "I don't know" gate's finding.
    pub gate: Option<Finding>,
    /// The prediction (absent when rejected).
    pub prediction: Option<Prediction>,
    /// UCUM unit of a `value` output.
    pub value_unit: String,
    /// Report SOP Instance UID.
    pub report_sop_instance_uid: Option<String>,
    /// SOP Instance UID of the explanation secondary capture (`[route.explain]`).
    pub explanation_sop_instance_uid: Option<String>,
    /// Seconds per stage.
    pub timings_s: Vec<(String, f64)>,
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `(YYYYMMDD, HHMMSS)` in UTC for seconds since the epoch.
pub fn dicom_date_time(unix: f64) -> (String, String) {
    let secs = unix.max(0.0).floor() as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", t / 3600, (t / 60) % 60, t % 60),
    )
}

fn code(value: &str, meaning: &str) -> Code {
    Code::new(value, SCHEME, meaning)
}

fn meaning_of(name: &str) -> String {
    if name == "uncertainty" {
        "Evidential uncertainty (K/S)".into()
    } else if let Some(k) = name.strip_prefix("prob_") {
        format!("Probability of class {k}")
    } else if name == "value" {
        "Predicted value".into()
    } else if name == "risk" {
        "Risk score".into()
    } else if let Some(t) = name.strip_prefix("surv@") {
        format!("Survival probability at {t}")
    } else {
        name.to_string()
    }
}

/// A string element's value without DICOM padding (empty when absent or not text).
pub(crate) fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default()
}

/// Builds the report for `outcome` of `source`, received at `received_at` (seconds since the
/// epoch; the content date and time).
pub fn build(
    outcome: &Outcome,
    source: &InMemDicomObject,
    received_at: f64,
) -> Result<InMemDicomObject, bedside_dicom::sr::SrError> {
    let source_ref = InstanceRef {
        study_instance_uid: text(source, tags::STUDY_INSTANCE_UID),
        series_instance_uid: text(source, tags::SERIES_INSTANCE_UID),
        sop_class_uid: text(source, tags::SOP_CLASS_UID),
        sop_instance_uid: text(source, tags::SOP_INSTANCE_UID),
    };
    let image = || {
        ContentItem::image(
            Code::new("121112", "DCM", "Source of Measurement"),
            source_ref.clone(),
            Vec::new(),
        )
    };
    let mut root = ContentItem::container(code("AIREPORT", "AI inference report"));
    if let Some(m) = &outcome.model {
        root.push(
            Relationship::HasObsContext,
            ContentItem::text(Code::new("111001", "DCM", "Algorithm Name"), &m.name),
        );
        root.push(
            Relationship::HasObsContext,
            ContentItem::text(Code::new("111003", "DCM", "Algorithm Version"), &m.version),
        );
        root.push(
            Relationship::HasObsContext,
            ContentItem::text(code("INTENDEDUSE", "Intended use"), &m.intended_use),
        );
        root.push(
            Relationship::HasObsContext,
            ContentItem::text(code("TASK", "Model task"), &m.task),
        );
    }
    let (qc_value, qc_meaning) = if outcome.qc.is_empty() {
        ("QCPASSED", "Passed")
    } else {
        ("QCFAILED", "Failed")
    };
    let mut qc = ContentItem::code(
        code("QC", "Input quality control"),
        code(qc_value, qc_meaning),
    );
    for f in &outcome.qc {
        qc.push(
            Relationship::HasProperties,
            ContentItem::text(
                code("QCREASON", "Quality control finding"),
                &format!("{}: {}", f.reason.as_str(), f.detail),
            ),
        );
    }
    root.push(Relationship::Contains, qc);
    let (status_value, status_meaning) = match outcome.status {
        Status::Result => ("RESULT", "Result within the model's competence"),
        Status::Indeterminate => ("INDETERMINATE", "Indeterminate: the model does not know"),
        Status::Rejected => ("NOTANALYSED", "Not analysed"),
    };
    let mut status = ContentItem::code(
        code("STATUS", "Result status"),
        code(status_value, status_meaning),
    );
    if let Some(g) = &outcome.gate {
        status.push(
            Relationship::HasProperties,
            ContentItem::text(
                code("GATEREASON", "Out-of-distribution finding"),
                &format!("{}: {}", g.reason.as_str(), g.detail),
            ),
        );
    }
    root.push(Relationship::Contains, status);
    if let Some(p) = &outcome.prediction {
        root.push(
            Relationship::Contains,
            ContentItem::num(
                code("CLIPS", "Clips analysed"),
                p.clips as f64,
                Code::ucum("{clips}", "clips"),
            ),
        );
        for (i, o) in p.outputs.iter().enumerate() {
            let unit = if o.name == "value" {
                Code::ucum(&outcome.value_unit, &outcome.value_unit)
            } else {
                Code::ucum("1", "no units")
            };
            let item = ContentItem::num(
                code(&format!("OUT{i}"), &meaning_of(&o.name)),
                o.mean,
                unit.clone(),
            )
            .with_child(
                Relationship::HasProperties,
                ContentItem::num(
                    code("CLIPSD", "Standard deviation across clips"),
                    o.std,
                    unit,
                ),
            )
            .with_child(Relationship::InferredFrom, image());
            root.push(Relationship::Contains, item);
        }
    } else {
        root.push(Relationship::Contains, image());
    }
    let study = SourceStudy::from_object(source);
    let model_name = outcome.model.as_ref().map_or("none", |m| m.name.as_str());
    let series_uid = bedside_dicom::uid::from_hash(
        format!(
            "bedside-serve series {} {model_name}",
            study.study_instance_uid
        )
        .as_bytes(),
    );
    let sop_uid = report_uid(&source_ref.sop_instance_uid, model_name);
    let mut doc = SrDocument::new(study, root, &series_uid, &sop_uid);
    let (date, time) = dicom_date_time(received_at);
    doc.content_date = date;
    doc.content_time = time;
    doc.series_description = "Bedside AI result".into();
    doc.manufacturer = "Bedside".into();
    doc.software_versions = env!("CARGO_PKG_VERSION").into();
    doc.coding_schemes.push(bedside_dicom::sr::CodingScheme {
        designator: SCHEME.into(),
        name: "Bedside inference report concepts".into(),
        version: "1".into(),
        responsible_organization: "Bedside project".into(),
    });
    doc.to_object()
}

/// The report UID of a source instance and model.
pub fn report_uid(source_uid: &str, model: &str) -> String {
    bedside_dicom::uid::from_hash(format!("bedside-serve report {source_uid} {model}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_match_known_days() {
        assert_eq!(dicom_date_time(0.0), ("19700101".into(), "000000".into()));
        // 2000-02-29 12:34:56 UTC
        assert_eq!(
            dicom_date_time(951_827_696.0),
            ("20000229".into(), "123456".into())
        );
        assert_eq!(dicom_date_time(1_798_761_599.0).0, "20261231");
    }
}
