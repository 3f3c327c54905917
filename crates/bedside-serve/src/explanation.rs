//! The optional explanation of a result: an attribution map of the middle clip, drawn over
//! that clip's frames (the colours of `bedside explain`'s overlays: red for, blue against),
//! filed as a Multi-frame True Color Secondary Capture in the source's study.

use bedside_dicom::sc::TrueColorCapture;
use bedside_dicom::sr::{InstanceRef, SourceStudy};
use bedside_explain::gradcam::GradCamOptions;
use bedside_explain::study::{MethodOptions, explain_clip};
use bedside_explain::{Explainee, Method, Stage, Target};
use bedside_ml::bundle::Bundle;
use bedside_ml::data::clips::VideoArray;
use burn::tensor::Device;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use crate::config::{ExplainRoute, Worker};
use crate::report::{ModelInfo, dicom_date_time, text};

/// Series Number of the explanation series (the report's series uses the SR default).
const SERIES_NUMBER: i64 = 902;

/// The explanation's SOP Instance UID: derived from the report's, so reprocessing the same
/// instance with the same model gives the same object.
pub fn explanation_uid(report_uid: &str) -> String {
    bedside_dicom::uid::from_hash(format!("bedside-serve explanation {report_uid}").as_bytes())
}

/// What to explain and where it came from.
pub struct Request<'a> {
    /// The routed bundle.
    pub bundle: &'a Bundle,
    /// Its description for the series.
    pub model: &'a ModelInfo,
    /// The decoded video.
    pub video: &'a VideoArray,
    /// The source instance (patient, study and reference).
    pub source: &'a InMemDicomObject,
    /// Source frames per second, if the header says.
    pub fps: Option<f64>,
    /// The report's SOP Instance UID.
    pub report_uid: &'a str,
    /// Seconds since the epoch the instance arrived (content date and time).
    pub received_at: f64,
}

/// Draws `settings.method` for the bundle's natural target over the middle clip and returns
/// the secondary capture.
pub fn capture(
    request: &Request<'_>,
    settings: &ExplainRoute,
    worker: &Worker,
    device: &Device,
) -> Result<InMemDicomObject, String> {
    let method = Method::parse(&settings.method).map_err(|e| e.to_string())?;
    let stage = Stage::parse(&settings.layer).map_err(|e| e.to_string())?;
    let bundle = request.bundle;
    let (display, input) = crate::pipeline::middle_clip(bundle, request.video, worker)?;
    let model = Explainee::from_model(&bundle.model, None, device).map_err(|e| e.to_string())?;
    let target = Target::for_task(&bundle.manifest.model.task, None).map_err(|e| e.to_string())?;
    let options = MethodOptions {
        gradcam: GradCamOptions {
            stage,
            ..GradCamOptions::default()
        },
        ..MethodOptions::default()
    };
    let result =
        explain_clip(&model, &target, &input, method, &options).map_err(|e| e.to_string())?;
    let frames: Vec<usize> = (0..display.frames).collect();
    let rgb = bedside_explain::render::overlay_frames(&display, &result.map, &frames)
        .map_err(|e| e.to_string())?;
    let what = match method {
        Method::GradCam => format!("Grad-CAM {}", stage.name()),
        other => other.name().to_string(),
    };
    let period = bundle.manifest.model.input.period.max(1) as f64;
    let frame_time_ms = 1000.0 / request.fps.filter(|f| *f > 0.0).unwrap_or(30.0) * period;
    let study = SourceStudy::from_object(request.source);
    let source = InstanceRef {
        study_instance_uid: study.study_instance_uid.clone(),
        series_instance_uid: text(request.source, tags::SERIES_INSTANCE_UID),
        sop_class_uid: text(request.source, tags::SOP_CLASS_UID),
        sop_instance_uid: text(request.source, tags::SOP_INSTANCE_UID),
    };
    let series_uid = bedside_dicom::uid::from_hash(
        format!(
            "bedside-serve explanation series {} {}",
            study.study_instance_uid, request.model.name
        )
        .as_bytes(),
    );
    let (date, time) = dicom_date_time(request.received_at);
    let description = format!(
        "Bedside explanation: {what} ({} {})",
        request.model.name, request.model.version
    );
    TrueColorCapture {
        study,
        series_instance_uid: series_uid,
        sop_instance_uid: explanation_uid(request.report_uid),
        series_number: SERIES_NUMBER,
        instance_number: 1,
        series_description: description.chars().take(64).collect(),
        manufacturer: "Bedside".into(),
        software_versions: env!("CARGO_PKG_VERSION").into(),
        derivation_description: format!(
            "{what} attribution of the model's {} over one {}-frame clip (every {} source frames, resized to {}x{}); red: evidence for, blue: against. Research use.",
            target.describe(),
            display.frames,
            period,
            display.height,
            display.width
        ),
        sources: vec![source],
        content_date: date,
        content_time: time,
        rows: display.height,
        columns: display.width,
        frame_time_ms,
        frames: rgb,
    }
    .to_object()
    .map_err(|e| e.to_string())
}
