#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `model.init_from`: a run starts from another task's exported backbone and keeps its own
//! head; a bundle of another shape is refused before training.

use std::ops::ControlFlow;
use std::path::Path;

use bedside_core::npy::{Dtype, write_npy};
use bedside_ml::bundle;
use bedside_ml::train::config::ExperimentConfig;
use bedside_ml::train::train;
use burn::tensor::Device;

fn cohort(dir: &Path) -> std::path::PathBuf {
    let mut csv = String::from("study_id,array,split,label,ef\n");
    for i in 0..12usize {
        let label = i % 2;
        let data: Vec<u8> = (0..6 * 16 * 16)
            .map(|k| ((k * (label + 1) * 7 + i * 13) % 251) as u8)
            .collect();
        let name = format!("v{i:02}.npy");
        let mut file = std::fs::File::create(dir.join(&name)).unwrap();
        write_npy(&mut file, Dtype::U8, &[6, 16, 16], &data).unwrap();
        let split = if i % 4 == 0 { "val" } else { "train" };
        csv.push_str(&format!(
            "S{i:02},{name},{split},{label},{}\n",
            30 + 10 * label
        ));
    }
    let path = dir.join("manifest.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn config(manifest: &Path, width: f64, extra: &str) -> ExperimentConfig {
    let text = format!(
        r#"
seed = 3
[data]
manifest = "{}"
clip_length = 4
period = 1
size = 16
[data.columns]
class = "label"
value = "ef"
[model]
width = {width}
layers = [1, 1, 1, 1]
{extra}
[training]
epochs = 1
batch_size = 4
[optimizer]
kind = "sgd"
lr = 1e-12
"#,
        manifest.display()
    );
    bedside_core::config::from_str(&text, "test config").unwrap()
}

fn train_and_export(config: &ExperimentConfig, root: &Path, name: &str) -> std::path::PathBuf {
    let run = root.join(format!("run-{name}"));
    train(config, &run, false, &mut |_| ControlFlow::Continue(())).unwrap();
    let out = root.join(format!("bundle-{name}"));
    bundle::export(&run, &out).unwrap();
    out
}

fn values(t: burn::tensor::Tensor<4>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn a_run_starts_from_another_bundles_backbone_with_a_fresh_head() {
    let data = tempfile::tempdir().unwrap();
    let manifest = cohort(data.path());
    let root = tempfile::tempdir().unwrap();
    let source_config = config(&manifest, 0.0625, "[task]\nkind = \"regression\"\n");
    let source = train_and_export(&source_config, root.path(), "ef");

    let extra = format!(
        "init_from = \"{}\"\n[task]\nkind = \"evidential\"\n",
        source.display()
    );
    let started = train_and_export(&config(&manifest, 0.0625, &extra), root.path(), "class");
    // A control run with no starting point and another seed (the same seed would initialise
    // the same stem).
    let mut control = config(&manifest, 0.0625, "[task]\nkind = \"evidential\"\n");
    control.seed = 4;
    let fresh = train_and_export(&control, root.path(), "fresh");

    let device = Device::flex();
    let (s, c, f) = (
        bundle::load(&source, &device).unwrap().model,
        bundle::load(&started, &device).unwrap().model,
        bundle::load(&fresh, &device).unwrap().model,
    );
    // With a learning rate of 1e-12 one epoch leaves the convolutions where they started.
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6);
    let stem = |m: &bedside_ml::train::model::ClinicalModel| {
        let backbone = m.backbone.as_ref().expect("a video ResNet");
        values(backbone.stem.conv1.weight.val().sum_dim(4).squeeze_dim(4))
    };
    assert!(
        close(&stem(&s), &stem(&c)),
        "stem not copied from the bundle"
    );
    assert!(
        !close(&stem(&f), &stem(&c)),
        "the control run starts elsewhere"
    );
    // The head is the task's own: 1 value for the source, 2 classes here.
    let fc_width = |m: &bedside_ml::train::model::ClinicalModel| {
        m.backbone
            .as_ref()
            .expect("a video ResNet")
            .fc
            .weight
            .val()
            .dims()[1]
    };
    assert_eq!(fc_width(&s), 1);
    assert_eq!(fc_width(&c), 2);
}

#[test]
fn a_bundle_of_another_width_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let manifest = cohort(data.path());
    let root = tempfile::tempdir().unwrap();
    let source = train_and_export(
        &config(&manifest, 0.0625, "[task]\nkind = \"regression\"\n"),
        root.path(),
        "ef",
    );
    let extra = format!(
        "init_from = \"{}\"\n[task]\nkind = \"evidential\"\n",
        source.display()
    );
    let wider = config(&manifest, 0.125, &extra);
    let err = train(&wider, &root.path().join("run-wide"), false, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("model.init_from"), "{err}");
    assert!(err.contains("width"), "{err}");
}

#[test]
fn init_from_and_pretrained_together_are_refused() {
    let text = r#"
[data]
manifest = "m.csv"
[data.columns]
value = "ef"
[model]
pretrained = "k400.pt"
init_from = "bundles/ef"
[task]
kind = "regression"
"#;
    let err = bedside_core::config::from_str::<ExperimentConfig>(text, "test config")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("model.init_from"), "{err:?}");
}
