#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Parity with torchvision: same weights, same input, logits equal to 1e-4.
//!
//! Fixtures come from `tools/python/make_parity_fixture.py`:
//! - full-size r2plus1d_18 / r3d_18 / mc3_18 whose parameters and input are filled from an
//!   integer hash (re-implemented below), so only torchvision's keys, shapes and logits are
//!   stored;
//! - width/16 variants with random weights stored as real state_dicts (`.safetensors`, `.pt`).

use std::path::PathBuf;

use bedside_ml::video::{VideoArch, VideoResNetConfig};
use bedside_ml::weights::{
    LoadMode, WeightSource, load_state_dict, load_torchvision_video, torchvision_video_key,
};
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn name_seed(name: &str) -> u64 {
    name.bytes()
        .enumerate()
        .map(|(i, b)| (i as u64 + 1) * b as u64)
        .sum::<u64>()
        % 1_000_003
}

fn formula_uniform(name: &str, n: usize) -> Vec<f64> {
    let base = name_seed(name) << 32;
    (0..n as u64)
        .map(|k| (splitmix64(k + base) >> 11) as f64 / (1u64 << 53) as f64)
        .collect()
}

fn formula_value(name: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product::<usize>().max(1);
    let u = formula_uniform(name, n);
    let v: Vec<f64> = if name.ends_with("running_var") {
        u.iter().map(|u| 0.5 + u).collect()
    } else if name.ends_with("running_mean") || name.ends_with(".bias") {
        u.iter().map(|u| 0.2 * (2.0 * u - 1.0)).collect()
    } else if shape.len() == 1 {
        u.iter().map(|u| 0.8 + 0.4 * u).collect()
    } else {
        let fan_in = shape[1..].iter().product::<usize>() as f64;
        let bound = (3.0 / fan_in).sqrt();
        u.iter().map(|u| (2.0 * u - 1.0) * bound).collect()
    };
    v.into_iter().map(|x| x as f32).collect()
}

/// Serialise `(name, shape, f32 values)` as SafeTensors bytes.
fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape, values) in tensors {
        let end = offset + values.len() * 4;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    for (_, _, values) in tensors {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn formula_input(name: &str, shape: [usize; 5], device: &Device) -> Tensor<5> {
    let n = shape.iter().product();
    let values: Vec<f32> = formula_uniform(name, n)
        .iter()
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max)
}

fn shape5(v: &Value) -> [usize; 5] {
    let s: Vec<usize> = serde_json::from_value(v.clone()).unwrap();
    [s[0], s[1], s[2], s[3], s[4]]
}

fn full_size_parity(arch: VideoArch) {
    full_size_parity_on(arch, &Device::flex());
}

fn full_size_parity_on(arch: VideoArch, device: &Device) {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("formula_logits.json")).unwrap(),
    )
    .unwrap();
    let entry = &fixture["models"][arch.torchvision_name()];
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = entry["state_dict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            let name = kv[0].as_str().unwrap().to_string();
            let shape: Vec<usize> = serde_json::from_value(kv[1].clone()).unwrap();
            let values = formula_value(&name, &shape);
            (name, shape, values)
        })
        .collect();
    let model = VideoResNetConfig::new(arch).init(device).unwrap();
    let source = WeightSource::SafetensorsBytes(safetensors_bytes(&tensors));
    let (model, report) = load_torchvision_video(model, &source, LoadMode::Strict).unwrap();
    assert_eq!(report.applied.len(), tensors.len(), "{report}");
    let input = formula_input("input", shape5(&fixture["input"]["shape"]), device);
    let got = to_vec(model.forward(input));
    let want: Vec<f64> = serde_json::from_value(entry["logits"].clone()).unwrap();
    let diff = max_abs_diff(&got, &want);
    println!(
        "{}: max |burn - torchvision| = {diff:.3e} over {} logits",
        arch.torchvision_name(),
        want.len()
    );
    assert!(diff < 1e-4, "max abs diff {diff}");
}

#[test]
fn r2plus1d_18_full_size_matches_torchvision() {
    full_size_parity(VideoArch::R2Plus1d18);
}

/// The same fixture through libtorch (`--features tch`).
#[cfg(feature = "tch")]
#[test]
fn r2plus1d_18_full_size_matches_torchvision_on_tch() {
    let device = bedside_ml::backend::BackendKind::Tch.device().unwrap();
    full_size_parity_on(VideoArch::R2Plus1d18, &device);
}

#[cfg(feature = "tch")]
#[test]
fn r3d_18_full_size_matches_torchvision_on_tch() {
    let device = bedside_ml::backend::BackendKind::Tch.device().unwrap();
    full_size_parity_on(VideoArch::R3d18, &device);
}

#[test]
fn r3d_18_full_size_matches_torchvision() {
    full_size_parity(VideoArch::R3d18);
}

#[test]
fn mc3_18_full_size_matches_torchvision() {
    full_size_parity(VideoArch::Mc3_18);
}

fn small_parity(name: &str, arch: VideoArch) {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("small_models.json")).unwrap(),
    )
    .unwrap();
    let path = fixtures().join(fixture["models"][name]["file"].as_str().unwrap());
    small_parity_from(name, arch, &WeightSource::File(path), &|k| {
        torchvision_video_key(k)
    });
}

fn small_parity_from(
    name: &str,
    arch: VideoArch,
    source: &WeightSource,
    rename: &dyn Fn(&str) -> String,
) {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("small_models.json")).unwrap(),
    )
    .unwrap();
    let entry = &fixture["models"][name];
    let layers: Vec<usize> = serde_json::from_value(entry["layers"].clone()).unwrap();
    let device = Device::flex();
    let model = VideoResNetConfig::new(arch)
        .with_width(entry["width"].as_f64().unwrap())
        .with_layers([layers[0], layers[1], layers[2], layers[3]])
        .with_num_classes(entry["num_classes"].as_u64().unwrap() as usize)
        .init(&device)
        .unwrap();
    let (model, report) = load_state_dict(model, source, rename, LoadMode::Strict).unwrap();
    assert!(report.is_clean());
    assert!(!report.ignored.is_empty(), "num_batches_tracked are listed");
    let input = formula_input("small_input", shape5(&fixture["input"]["shape"]), &device);
    let got = to_vec(model.forward(input));
    let want: Vec<f64> = serde_json::from_value::<Vec<Vec<f64>>>(entry["logits"].clone())
        .unwrap()
        .concat();
    let diff = max_abs_diff(&got, &want);
    println!("{name}: max |burn - torchvision| = {diff:.3e}");
    assert!(diff < 1e-4, "max abs diff {diff}");
}

#[test]
fn r2plus1d_width16_safetensors_matches_torchvision() {
    small_parity("r2plus1d_w16", VideoArch::R2Plus1d18);
}

#[test]
fn r3d_width16_depth1_pt_matches_torchvision() {
    small_parity("r3d_w16_d1", VideoArch::R3d18);
}

#[test]
fn mc3_width16_depth1_safetensors_matches_torchvision() {
    small_parity("mc3_w16_d1", VideoArch::Mc3_18);
}

#[test]
fn mc3_training_checkpoint_with_prefix_matches_torchvision() {
    let source = WeightSource::PytorchCheckpoint {
        path: fixtures().join("mc3_w16_d1_ckpt.pt"),
        key: "state_dict".into(),
    };
    small_parity_from("mc3_w16_d1", VideoArch::Mc3_18, &source, &|k| {
        torchvision_video_key(k.strip_prefix("model.").unwrap_or(k))
    });
}

#[test]
fn strict_load_reports_mismatched_missing_and_unexpected_keys() {
    let device = Device::flex();
    // The width/16 R(2+1)D file loaded into a width/8 model: every shape differs.
    let model = VideoResNetConfig::new(VideoArch::R2Plus1d18)
        .with_width(0.125)
        .with_num_classes(5)
        .init(&device)
        .unwrap();
    let source = WeightSource::File(fixtures().join("r2plus1d_w16.safetensors"));
    let err = load_torchvision_video(model, &source, LoadMode::Strict)
        .expect_err("strict load must fail");
    let message = err.to_string();
    assert!(message.contains("shape of stem.0.weight"), "{message}");

    // A depth-1 model sees the second blocks as unexpected; an R3D model misses the
    // (2+1)D keys and its own full convolutions are missing.
    let model = VideoResNetConfig::new(VideoArch::R2Plus1d18)
        .with_width(0.0625)
        .with_layers([1, 1, 1, 1])
        .with_num_classes(5)
        .init(&device)
        .unwrap();
    let (_, report) = load_torchvision_video(model, &source, LoadMode::Lenient).unwrap();
    assert!(report.missing.is_empty());
    assert!(report.mismatched.is_empty());
    assert!(
        report
            .unexpected
            .iter()
            .any(|k| k == "layer1.1.conv1.0.0.weight"),
        "{report}"
    );
    assert!(report.unexpected.iter().all(|k| k.contains(".1.")));

    let model = VideoResNetConfig::new(VideoArch::R3d18)
        .with_width(0.0625)
        .with_num_classes(5)
        .init(&device)
        .unwrap();
    let (_, report) = load_torchvision_video(model, &source, LoadMode::Lenient).unwrap();
    assert!(
        report
            .missing
            .iter()
            .any(|k| k == "layer1.0.conv1.conv.full.weight"),
        "{report}"
    );
    assert!(
        report
            .unexpected
            .iter()
            .any(|k| k == "layer1.0.conv1.0.3.weight")
    );
}
