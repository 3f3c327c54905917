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
    let device = Device::flex().autodiff();
    let mut model = VideoResNetConfig::new(VideoArch::R2Plus1d18)
        .with_width(0.0625)
        .with_layers([1, 1, 1, 1])
        .with_num_classes(2)
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
