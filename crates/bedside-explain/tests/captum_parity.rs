#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Parity with Captum 0.9 on a fixed-weight 3D network kept as test data.
//!
//! `tools/python/gen_explain_fixtures.py` built a width-1/8, one-block-per-stage torchvision
//! R(2+1)D-18 with random weights and BatchNorm statistics, ran Captum's `Saliency`,
//! `InputXGradient`, `IntegratedGradients` (Gauss–Legendre and trapezoid), `LayerGradCam` +
//! `LayerAttribution.interpolate(…, "trilinear")` on three stages and `Occlusion` on one
//! 8-frame 32×32 clip, and stored the state_dict, the clip and every map. Each map computed
//! here must equal Captum's to 1e-4.

use std::path::PathBuf;

use bedside_explain::gradcam::{GradCamOptions, grad_cam};
use bedside_explain::gradient::{
    Baseline, IgOptions, Quadrature, input_x_gradient, integrated_gradients, saliency,
};
use bedside_explain::occlusion::{OcclusionOptions, occlusion};
use bedside_explain::{Explainee, Stage, Target};
use bedside_ml::data::clips::VideoArray;
use bedside_ml::data::npy::read_npy;
use bedside_ml::video::{VideoArch, VideoResNetConfig};
use bedside_ml::weights::{LoadMode, WeightSource, load_torchvision_video};
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

struct Fixture {
    meta: Value,
    model: Explainee,
    clip: VideoArray,
    target: Target,
}

fn fixture() -> Fixture {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("explain_cases.json")).unwrap(),
    )
    .unwrap();
    let device = Device::flex();
    let m = &meta["model"];
    let layers: Vec<usize> = serde_json::from_value(m["layers"].clone()).unwrap();
    let backbone = VideoResNetConfig::new(VideoArch::R2Plus1d18)
        .with_width(m["width"].as_f64().unwrap())
        .with_layers([layers[0], layers[1], layers[2], layers[3]])
        .with_num_classes(m["num_classes"].as_u64().unwrap() as usize)
        .init(&device)
        .unwrap();
    let source = WeightSource::File(fixtures().join(m["file"].as_str().unwrap()));
    let (backbone, report) =
        load_torchvision_video(backbone, &source, LoadMode::Strict).expect("weights load");
    assert!(report.is_clean(), "{report}");
    let input = read_npy(&fixtures().join("input.npy")).unwrap();
    let [_, c, t, h, w]: [usize; 5] = input.shape.clone().try_into().unwrap();
    let clip = VideoArray {
        channels: c,
        frames: t,
        height: h,
        width: w,
        data: input.data,
    };
    let target = Target::Output(meta["target"].as_u64().unwrap() as usize);
    Fixture {
        meta,
        model: Explainee::from_backbone(backbone, &device),
        clip,
        target,
    }
}

fn expected(f: &Fixture, case: &str) -> Vec<f32> {
    let file = f.meta["cases"][case]["file"].as_str().unwrap();
    read_npy(&fixtures().join(file)).unwrap().data
}

fn assert_close(case: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    let diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    println!("{case}: max |ours − Captum| = {diff:.2e} (max |Captum| = {scale:.3})");
    assert!(scale > 1e-3, "{case}: the reference map is (almost) zero");
    assert!(diff < 1e-4, "{case}: max abs diff {diff}");
}

#[test]
fn logits_match_torchvision() {
    let f = fixture();
    let [c, t, h, w] = [f.clip.channels, f.clip.frames, f.clip.height, f.clip.width];
    let x = Tensor::<5>::from_data(
        TensorData::new(f.clip.data.clone(), [1, c, t, h, w]),
        f.model.device(),
    );
    let got = f
        .model
        .outputs(x)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    let want: Vec<f32> = serde_json::from_value(f.meta["logits"].clone()).unwrap();
    assert_close("logits", &got, &want);
}

#[test]
fn saliency_matches_captum() {
    let f = fixture();
    let got = saliency(&f.model, &f.target, &f.clip, true).unwrap();
    assert_close("saliency", &got.data, &expected(&f, "saliency"));
}

#[test]
fn input_x_gradient_matches_captum() {
    let f = fixture();
    let got = input_x_gradient(&f.model, &f.target, &f.clip).unwrap();
    assert_close(
        "input_x_gradient",
        &got.data,
        &expected(&f, "input_x_gradient"),
    );
}

#[test]
fn integrated_gradients_gauss_legendre_matches_captum() {
    let f = fixture();
    let case = &f.meta["cases"]["ig_gausslegendre"];
    let options = IgOptions {
        steps: case["steps"].as_u64().unwrap() as usize,
        quadrature: Quadrature::parse(case["rule"].as_str().unwrap()).unwrap(),
        baseline: Baseline::Zeros,
        internal_batch_size: case["internal_batch_size"].as_u64().unwrap() as usize,
    };
    let got = integrated_gradients(&f.model, &f.target, &f.clip, &options).unwrap();
    assert_close(
        "ig_gausslegendre",
        &got.attribution.data,
        &expected(&f, "ig_gausslegendre"),
    );
}

#[test]
fn integrated_gradients_trapezoid_constant_baseline_matches_captum() {
    let f = fixture();
    let case = &f.meta["cases"]["ig_trapezoid"];
    let options = IgOptions {
        steps: case["steps"].as_u64().unwrap() as usize,
        quadrature: Quadrature::parse(case["rule"].as_str().unwrap()).unwrap(),
        baseline: Baseline::Constant {
            value: case["baseline"].as_f64().unwrap() as f32,
        },
        // A batch size that does not divide the steps: chunking must not change the result.
        internal_batch_size: 3,
    };
    let got = integrated_gradients(&f.model, &f.target, &f.clip, &options).unwrap();
    assert_close(
        "ig_trapezoid",
        &got.attribution.data,
        &expected(&f, "ig_trapezoid"),
    );
}

#[test]
fn grad_cam_matches_captum_on_three_stages() {
    let f = fixture();
    for case in ["gradcam_layer4", "gradcam_layer3", "gradcam_layer2"] {
        let c = &f.meta["cases"][case];
        let options = GradCamOptions {
            stage: Stage::parse(c["layer"].as_str().unwrap()).unwrap(),
            relu: c["relu"].as_bool().unwrap(),
        };
        let got = grad_cam(&f.model, &f.target, &f.clip, &options).unwrap();
        let coarse: Vec<usize> = serde_json::from_value(c["map_shape"].clone()).unwrap();
        assert_eq!(
            [got.coarse.frames, got.coarse.height, got.coarse.width],
            [coarse[2], coarse[3], coarse[4]],
            "{case}: stage resolution"
        );
        assert_close(case, &got.upsampled.data, &expected(&f, case));
    }
}

#[test]
fn occlusion_matches_captum() {
    let f = fixture();
    let c = &f.meta["cases"]["occlusion"];
    let window: Vec<usize> = serde_json::from_value(c["window"].clone()).unwrap();
    let strides: Vec<usize> = serde_json::from_value(c["strides"].clone()).unwrap();
    let options = OcclusionOptions {
        window: window.try_into().unwrap(),
        strides: strides.try_into().unwrap(),
        baseline: c["baseline"].as_f64().unwrap() as f32,
        batch_size: 16,
    };
    let got = occlusion(&f.model, &f.target, &f.clip, &options).unwrap();
    assert_close("occlusion", &got.data, &expected(&f, "occlusion"));
}
