//! Load a torchvision video checkpoint strictly and print the logits of one clip.
//!
//! ```sh
//! cargo run --release -p bedside-ml --example load_checkpoint -- \
//!     --arch r2plus1d_18 --weights r2plus1d_18.pth --input clip.f32 --frames 16 --size 112
//! ```
//!
//! `--input` holds float32 little-endian values of one clip `[3, frames, size, size]` (NumPy's
//! `tofile`). The load is strict: any missing, unexpected or mis-shaped key fails with the list.
//! Prints one `REPORT` line (keys applied and ignored, seconds, peak memory) and one `LOGITS`
//! line (JSON array). `tools/python/check_torchvision_checkpoint.py` drives it against
//! torchvision itself.

use std::path::PathBuf;
use std::time::Instant;

use bedside_ml::video::{VideoArch, VideoResNetConfig};
use bedside_ml::weights::{LoadMode, WeightSource, load_torchvision_video};
use burn::tensor::{Device, Tensor, TensorData};

type BoxError = Box<dyn std::error::Error>;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), BoxError> {
    bedside_core::alloc::retain_large_allocations();
    let (mut arch, mut weights, mut input) = (None, None, None);
    let (mut frames, mut size, mut classes) = (16usize, 112usize, 400usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--arch" => arch = Some(VideoArch::from_torchvision_name(&value)?),
            "--weights" => weights = Some(PathBuf::from(value)),
            "--input" => input = Some(PathBuf::from(value)),
            "--frames" => frames = value.parse()?,
            "--size" => size = value.parse()?,
            "--classes" => classes = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let (arch, weights, input) = match (arch, weights, input) {
        (Some(a), Some(w), Some(i)) => (a, w, i),
        _ => return Err("--arch, --weights and --input are required".into()),
    };
    let device = Device::flex();
    let model = VideoResNetConfig::new(arch)
        .with_num_classes(classes)
        .init(&device)?;
    let started = Instant::now();
    let (model, report) =
        load_torchvision_video(model, &WeightSource::File(weights), LoadMode::Strict)?;
    let load_s = started.elapsed().as_secs_f64();
    let bytes = std::fs::read(&input)?;
    let expected = 3 * frames * size * size;
    if bytes.len() != expected * 4 {
        return Err(format!(
            "{} holds {} bytes, expected {} (3×{frames}×{size}×{size} float32)",
            input.display(),
            bytes.len(),
            expected * 4
        )
        .into());
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let x = Tensor::from_data(TensorData::new(values, [1, 3, frames, size, size]), &device);
    let started = Instant::now();
    let logits = model
        .forward(x)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("cannot read logits: {e:?}"))?;
    println!(
        "REPORT applied={} ignored={} missing={} unexpected={} mismatched={} load_s={load_s:.2} forward_s={:.2} peak_mib={:.0}",
        report.applied.len(),
        report.ignored.len(),
        report.missing.len(),
        report.unexpected.len(),
        report.mismatched.len(),
        started.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    println!("LOGITS {}", serde_json::to_string(&logits)?);
    Ok(())
}
