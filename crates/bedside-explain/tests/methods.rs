#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Properties of the methods that do not need Captum: the staged forward equals the model's,
//! Integrated Gradients is complete, SmoothGrad is seeded and reduces to saliency without
//! noise, frame ablation equals whole-frame occlusion, risk targets equal `bedside predict`'s.

use bedside_explain::gradient::{
    Baseline, IgOptions, Quadrature, SmoothGradOptions, integrated_gradients, saliency, smoothgrad,
};
use bedside_explain::occlusion::{FrameFill, OcclusionOptions, frame_ablation, occlusion};
use bedside_explain::study::{ClipResult, StudyAccumulator};
use bedside_explain::{Explainee, Stage, Target};
use bedside_ml::data::clips::{Normalization, VideoArray};
use bedside_ml::loss::evidential::Evidence;
use bedside_ml::train::config::{SurvivalModel, TaskKind};
use bedside_ml::train::model::{InputSpec, ModelSpec, TabularColumn, TaskSpec};
use burn::tensor::{Device, Tensor, TensorData};

fn spec(kind: TaskKind, survival: SurvivalModel, tabular: usize) -> ModelSpec {
    ModelSpec {
        backbone: "r2plus1d_18".into(),
        width: 0.0625,
        layers: [1, 1, 1, 1],
        dropout: 0.3,
        fusion_hidden: 8,
        norm: bedside_ml::video::NormKind::Batch,
        norm_groups: 32,
        task: TaskSpec {
            kind,
            classes: 2,
            survival,
            cuts: vec![1.0, 2.0, 3.0],
            target_mean: 0.0,
            target_std: 1.0,
            evidence: Evidence::Softplus,
        },
        tabular: (0..tabular)
            .map(|i| TabularColumn {
                name: format!("x{i}"),
                mean: 0.0,
                std: 1.0,
            })
            .collect(),
        input: InputSpec {
            clip_length: 4,
            period: 1,
            size: 16,
            channels: 3,
            normalization: Normalization {
                mean: vec![0.0; 3],
                std: vec![1.0; 3],
            },
            resized_copy: None,
        },
    }
}

fn clip(seed: u64) -> VideoArray {
    let mut rng = bedside_core::rng::Rng::seed_from(seed);
    VideoArray {
        channels: 3,
        frames: 4,
        height: 16,
        width: 16,
        data: (0..3 * 4 * 16 * 16).map(|_| rng.normal() as f32).collect(),
    }
}

fn tensor(c: &VideoArray, device: &Device) -> Tensor<5> {
    Tensor::from_data(
        TensorData::new(c.data.clone(), [1, c.channels, c.frames, c.height, c.width]),
        device,
    )
}

fn vec2(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn staged_forward_equals_the_model_forward() {
    let device = Device::flex();
    for tabular in [0, 2] {
        device.seed(5);
        let model = spec(TaskKind::Classification, SurvivalModel::Cox, tabular)
            .init(&device)
            .unwrap();
        let row = vec![0.5f32, -1.0];
        let x = clip(1);
        let cov = (tabular > 0)
            .then(|| Tensor::<2>::from_data(TensorData::new(row.clone(), [1, 2]), &device));
        let want = vec2(model.forward(tensor(&x, &device), cov));
        let explainee =
            Explainee::from_model(&model, (tabular > 0).then(|| row.clone()), &device).unwrap();
        for stage in Stage::ALL {
            let acts = explainee.activations(tensor(&x, &device), stage);
            let got = vec2(explainee.outputs_from(acts, stage));
            assert!(
                max_diff(&got, &want) < 1e-5,
                "{stage:?}: {got:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn risk_targets_equal_the_predicted_risk() {
    let device = Device::flex();
    for survival in [
        SurvivalModel::Cox,
        SurvivalModel::LogisticHazard,
        SurvivalModel::Pmf,
    ] {
        let task = spec(TaskKind::Survival, survival, 0).task;
        let dim = task.output_dim();
        let raw: Vec<f32> = (0..2 * dim).map(|i| (i as f32 * 0.7).sin()).collect();
        let out = Tensor::<2>::from_data(TensorData::new(raw.clone(), [2, dim]), &device);
        let got = Target::Risk(survival)
            .score(out)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        for r in 0..2 {
            let want = task.interpret(&raw[r * dim..(r + 1) * dim])[0];
            assert!((f64::from(got[r]) - want).abs() < 1e-5, "{survival:?}");
        }
    }
}

#[test]
fn integrated_gradients_is_complete() {
    let device = Device::flex();
    device.seed(11);
    let model = spec(TaskKind::Classification, SurvivalModel::Cox, 0)
        .init(&device)
        .unwrap();
    let explainee = Explainee::from_model(&model, None, &device).unwrap();
    let x = clip(2);
    for baseline in [
        Baseline::Zeros,
        Baseline::Mean,
        Baseline::Blurred { sigma: 2.0 },
    ] {
        let options = IgOptions {
            steps: 64,
            quadrature: Quadrature::GaussLegendre,
            baseline: baseline.clone(),
            internal_batch_size: 16,
        };
        let r = integrated_gradients(&explainee, &Target::Probability(1), &x, &options).unwrap();
        let gap = f64::from(r.score - r.baseline_score);
        println!("{baseline:?}: gap {gap:.4e}, delta {:.2e}", r.delta);
        assert!(gap.abs() > 1e-4, "the baseline must change the output");
        // 64 Gauss-Legendre nodes leave a few per cent of quadrature error on the curved path
        // from a blurred baseline; a wrong attribution would miss by the whole gap.
        assert!(
            r.delta.abs() < 0.05 * gap.abs() + 1e-5,
            "{baseline:?}: {}",
            r.delta
        );
    }
}

#[test]
fn smoothgrad_is_seeded_and_reduces_to_saliency_without_noise() {
    let device = Device::flex();
    device.seed(3);
    let model = spec(TaskKind::Regression, SurvivalModel::Cox, 0)
        .init(&device)
        .unwrap();
    let explainee = Explainee::from_model(&model, None, &device).unwrap();
    let x = clip(4);
    let target = Target::Output(0);
    let base = SmoothGradOptions {
        samples: 5,
        noise_level: 0.2,
        seed: 9,
        internal_batch_size: 2,
    };
    let a = smoothgrad(&explainee, &target, &x, &base).unwrap();
    let b = smoothgrad(
        &explainee,
        &target,
        &x,
        &SmoothGradOptions {
            internal_batch_size: 5,
            ..base.clone()
        },
    )
    .unwrap();
    assert!(
        max_diff(&a.data, &b.data) < 1e-6,
        "batching changed the noise"
    );
    let c = smoothgrad(
        &explainee,
        &target,
        &x,
        &SmoothGradOptions {
            seed: 10,
            ..base.clone()
        },
    )
    .unwrap();
    assert!(max_diff(&a.data, &c.data) > 1e-6, "the seed must matter");
    let quiet = smoothgrad(
        &explainee,
        &target,
        &x,
        &SmoothGradOptions {
            noise_level: 0.0,
            ..base
        },
    )
    .unwrap();
    let s = saliency(&explainee, &target, &x, true).unwrap();
    assert!(max_diff(&quiet.data, &s.data) < 1e-6);
}

#[test]
fn frame_ablation_equals_whole_frame_occlusion() {
    let device = Device::flex();
    device.seed(8);
    let model = spec(TaskKind::Classification, SurvivalModel::Cox, 0)
        .init(&device)
        .unwrap();
    let explainee = Explainee::from_model(&model, None, &device).unwrap();
    let x = clip(6);
    let target = Target::Output(1);
    let curve = frame_ablation(&explainee, &target, &x, 1, FrameFill::Zeros, 3).unwrap();
    let occ = occlusion(
        &explainee,
        &target,
        &x,
        &OcclusionOptions {
            window: [3, 1, 16, 16],
            strides: [3, 1, 16, 16],
            baseline: 0.0,
            batch_size: 2,
        },
    )
    .unwrap();
    let plane = 16 * 16;
    for f in 0..4 {
        assert!((occ.data[f * plane] - curve.drop[f]).abs() < 1e-6);
        assert!((occ.data[(2 * 4 + f) * plane + 100] - curve.drop[f]).abs() < 1e-6);
    }
    assert!(curve.drop.iter().any(|d| d.abs() > 1e-6));
}

#[test]
fn study_maps_average_clips_in_video_frames() {
    let mut acc = StudyAccumulator::new(6, 1, 1);
    let clip = |values: Vec<f32>| ClipResult {
        map: VideoArray {
            channels: 1,
            frames: values.len(),
            height: 1,
            width: 1,
            data: values.clone(),
        },
        temporal: values,
        numbers: Default::default(),
    };
    // Two clips of 2 frames, period 2, starting at 0 and 2: frames 0, 2 and 2, 4.
    acc.add(&clip(vec![1.0, 3.0]), 0, 2);
    acc.add(&clip(vec![5.0, 7.0]), 2, 2);
    let study = acc.finish();
    assert_eq!(study.map.data, vec![1.0, 0.0, 4.0, 0.0, 7.0, 0.0]);
    assert_eq!(study.covered, vec![true, false, true, false, true, false]);
    assert_eq!(study.temporal[2], Some(4.0));
    assert_eq!(study.temporal[1], None);
}
