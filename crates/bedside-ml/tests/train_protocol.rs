#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The training protocol around the loop: the per-frame 2D CNN baseline through the same
//! train/export/predict path as the video ResNets, validation over evenly spaced clips averaged
//! as `predict` averages them, exact resume inside an epoch, and Parquet manifests (written by
//! `bedside curate`'s writer and by pyarrow).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use bedside_core::npy::{Dtype, write_npy};
use bedside_core::rng::Rng;
use bedside_ml::bundle;
use bedside_ml::data::loader::load_table;
use bedside_ml::data::manifest::ManifestColumns;
use bedside_ml::predict::{PredictOptions, predict};
use bedside_ml::train::config::ExperimentConfig;
use bedside_ml::train::model::ClinicalModel;
use bedside_ml::train::{TrainEvent, load_run_state, train};
use burn::module::{Module, ModuleVisitor, Param};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};

const FRAMES: usize = 10;

/// Class 1 videos hold a bright pulsating blob, class 0 a dim one; `ef` grows with the
/// pulsation. Splits by `i % 5`: 0 val, 1 test, else train.
fn cohort(dir: &Path, n: usize, seed: u64) -> PathBuf {
    let mut rng = Rng::seed_from(seed);
    let mut csv = String::from("study_id,array,split,label,ef,time,event,sex,age\n");
    for i in 0..n {
        let label = i % 2;
        let amplitude = if label == 1 { 0.6 } else { 0.1 };
        let (h, w) = (20, 24);
        let mut data = Vec::with_capacity(FRAMES * h * w);
        for f in 0..FRAMES {
            let r = 4.0 + 3.0 * amplitude * ((f as f64) * 0.9).sin();
            for y in 0..h {
                for x in 0..w {
                    let d = (((y as f64) - 10.0).powi(2) + ((x as f64) - 12.0).powi(2)).sqrt();
                    let base = if d < r {
                        60.0 + 150.0 * amplitude
                    } else {
                        20.0
                    };
                    data.push((base + rng.uniform() * 20.0) as u8);
                }
            }
        }
        let name = format!("v{i:03}.npy");
        let mut file = std::fs::File::create(dir.join(&name)).unwrap();
        write_npy(&mut file, Dtype::U8, &[FRAMES, h, w], &data).unwrap();
        let split = match i % 5 {
            0 => "val",
            1 => "test",
            _ => "train",
        };
        let ef = 30.0 + 40.0 * amplitude + rng.uniform() * 5.0;
        let time = if label == 1 { 100.0 } else { 400.0 } + rng.uniform() * 200.0;
        let event = u8::from(rng.bernoulli(0.7));
        let sex = if rng.bernoulli(0.5) { "F" } else { "M" };
        csv.push_str(&format!(
            "S{i:03},{name},{split},{label},{ef:.2},{time:.1},{event},{sex},{}\n",
            50 + i % 30
        ));
    }
    let path = dir.join("manifest.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// A tiny experiment; `data_extra` and `model_extra` go into the `[data]` and `[model]`
/// tables, `extra` after everything.
fn tiny(manifest: &Path, data_extra: &str, model_extra: &str, extra: &str) -> ExperimentConfig {
    let text = format!(
        r#"
seed = 7
[data]
manifest = "{}"
clip_length = 4
period = 2
size = 16
workers = 2
prefetch_batches = 2
{data_extra}
[data.columns]
class = "label"
value = "ef"
time = "time"
event = "event"
[data.augment]
flip_probability = 0.5
shift_pad = 1
[model]
width = 0.0625
layers = [1, 1, 1, 1]
{model_extra}
[training]
epochs = 2
batch_size = 4
grad_clip_norm = 5.0
[optimizer]
lr = 0.003
{extra}
"#,
        manifest.display()
    );
    bedside_core::config::from_str(&text, "test config").unwrap()
}

const REGRESSION: &str =
    "[task]\nkind = \"regression\"\n[training.early_stopping]\nmetric = \"val_mae\"\n";

fn run(config: &ExperimentConfig, dir: &Path) -> String {
    train(config, dir, false, &mut |_| ControlFlow::Continue(())).unwrap();
    std::fs::read_to_string(dir.join("metrics.csv")).unwrap()
}

fn column(metrics: &str, name: &str) -> Vec<f64> {
    let mut lines = metrics.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let i = header.iter().position(|h| *h == name).unwrap();
    lines
        .map(|l| l.split(',').nth(i).unwrap().parse().unwrap())
        .collect()
}

/// The validation MAE of `bedside predict` with the bundle in `dir`: the mean absolute error
/// of the per-study `value` (mean over at most `max_clips` clips) against the manifest's `ef`.
fn predicted_val_mae(dir: &Path, manifest: &Path, max_clips: Option<usize>) -> (f64, Vec<f64>) {
    let device = Device::flex();
    let loaded = bundle::load(dir, &device).unwrap();
    let out = dir.join("val-preds.csv");
    let options = PredictOptions {
        split: Some(("split".into(), "val".into())),
        keep: vec!["ef".into()],
        max_clips,
        ..PredictOptions::default()
    };
    predict(&loaded, manifest, &options, &out, &device, &mut |_, _| {}).unwrap();
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header = reader.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (ef, value) = (at("ef"), at("value"));
    let mut errors = Vec::new();
    let mut values = Vec::new();
    for r in reader.records() {
        let r = r.unwrap();
        let v: f64 = r[value].parse().unwrap();
        let y: f64 = r[ef].parse().unwrap();
        errors.push((v - y).abs());
        values.push(v);
    }
    (errors.iter().sum::<f64>() / errors.len() as f64, values)
}

#[test]
fn the_frame_cnn_baseline_trains_exports_and_predicts_through_the_same_path() {
    let data = tempfile::tempdir().unwrap();
    let manifest = cohort(data.path(), 15, 21);
    let config = tiny(&manifest, "", "backbone = \"frame_cnn\"", REGRESSION);
    let run_dir = tempfile::tempdir().unwrap();
    let metrics = run(&config, run_dir.path());
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    assert!(
        column(&metrics, "train_loss").iter().all(|v| v.is_finite()),
        "{metrics}"
    );
    let out = tempfile::tempdir().unwrap();
    let m = bundle::export(run_dir.path(), out.path()).unwrap();
    assert_eq!(m.model.backbone, "frame_cnn");
    // The bundle folder alone rebuilds the model.
    let moved = tempfile::tempdir().unwrap();
    for f in ["bundle.json", "weights.bpk"] {
        std::fs::copy(out.path().join(f), moved.path().join(f)).unwrap();
    }
    drop(run_dir);
    let loaded = bundle::load(moved.path(), &Device::flex()).unwrap();
    assert!(loaded.model.backbone.is_none());
    let frame_cnn = loaded.model.frame_cnn.as_ref().expect("a frame CNN");
    // width 0.0625 of 64/128/256/512.
    assert_eq!(frame_cnn.embedding_dim(), 32);
    assert_eq!(frame_cnn.stages.len(), 3);
    // The validation MAE the run measured with its in-memory model (every one of the 4 clips
    // of each study, `data.val_clips` = 4) is what the rebuilt bundle predicts.
    let recorded = m.validation.metrics["val_mae"].unwrap();
    let (predicted, values) = predicted_val_mae(moved.path(), &manifest, None);
    assert!(
        (predicted - recorded).abs() < 1e-3,
        "bundle predicts MAE {predicted}, the run recorded {recorded}"
    );
    assert!(
        values.iter().any(|v| (v - values[0]).abs() > 1e-6),
        "constant predictions {values:?}"
    );

    // A max-pooling variant is another name; layers other than one per stage are refused.
    let max = tiny(&manifest, "", "backbone = \"frame_cnn_max\"", REGRESSION);
    let spec_dir = tempfile::tempdir().unwrap();
    let mut one = max.clone();
    one.training.epochs = 1;
    run(&one, spec_dir.path());
    let state = load_run_state(spec_dir.path()).unwrap();
    assert_eq!(state.spec.backbone, "frame_cnn_max");
    let err = |text: &str| {
        bedside_core::config::from_str::<ExperimentConfig>(text, "exp.toml")
            .unwrap_err()
            .to_string()
    };
    let e = err(
        "[data]\nmanifest = \"m.csv\"\n[data.columns]\nclass = \"y\"\n[model]\nbackbone = \"frame_cnn\"\nlayers = [2, 1, 1, 1]\n",
    );
    assert!(e.contains("model.layers"), "{e}");
    let e = err(
        "[data]\nmanifest = \"m.csv\"\n[data.columns]\nclass = \"y\"\n[model]\nbackbone = \"resnet50\"\n",
    );
    assert!(
        e.contains("model.backbone") && e.contains("frame_cnn"),
        "{e}"
    );
    let e = err("[data]\nmanifest = \"m.csv\"\nval_clips = 0\n[data.columns]\nclass = \"y\"\n");
    assert!(e.contains("data.val_clips"), "{e}");
}

#[test]
fn validation_averages_evenly_spaced_clips_as_predict_does() {
    let data = tempfile::tempdir().unwrap();
    let manifest = cohort(data.path(), 15, 22);
    let mut runs = Vec::new();
    for clips in [1usize, 3] {
        let config = tiny(&manifest, &format!("val_clips = {clips}"), "", REGRESSION);
        let run_dir = tempfile::tempdir().unwrap();
        let mut val_batches = 0;
        train(&config, run_dir.path(), false, &mut |e| {
            if let TrainEvent::Prepared { val_batches: v, .. } = e {
                val_batches = v;
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        // 3 validation studies × `clips` clips in batches of 4.
        assert_eq!(val_batches, (3 * clips).div_ceil(4));
        let metrics = std::fs::read_to_string(run_dir.path().join("metrics.csv")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let m = bundle::export(run_dir.path(), out.path()).unwrap();
        let recorded = m.validation.metrics["val_mae"].unwrap();
        // `predict --max-clips k` picks the same evenly spaced starts and averages them.
        let (predicted, _) = predicted_val_mae(out.path(), &manifest, Some(clips));
        assert!(
            (predicted - recorded).abs() < 1e-3,
            "{clips} clips: predict gives MAE {predicted}, validation recorded {recorded}"
        );
        runs.push(metrics);
    }
    // Validation changes nothing in training: the training columns are the same …
    for name in ["lr", "train_loss", "train_mae", "train_rmse"] {
        assert_eq!(column(&runs[0], name), column(&runs[1], name), "{name}");
    }
    // … while the validation columns see different clips.
    assert_ne!(column(&runs[0], "val_mae"), column(&runs[1], "val_mae"));
}

/// Every float parameter of a module, as bit patterns.
#[derive(Default)]
struct Params(Vec<u32>);

impl ModuleVisitor for Params {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let values = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        self.0.extend(values.into_iter().map(f32::to_bits));
    }
}

/// The model of the run's last checkpoint.
fn checkpoint_model(run: &Path, device: &Device) -> ClinicalModel {
    let state = load_run_state(run).unwrap();
    let bytes = std::fs::read(run.join("checkpoint").join(&state.model_file)).unwrap();
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes)).unwrap();
    state
        .spec
        .init(device)
        .unwrap()
        .try_load_record(record)
        .unwrap()
}

/// Parameters and inference outputs (BatchNorm running statistics included) of a model.
fn fingerprint(model: &ClinicalModel, device: &Device) -> (Vec<u32>, Vec<u32>) {
    let mut params = Params::default();
    model.visit(&mut params);
    let mut rng = Rng::seed_from(99);
    let x: Vec<f32> = (0..2 * 3 * 4 * 16 * 16)
        .map(|_| rng.normal() as f32)
        .collect();
    let x = Tensor::<5>::from_data(TensorData::new(x, [2, 3, 4, 16, 16]), device);
    let out = model
        .forward(x, None)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    (params.0, out.into_iter().map(f32::to_bits).collect())
}

fn stop_at(epoch: usize, batch: usize) -> impl FnMut(TrainEvent<'_>) -> ControlFlow<()> {
    move |e| match e {
        TrainEvent::Batch {
            epoch: ep,
            batch: b,
            ..
        } if ep == epoch && b == batch => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    }
}

#[test]
fn a_run_stopped_inside_epochs_resumes_to_the_same_weights_and_metrics() {
    let data = tempfile::tempdir().unwrap();
    let manifest = cohort(data.path(), 15, 23);
    // 9 training studies in batches of 2: 5 steps per epoch, 15 in all. Dropout and the
    // augmentations make every step draw random numbers.
    let mut config = tiny(&manifest, "", "dropout = 0.2", REGRESSION);
    config.training.epochs = 3;
    config.training.batch_size = 2;
    let device = Device::flex();

    // The reference: uninterrupted, no checkpoints inside epochs.
    let a = tempfile::tempdir().unwrap();
    let reference = run(&config, a.path());
    let reference_model = fingerprint(&checkpoint_model(a.path(), &device), &device);

    // Checkpoints every 3 steps (3, 6, 9, 12; 5, 10 and 15 end epochs).
    let mut config = config.clone();
    config.training.checkpoint_every_steps = Some(3);
    let b = tempfile::tempdir().unwrap();
    // Stopped after step 8 (epoch 2, batch 3): the checkpoint of step 6 (epoch 2, batch 1)
    // is on disk, steps 7 and 8 are lost.
    let outcome = train(&config, b.path(), false, &mut stop_at(2, 3)).unwrap();
    assert!(outcome.interrupted);
    let state = load_run_state(b.path()).unwrap();
    assert_eq!((state.epochs_done, state.global_step), (1, 6));
    let partial = state.partial.as_ref().expect("a checkpoint inside epoch 2");
    assert_eq!((partial.epoch, partial.batches_done), (1, 1));
    assert_eq!(partial.outputs.len(), 2);
    let mut files: Vec<String> = std::fs::read_dir(b.path().join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "model-0002-step00000006.bpk",
            "optim-0002-step00000006.bpk",
            "state.json"
        ]
    );
    // Resumed, then stopped again after step 14 (epoch 3, batch 4; checkpoint of step 12).
    let outcome = train(&config, b.path(), true, &mut stop_at(3, 4)).unwrap();
    assert!(outcome.interrupted);
    let state = load_run_state(b.path()).unwrap();
    assert_eq!((state.epochs_done, state.global_step), (2, 12));
    assert_eq!(state.partial.as_ref().map(|p| p.batches_done), Some(2));
    // Resumed to the end.
    let outcome = train(&config, b.path(), true, &mut |_| ControlFlow::Continue(())).unwrap();
    assert!(!outcome.interrupted);
    assert_eq!(outcome.epochs_done, 3);
    let resumed = std::fs::read_to_string(b.path().join("metrics.csv")).unwrap();
    assert_eq!(
        reference, resumed,
        "resumed run equals the uninterrupted one"
    );
    let state = load_run_state(b.path()).unwrap();
    assert_eq!(state.global_step, 15);
    assert!(state.partial.is_none());
    let resumed_model = fingerprint(&checkpoint_model(b.path(), &device), &device);
    assert!(
        reference_model.0 == resumed_model.0,
        "parameters differ from the uninterrupted run's"
    );
    assert!(
        reference_model.1 == resumed_model.1,
        "inference outputs differ from the uninterrupted run's"
    );
    assert!(
        !b.path()
            .join("checkpoint/model-0003-step00000012.bpk")
            .exists()
    );
}

/// The metadata table `bedside curate` writes, as CSV and as Parquet (its own writer), for
/// the arrays of `manifest`, keyed by a made-up input hash; plus the label sheet.
fn curate_tables(dir: &Path, manifest: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use bedside_curate::parquet_table::write_records;
    use bedside_curate::pipeline::TABLE_COLUMNS;
    let text = std::fs::read_to_string(manifest).unwrap();
    let at = |name: &str| TABLE_COLUMNS.iter().position(|c| *c == name).unwrap();
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut labels = String::from("input_sha256,study_id,split,label,ef,time,event,sex,age\n");
    for (i, line) in text.lines().skip(1).enumerate() {
        let c: Vec<&str> = line.split(',').collect();
        let sha = format!("{:064x}", 7919 * i + 1);
        let mut r = vec![String::new(); TABLE_COLUMNS.len()];
        r[at("output")] = format!("dicom/{}.dcm", c[0]);
        r[at("input_sha256")] = sha.clone();
        r[at("patient_id")] = format!("P{i}");
        r[at("study_date")] = if i % 3 == 0 {
            String::new()
        } else {
            "20240229".into()
        };
        r[at("modality")] = "US".into();
        r[at("rows")] = "20".into();
        r[at("columns")] = "24".into();
        r[at("frames")] = FRAMES.to_string();
        r[at("frame_time_ms")] = (1000.0f64 / 30.0).to_string();
        r[at("pixel_sha256")] = "ab".repeat(32);
        r[at("array")] = c[1].to_string();
        r[at("array_frames")] = FRAMES.to_string();
        r[at("curated_at_version")] = "0.1.0".into();
        records.push(r);
        labels.push_str(&format!("{sha},{},{}\n", c[0], c[2..].join(",")));
    }
    // One array without a label row.
    let mut extra = records[0].clone();
    extra[at("input_sha256")] = "f".repeat(64);
    records.push(extra);
    let csv_path = dir.join("metadata.csv");
    let mut w = csv::Writer::from_path(&csv_path).unwrap();
    w.write_record(TABLE_COLUMNS).unwrap();
    for r in &records {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let parquet_path = dir.join("metadata.parquet");
    write_records(&parquet_path, &records).unwrap();
    let labels_path = dir.join("labels.csv");
    std::fs::write(&labels_path, labels).unwrap();
    (csv_path, parquet_path, labels_path)
}

#[test]
fn curates_parquet_metadata_table_joins_and_trains_like_its_csv() {
    let data = tempfile::tempdir().unwrap();
    let manifest = cohort(data.path(), 15, 24);
    let (csv_path, parquet_path, labels) = curate_tables(data.path(), &manifest);
    let key = "input_sha256";
    let from_csv = load_table(&csv_path, Some(&labels), key).unwrap();
    let from_parquet = load_table(&parquet_path, Some(&labels), key).unwrap();
    assert_eq!(from_parquet.header, from_csv.header);
    assert_eq!(from_parquet.rows, from_csv.rows);
    assert_eq!((from_parquet.unlabelled, from_csv.unlabelled), (1, 1));
    assert_eq!(from_parquet.rows.len(), 15);
    // Typed cells read back as curate's CSV text: a date, a double, a null integer.
    assert_eq!(from_parquet.cell(1, "study_date"), Some("20240229"));
    assert_eq!(from_parquet.cell(0, "study_date"), Some(""));
    assert_eq!(
        from_parquet.cell(0, "frame_time_ms"),
        Some("33.333333333333336")
    );
    assert_eq!(from_parquet.cell(0, "instance_number"), Some(""));

    let config = |index: &Path| {
        let mut c = tiny(
            index,
            &format!("labels = \"{}\"\njoin_key = \"{key}\"", labels.display()),
            "",
            "",
        );
        c.training.epochs = 1;
        c
    };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let with_parquet = run(&config(&parquet_path), a.path());
    let with_csv = run(&config(&csv_path), b.path());
    assert_eq!(with_parquet, with_csv);
    assert_eq!(with_parquet.lines().count(), 2);
}

#[test]
fn a_pyarrow_parquet_manifest_reads_as_the_text_of_its_csv() {
    // Written by tools/python/make_parquet_manifest_fixture.py (pyarrow 21): string,
    // dictionary-encoded string, int64, double, float, bool, nullable int32 and string,
    // date32 columns.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let parquet = fixtures.join("manifest_pyarrow.parquet");
    let p = load_table(&parquet, None, "study_id").unwrap();
    let c = load_table(&fixtures.join("manifest_pyarrow.csv"), None, "study_id").unwrap();
    assert_eq!(p.header, c.header);
    assert_eq!(p.rows, c.rows);
    assert_eq!(p.cell(1, "split"), Some("val"));
    assert_eq!(p.cell(1, "ef"), Some("0.3333333333333333"));
    assert_eq!(p.cell(2, "ef"), Some("62"));
    assert_eq!(p.cell(0, "score32"), Some("0.1"));
    assert_eq!(p.cell(1, "event"), Some("false"));
    assert_eq!(p.cell(1, "age"), Some(""));
    assert_eq!(p.cell(0, "visit"), Some("20240229"));
    assert_eq!(p.cell(1, "visit"), Some("19691231"));
    assert_eq!(p.cell(0, "big"), Some("9007199254740993"));
    assert_eq!(p.cell(1, "note"), Some("ü,\"q\""));

    let columns = ManifestColumns {
        class: Some("label".into()),
        value: Some("ef".into()),
        time: Some("time".into()),
        event: Some("event".into()),
        covariates: vec!["score32".into()],
        groups: vec!["sex".into()],
        ..ManifestColumns::default()
    };
    let m = p.manifest(columns.clone()).unwrap();
    assert_eq!(m.studies, c.manifest(columns).unwrap().studies);
    let s = &m.studies[1];
    assert_eq!(
        (s.class, s.value, s.time, s.event),
        (Some(1), Some(1.0 / 3.0), Some(200.0), Some(false))
    );
    assert_eq!(s.covariates, [2.5]);
    assert_eq!(s.groups, [""]);
    assert!(s.array.ends_with("rgb_u8.npy"));
    // A null where a number is needed names the row and the column.
    let err = p
        .manifest(ManifestColumns {
            covariates: vec!["age".into()],
            ..ManifestColumns::default()
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 2") && err.contains("`age`"), "{err}");

    // As the label sheet of a CSV array index.
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index.csv");
    std::fs::write(&index, "study_id,site\nS3,b\nS1,a\nS9,z\n").unwrap();
    let joined = load_table(&index, Some(&parquet), "study_id").unwrap();
    assert_eq!(joined.unlabelled, 1);
    assert_eq!(joined.header.last().map(String::as_str), Some("site"));
    assert_eq!(joined.rows.len(), 2);
    let mut first = c.rows[2].clone();
    first.push("b".into());
    assert_eq!(joined.rows[0], first);

    // Not Parquet at all: the reader says so.
    let fake = dir.path().join("fake.parquet");
    std::fs::write(&fake, "study_id,array\n").unwrap();
    let err = load_table(&fake, None, "study_id").unwrap_err().to_string();
    assert!(
        err.contains("fake.parquet") && err.contains("Parquet"),
        "{err}"
    );
}
