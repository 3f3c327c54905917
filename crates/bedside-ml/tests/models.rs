#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Model behaviour: the frame baseline's pooling, training steps on the autodiff device,
//! configuration errors.

use bedside_ml::frame_cnn::{FrameCnnConfig, TemporalPooling};
use bedside_ml::heads::{LateFusionConfig, Task};
use bedside_ml::loss::classification::cross_entropy;
use bedside_ml::loss::survival::{CoxTies, cox_loss};
use bedside_ml::video::{VideoArch, VideoResNetConfig};
use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};

fn clip(values_seed: u64, shape: [usize; 5], device: &Device) -> Tensor<5> {
    let mut rng = bedside_core::rng::Rng::seed_from(values_seed);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

#[test]
fn frame_cnn_mean_pooling_equals_average_of_single_frame_embeddings() {
    let device = Device::flex();
    let model = FrameCnnConfig::new(3)
        .with_widths(vec![4, 8, 8])
        .init(&device)
        .unwrap();
    let x = clip(1, [2, 3, 5, 16, 16], &device);
    let pooled = to_vec(model.embed(x.clone()));
    let dim = pooled.len() / 2;
    let mut averaged = vec![0.0f32; pooled.len()];
    for t in 0..5 {
        let frame = x.clone().slice([0..2, 0..3, t..t + 1, 0..16, 0..16]);
        for (a, v) in averaged.iter_mut().zip(to_vec(model.embed(frame))) {
            *a += v / 5.0;
        }
    }
    for (p, a) in pooled.iter().zip(&averaged) {
        assert!((p - a).abs() < 1e-5, "{p} vs {a}");
    }
    assert_eq!(dim, 8);
    // Max pooling: the clip embedding is the element-wise max over frames.
    let model = FrameCnnConfig::new(3)
        .with_widths(vec![4, 8])
        .with_pooling(TemporalPooling::Max)
        .init(&device)
        .unwrap();
    let per_frame = to_vec(model.frame_embeddings(x.clone())); // [2, 5, 8]
    let pooled = to_vec(model.embed(x));
    for b in 0..2 {
        for c in 0..8 {
            let max = (0..5)
                .map(|t| per_frame[(b * 5 + t) * 8 + c])
                .fold(f32::MIN, f32::max);
            assert_eq!(pooled[b * 8 + c], max);
        }
    }
}

#[test]
fn r2plus1d_trains_on_the_autodiff_device() {
    r2plus1d_trains(bedside_ml::video::NormKind::Batch);
}

#[test]
fn r2plus1d_with_group_norm_trains_on_the_autodiff_device() {
    r2plus1d_trains(bedside_ml::video::NormKind::Group);
}

fn r2plus1d_trains(norm: bedside_ml::video::NormKind) {
    let device = Device::flex().autodiff();
    let mut model = VideoResNetConfig::new(VideoArch::R2Plus1d18)
        .with_width(0.0625)
        .with_layers([1, 1, 1, 1])
        .with_num_classes(2)
        .with_norm(norm)
        .with_norm_groups(2)
        .init(&device)
        .unwrap();
    let x = clip(7, [4, 3, 4, 16, 16], &device);
    let labels = [0usize, 1, 1, 0];
    let mut optim = AdamConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..8 {
        let loss = cross_entropy(model.forward(x.clone()), &labels).unwrap();
        losses.push(to_vec(loss.clone())[0]);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    assert!(
        losses[7] < 0.5 * losses[0],
        "loss should fall on a fixed batch: {losses:?}"
    );
    // The trained weights run on the plain (inference) device too.
    let inference = model.valid();
    let logits = inference.forward(clip(7, [1, 3, 4, 16, 16], &Device::flex()));
    assert_eq!(logits.dims(), [1, 2]);
}

#[test]
fn cox_head_with_late_fusion_sends_gradients_to_the_backbone() {
    let device = Device::flex().autodiff();
    let backbone = VideoResNetConfig::new(VideoArch::Mc3_18)
        .with_width(0.0625)
        .with_layers([1, 1, 1, 1])
        .init(&device)
        .unwrap();
    let head = LateFusionConfig::new(backbone.embedding_dim(), 2, Task::Cox.output_dim())
        .with_hidden_dim(8)
        .init(&device);
    let x = clip(3, [4, 3, 4, 16, 16], &device);
    let tabular = Tensor::<2>::from_data(
        TensorData::new(vec![0.1f32, -1.0, 0.4, 0.3, -0.2, 0.8, 1.1, 0.0], [4, 2]),
        &device,
    );
    let risk = head.forward(backbone.embed(x), tabular).reshape([4]);
    let loss = cox_loss(
        risk,
        &[5.0, 3.0, 3.0, 9.0],
        &[true, true, false, true],
        CoxTies::Efron,
    )
    .unwrap();
    let grads = loss.backward();
    let stem_grad = backbone.stem.conv1.weight.grad(&grads).unwrap();
    assert!(to_vec(stem_grad.abs().sum())[0] > 0.0);
}

#[test]
fn invalid_configs_are_rejected_with_a_message() {
    let device = Device::flex();
    let err = VideoResNetConfig::new(VideoArch::R3d18)
        .with_width(0.0)
        .init(&device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("width"), "{err}");
    let err = VideoResNetConfig::new(VideoArch::R3d18)
        .with_layers([2, 0, 2, 2])
        .init(&device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("at least one block"), "{err}");
    assert!(VideoArch::from_torchvision_name("r2plus1d_18").is_ok());
    assert!(VideoArch::from_torchvision_name("resnet50").is_err());
    assert!(
        FrameCnnConfig::new(2)
            .with_widths(vec![])
            .init(&device)
            .is_err()
    );
}

#[test]
fn group_count_is_the_largest_divisor_not_above_the_request() {
    use bedside_ml::video::group_count;
    assert_eq!(group_count(128, 32), 32);
    assert_eq!(group_count(16, 32), 16);
    // The (2+1)D stem at width 0.25 has 11 channels: prime, so one group per channel.
    assert_eq!(group_count(11, 32), 11);
    assert_eq!(group_count(11, 8), 1);
    assert_eq!(group_count(9, 4), 3);
    assert_eq!(group_count(24, 5), 4);
}

#[test]
fn normalize_as_group_norm_matches_burns_group_norm() {
    use bedside_ml::video::normalize;
    use burn::nn::{BatchNormConfig, GroupNormConfig};
    let device = Device::flex();
    for (channels, requested, groups) in [(12usize, 4usize, 4usize), (9, 4, 3), (6, 32, 6)] {
        let mut bn = BatchNormConfig::new(channels).init(&device);
        let gamma: Vec<f32> = (0..channels).map(|c| 0.5 + 0.1 * c as f32).collect();
        let beta: Vec<f32> = (0..channels).map(|c| 0.3 - 0.05 * c as f32).collect();
        bn.gamma =
            burn::module::Param::from_data(TensorData::new(gamma.clone(), [channels]), &device);
        bn.beta =
            burn::module::Param::from_data(TensorData::new(beta.clone(), [channels]), &device);
        let mut reference = GroupNormConfig::new(groups, channels).init(&device);
        reference.gamma = Some(burn::module::Param::from_data(
            TensorData::new(gamma, [channels]),
            &device,
        ));
        reference.beta = Some(burn::module::Param::from_data(
            TensorData::new(beta, [channels]),
            &device,
        ));
        // Shifted and scaled so that the statistics matter.
        let x = clip(11, [3, channels, 2, 5, 4], &device)
            .mul_scalar(3.0)
            .add_scalar(1.5);
        let ours = to_vec(normalize(&bn, requested, x.clone()));
        let theirs = to_vec(reference.forward(x));
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-4, "{channels} channels: {a} vs {b}");
        }
    }
}

/// A clip's logits at two brightness gains, from one model: GroupNorm removes the gain (the
/// convolutions have no bias), BatchNorm with running statistics does not.
fn logits_under_gains(norm: bedside_ml::video::NormKind, gains: [f32; 2]) -> [Vec<f32>; 2] {
    let device = Device::flex();
    let mut model = VideoResNetConfig::new(VideoArch::R2Plus1d18)
        .with_width(0.125)
        .with_layers([1, 1, 1, 1])
        .with_num_classes(3)
        .with_norm(norm)
        .with_norm_groups(4)
        .init(&device)
        .unwrap();
    // Non-trivial running statistics, as after training.
    model.stem.bn1.running_mean = burn::module::RunningState::new(Tensor::<1>::from_data(
        TensorData::new(vec![0.2f32; 6], [6]),
        &device,
    ));
    let x = clip(5, [2, 3, 4, 16, 16], &device);
    gains.map(|gain| to_vec(model.forward(x.clone().mul_scalar(gain))))
}

#[test]
fn group_norm_logits_ignore_a_per_clip_gain_and_batch_norm_logits_do_not() {
    use bedside_ml::video::NormKind;
    let [base, brighter] = logits_under_gains(NormKind::Group, [1.0, 1.25]);
    for (a, b) in base.iter().zip(&brighter) {
        assert!((a - b).abs() < 1e-4, "GroupNorm: {a} vs {b}");
    }
    let [base, brighter] = logits_under_gains(NormKind::Batch, [1.0, 1.25]);
    let largest = base
        .iter()
        .zip(&brighter)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(largest > 1e-3, "BatchNorm logits should move: {largest}");
}

#[test]
fn group_norm_training_output_does_not_depend_on_the_rest_of_the_batch() {
    use bedside_ml::video::NormKind;
    let device = Device::flex().autodiff();
    for (norm, independent) in [(NormKind::Group, true), (NormKind::Batch, false)] {
        let model = FrameCnnConfig::new(2)
            .with_widths(vec![4, 8])
            .with_norm(norm)
            .with_norm_groups(2)
            .init(&device)
            .unwrap();
        let a = clip(21, [1, 3, 2, 16, 16], &device);
        let batch = Tensor::cat(vec![a.clone(), clip(22, [3, 3, 2, 16, 16], &device)], 0);
        let alone = to_vec(model.forward(a));
        let together = to_vec(model.forward(batch));
        let gap = alone
            .iter()
            .zip(&together[..2])
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert_eq!(gap < 1e-5, independent, "{norm:?}: gap {gap}");
    }
}

#[test]
fn group_norm_models_load_torchvision_batch_norm_keys() {
    use bedside_ml::video::NormKind;
    use bedside_ml::weights::{LoadMode, WeightSource, load_torchvision_video};
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/r2plus1d_w16.safetensors");
    let device = Device::flex();
    let model = VideoResNetConfig::new(VideoArch::R2Plus1d18)
        .with_width(1.0 / 16.0)
        .with_num_classes(5)
        .with_norm(NormKind::Group)
        .init(&device)
        .unwrap();
    let (model, report) =
        load_torchvision_video(model, &WeightSource::File(path), LoadMode::Strict).unwrap();
    assert!(report.is_clean(), "{report}");
    let logits = to_vec(model.forward(clip(3, [1, 3, 4, 24, 24], &device)));
    assert!(logits.iter().all(|v| v.is_finite()));
}
