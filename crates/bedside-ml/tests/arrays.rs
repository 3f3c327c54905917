#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A whole model as named arrays (what a federation exchanges): the seeded initialisation
//! is the same from any data, a run started from arrays starts exactly there, the arrays of
//! a finished run are its checkpoint, and evaluation of arrays equals the run's validation.

use std::ops::ControlFlow;
use std::path::Path;

use bedside_core::npy::{Dtype, write_npy};
use bedside_ml::train::arrays::{NamedArray, StartFrom};
use bedside_ml::train::config::ExperimentConfig;
use bedside_ml::train::{evaluate_arrays, initial_arrays, run_arrays, train_with};

/// Twelve tiny videos whose brightness pattern depends on the label; `shift` changes every
/// pixel so two cohorts share nothing.
fn cohort(dir: &Path, shift: usize) -> std::path::PathBuf {
    let mut csv = String::from("study_id,array,split,label\n");
    for i in 0..12usize {
        let label = i % 2;
        let data: Vec<u8> = (0..6 * 16 * 16)
            .map(|k| ((k * (label + 1) * 7 + i * 13 + shift) % 251) as u8)
            .collect();
        let name = format!("v{i:02}.npy");
        let mut file = std::fs::File::create(dir.join(&name)).unwrap();
        write_npy(&mut file, Dtype::U8, &[6, 16, 16], &data).unwrap();
        let split = if i % 4 == 0 { "val" } else { "train" };
        csv.push_str(&format!("S{i:02},{name},{split},{label}\n"));
    }
    let path = dir.join("manifest.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn config(manifest: &Path, lr: f64) -> ExperimentConfig {
    let text = format!(
        r#"
seed = 5
[data]
manifest = "{}"
clip_length = 4
period = 1
size = 16
val_clips = 2
[data.columns]
class = "label"
[model]
width = 0.0625
layers = [1, 1, 1, 1]
[task]
kind = "classification"
classes = 2
[training]
epochs = 1
batch_size = 4
[optimizer]
kind = "sgd"
lr = {lr}
[schedule]
kind = "constant"
"#,
        manifest.display()
    );
    bedside_core::config::from_str(&text, "test config").unwrap()
}

/// The arrays of a run trained in `run` from `start`.
fn trained_arrays(cfg: &ExperimentConfig, run: &Path, start: &StartFrom) -> Vec<NamedArray> {
    train_with(cfg, run, false, start, &mut |_| ControlFlow::Continue(())).unwrap();
    run_arrays(run, false).unwrap().0
}

fn find<'a>(arrays: &'a [NamedArray], name: &str) -> &'a NamedArray {
    arrays.iter().find(|a| a.name == name).unwrap()
}

#[test]
fn named_arrays_round_trip_through_training_and_evaluation() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let cfg_a = config(&cohort(a.path(), 0), 0.05);
    let cfg_b = config(&cohort(b.path(), 100), 0.05);

    // The same seed gives the same initial weights whatever the site's data.
    let init_a = initial_arrays(&cfg_a).unwrap();
    let init_b = initial_arrays(&cfg_b).unwrap();
    assert_eq!(init_a, init_b);
    assert!(init_a.iter().any(|x| x.name.ends_with("running_var")));
    assert!(
        init_a
            .iter()
            .all(|x| x.shape.iter().product::<usize>() == x.data.len())
    );

    // With a vanishing learning rate, a run started from arrays ends with those arrays
    // (BatchNorm running statistics aside, which the forward passes update). The start is
    // shifted away from the seeded initialisation so that ignoring it would show.
    let mut shifted = init_b.clone();
    for x in shifted.iter_mut().filter(|x| !x.name.contains("running_")) {
        for v in x.data.iter_mut() {
            *v = *v * 1.5 + 0.01;
        }
    }
    let frozen = config(&cohort(a.path(), 0), 1e-12);
    let run = a.path().join("run-frozen");
    let start = StartFrom {
        arrays: Some(shifted.clone()),
        ..StartFrom::default()
    };
    train_with(&frozen, &run, false, &start, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let (after, _) = run_arrays(&run, false).unwrap();
    for x in &shifted {
        let y = find(&after, &x.name);
        assert_eq!(x.shape, y.shape, "{}", x.name);
        if !x.name.contains("running_") {
            let worst = x
                .data
                .iter()
                .zip(&y.data)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-6, "{} moved by {worst}", x.name);
        }
    }
    let start = StartFrom {
        arrays: Some(init_b.clone()),
        ..StartFrom::default()
    };

    // Training moves the weights, and evaluating the run's arrays with the run's
    // normalisation reproduces the run's own validation row.
    let run = a.path().join("run-train");
    let outcome = train_with(&cfg_a, &run, false, &start, &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let (trained, norm) = run_arrays(&run, false).unwrap();
    let w = "backbone.fc.weight";
    let moved = trained
        .iter()
        .filter(|t| !t.name.contains("running_"))
        .any(|t| t.data != find(&init_b, &t.name).data);
    assert!(moved, "no weight changed ({w})");
    let evaluation = evaluate_arrays(&cfg_a, &trained, Some(&norm)).unwrap();
    assert_eq!(evaluation.len(), 3);
    assert_eq!(evaluation.outputs.len(), 3);
    let row = outcome.last.unwrap();
    let val_loss = row.get("val_loss").unwrap();
    let loss = evaluation.metric("loss");
    assert!((loss - val_loss).abs() < 1e-6, "{loss} vs {val_loss}");

    // Arrays of another shape are refused with their names.
    let mut wrong = trained.clone();
    wrong.pop();
    let err = evaluate_arrays(&cfg_a, &wrong, Some(&norm)).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

/// Euclidean distance between two models' parameters (BatchNorm running statistics aside).
fn distance(a: &[NamedArray], b: &[NamedArray]) -> f64 {
    a.iter()
        .filter(|x| !x.name.contains("running_"))
        .flat_map(|x| {
            let y = find(b, &x.name);
            x.data
                .iter()
                .zip(&y.data)
                .map(|(p, q)| f64::from(p - q).powi(2))
                .collect::<Vec<_>>()
        })
        .sum::<f64>()
        .sqrt()
}

#[test]
fn fedprox_proximal_term_pulls_local_training_towards_the_global_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&cohort(dir.path(), 0), 0.05);
    cfg.training.epochs = 2;
    let global = initial_arrays(&cfg).unwrap();
    let mut moved = Vec::new();
    for mu in [0.0, 10.0] {
        let run = dir.path().join(format!("run-mu-{mu}"));
        let start = StartFrom {
            arrays: Some(global.clone()),
            proximal_mu: mu,
            ..StartFrom::default()
        };
        let after = trained_arrays(&cfg, &run, &start);
        moved.push(distance(&after, &global));
    }
    // Plain SGD: every step after the first adds lr·μ·(w − w₀) = 0.5·(w − w₀) of pull.
    assert!(moved[0] > 0.0, "plain training did not move");
    assert!(
        moved[1] < 0.8 * moved[0],
        "with μ = 10 the model moved {} from the global one, without {}",
        moved[1],
        moved[0]
    );

    // The term needs a global model to pull towards.
    let start = StartFrom {
        proximal_mu: 0.1,
        ..StartFrom::default()
    };
    let err = train_with(
        &cfg,
        &dir.path().join("run-no-anchor"),
        false,
        &start,
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("proximal"), "{err}");
}

#[test]
fn statistics_only_runs_move_the_running_statistics_and_nothing_else() {
    let a = tempfile::tempdir().unwrap();
    // A large learning rate: any step taken would show.
    let cfg = config(&cohort(a.path(), 0), 0.5);
    let start_arrays = initial_arrays(&cfg).unwrap();
    let refused = train_with(
        &cfg,
        &a.path().join("run-none"),
        false,
        &StartFrom {
            statistics_only: true,
            ..StartFrom::default()
        },
        &mut |_| ControlFlow::Continue(()),
    );
    assert!(refused.is_err());
    let run = a.path().join("run-stats");
    let start = StartFrom {
        arrays: Some(start_arrays.clone()),
        statistics_only: true,
        ..StartFrom::default()
    };
    let after = trained_arrays(&cfg, &run, &start);
    let mut moved = 0;
    for x in &start_arrays {
        let y = find(&after, &x.name);
        if x.name.contains("running_") {
            moved += usize::from(x.data != y.data);
        } else {
            assert_eq!(x.data, y.data, "{} changed", x.name);
        }
    }
    let running = start_arrays
        .iter()
        .filter(|x| x.name.contains("running_"))
        .count();
    assert_eq!(moved, running, "every running statistic should move");
}
