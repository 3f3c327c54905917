#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `explain_manifest` end to end on a bundle built here: the files a user opens, the frame
//! numbering of study maps, and the explained value against `bedside predict`'s.

use std::path::Path;

use bedside_explain::run::{RunOptions, explain_manifest};
use bedside_explain::study::Method;
use bedside_ml::bundle::{BUNDLE_FORMAT, BUNDLE_VERSION, WEIGHTS_FILE};
use bedside_ml::data::clips::Normalization;
use bedside_ml::data::npy::read_npy;
use bedside_ml::loss::evidential::Evidence;
use bedside_ml::predict::{PredictOptions, predict};
use bedside_ml::train::config::{SurvivalModel, TaskKind};
use bedside_ml::train::model::{InputSpec, ModelSpec, TaskSpec};
use burn::module::Module;
use burn::tensor::Device;

const FRAMES: usize = 9;

fn spec() -> ModelSpec {
    ModelSpec {
        backbone: "r2plus1d_18".into(),
        width: 0.0625,
        layers: [1, 1, 1, 1],
        dropout: 0.0,
        fusion_hidden: 8,
        norm: bedside_ml::video::NormKind::Batch,
        norm_groups: 32,
        task: TaskSpec {
            kind: TaskKind::Classification,
            classes: 2,
            survival: SurvivalModel::Cox,
            cuts: Vec::new(),
            target_mean: 0.0,
            target_std: 1.0,
            evidence: Evidence::Softplus,
        },
        tabular: Vec::new(),
        input: InputSpec {
            clip_length: 4,
            period: 2,
            size: 16,
            channels: 3,
            normalization: Normalization {
                mean: vec![60.0; 3],
                std: vec![40.0; 3],
            },
            resized_copy: None,
        },
    }
}

/// A bundle folder with fresh (seeded) weights, as `bedside export` lays it out.
fn write_bundle(dir: &Path) {
    let device = Device::flex();
    device.seed(17);
    let spec = spec();
    let model = spec.init(&device).unwrap();
    let bytes = model.into_record().into_bytes().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(WEIGHTS_FILE), &bytes[..]).unwrap();
    let manifest = serde_json::json!({
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "name": "explain-test",
        "intended_use": "tests",
        "task": "classification (2 classes)",
        "created_with": "test",
        "model": spec,
        "outputs": ["prob_0", "prob_1"],
        "training_data": {"manifest_rows": 2, "unlabelled_rows": 0, "splits": {}},
        "validation": {"epoch": 1, "selected_by": "val_loss", "metrics": {}},
        "weights": WEIGHTS_FILE,
    });
    std::fs::write(
        dir.join("bundle.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

/// Two grey-level videos `[frames, 20, 20]` (uint8) with a moving bright square.
fn write_data(dir: &Path) -> std::path::PathBuf {
    let mut csv = String::from("study_id,array,split,label\n");
    for (s, name) in ["A1", "B2"].iter().enumerate() {
        let mut data = Vec::new();
        for f in 0..FRAMES {
            for y in 0..20 {
                for x in 0..20 {
                    let inside =
                        (y as isize - 10).abs() < 4 && (x as isize - 4 - f as isize).abs() < 3;
                    data.push(if inside { 200u8 } else { 20 + (s as u8) * 10 });
                }
            }
        }
        let path = dir.join(format!("{name}.npy"));
        let mut bytes = Vec::new();
        bedside_core::npy::write_npy(
            &mut bytes,
            bedside_core::npy::Dtype::U8,
            &[FRAMES, 20, 20],
            &data,
        )
        .unwrap();
        std::fs::write(&path, bytes).unwrap();
        csv.push_str(&format!("{name},{name}.npy,test,{s}\n"));
    }
    let manifest = dir.join("manifest.csv");
    std::fs::write(&manifest, csv).unwrap();
    manifest
}

#[test]
fn explains_studies_and_writes_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle_dir = tmp.path().join("bundle");
    write_bundle(&bundle_dir);
    let manifest = write_data(tmp.path());
    let device = Device::flex();
    let bundle = bedside_ml::bundle::load(&bundle_dir, &device).unwrap();
    let out = tmp.path().join("out");
    let mut options = RunOptions {
        methods: Method::ALL.to_vec(),
        max_clips: Some(2),
        probability: true,
        class: Some(1),
        ..RunOptions::default()
    };
    options.method_options.ig.steps = 8;
    options.method_options.smoothgrad.samples = 3;
    let mut calls = 0;
    let summary = explain_manifest(&bundle, &manifest, &options, &out, &device, &mut |_, _| {
        calls += 1
    })
    .unwrap();
    assert_eq!(summary.studies.len(), 2);
    assert_eq!(calls, 1 + 2 * 2 * Method::ALL.len());

    // The explained value is the probability `bedside predict` reports for the same clips.
    let preds = tmp.path().join("preds.csv");
    predict(
        &bundle,
        &manifest,
        &PredictOptions {
            max_clips: Some(2),
            ..PredictOptions::default()
        },
        &preds,
        &device,
        &mut |_, _| {},
    )
    .unwrap();
    let text = std::fs::read_to_string(&preds).unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = header.iter().position(|h| h == "prob_1").unwrap();
    for (row, study) in reader.records().zip(&summary.studies) {
        let row = row.unwrap();
        let want: f64 = row[col].parse().unwrap();
        let got =
            study.scores.iter().map(|&s| f64::from(s)).sum::<f64>() / study.scores.len() as f64;
        assert!(
            (got - want).abs() < 1e-5,
            "{}: {got} vs {want}",
            study.study
        );
    }

    // Clips of 4 frames every 2nd frame from starts 0 and 2: frames 0, 2, 4, 6 and 2 … 8.
    let study = &summary.studies[0];
    assert_eq!(study.clip_starts, vec![0, 2]);
    let dir = out.join(&study.folder);
    for method in Method::ALL {
        let s = &study.methods[method.name()];
        assert_eq!(s.temporal.len(), FRAMES);
        for f in 0..FRAMES {
            assert_eq!(s.temporal[f].is_some(), f % 2 == 0, "{method:?} frame {f}");
        }
        if method.has_map() {
            let map = read_npy(&dir.join(format!("{}.npy", method.name()))).unwrap();
            assert_eq!(map.shape, vec![FRAMES, 16, 16]);
            assert!(map.data[16 * 16..2 * 16 * 16].iter().all(|&v| v == 0.0));
            let png = std::fs::File::open(dir.join(format!("{}.png", method.name()))).unwrap();
            let reader = png::Decoder::new(std::io::BufReader::new(png))
                .read_info()
                .unwrap();
            let info = reader.info();
            assert_eq!((info.width, info.height), (32, 16));
            assert_eq!(info.animation_control.unwrap().num_frames, 5);
        }
    }
    assert_eq!(study.methods["ig"].clips.len(), 2);
    assert!(study.methods["ig"].clips[0].ig_delta.is_some());
    let svg = std::fs::read_to_string(dir.join("temporal.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.matches("<polyline").count() + svg.matches("<circle").count() > 0);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(json["studies"].as_array().unwrap().len(), 2);

    // Asking for a study that is not there is an input error.
    let missing = RunOptions {
        studies: vec!["nope".into()],
        ..options
    };
    let err =
        explain_manifest(&bundle, &manifest, &missing, &out, &device, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("not in the manifest"), "{err}");
}
